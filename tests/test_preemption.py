"""Training that survives being killed: atomic checkpoints, resume from the newest intact one,
SIGTERM saves, and a resumed run that ends bit-identical to the run never interrupted.

The end-to-end runs are tools/train.py subprocesses on the tiny DeepLabV3 (tests/tiny.py) whose
backbone loads a pretrained weights file through ``init_cfg``, as every real config does (a
resume then reads two files: the pretrained one during the weights' initialisation, then the
checkpoint); ``preempt_helpers.PreemptTestDieHook`` kills them at chosen moments. tools/test.py
and tools/infer.py then read the resumed run's checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import randomize_
from test_tools import test_tool, train_tool
from tiny import (
    BACKBONE,
    DEEPLABV3,
    FASTER_RCNN,
    REPO,
    as_cli,
    tiny_detection_options,
    tiny_segmentation_options,
)

from resnest_mm import ResNeSt
from resnest_mm.apis import build_train_config
from resnest_mm.compat import cpu_fused_optimizers
from resnest_mm.datasets import make_coco
from resnest_mm.engine import PREEMPTED_EXIT_STATUS, BrokenCheckpointError, atomic_write
from resnest_mm.engine.atomic import temporary_path

ITERS = 6


# ----------------------------------------------------------------------------- helpers

TEST_HOOKS = ('PreemptTestDieHook', 'ChaosKillHook', 'ChaosAfterSaveHook', 'HoldHook')


def _config(tmp_path: Path, base: Path, extra: str = '', pretrained: Path | None = None) -> Path:
    """``base`` plus the hooks that kill or hold the run where the environment says, with the
    backbone initialised from ``pretrained`` (a weights file) through ``init_cfg``."""
    path = tmp_path / f'{base.stem}_die.py'
    init = '' if pretrained is None else (
        "model = dict(backbone=dict(init_cfg=dict(type='Pretrained', "
        f"checkpoint={str(pretrained)!r})))\n")
    path.write_text(
        f'_base_ = {str(base)!r}\n'
        "custom_imports = dict(imports=['resnest_mm', 'preempt_helpers'], "
        'allow_failed_imports=False)\n'
        f'custom_hooks = {[dict(type=name) for name in TEST_HOOKS]!r}\n' + init + extra)
    return path


def write_pretrained(path: Path) -> Path:
    """Weights of the tiny backbone (random, well scaled), as a pretrained file."""
    torch.save({'state_dict': randomize_(ResNeSt(**BACKBONE), seed=3).state_dict()}, path)
    return path


# 4 images, 2 per batch: 2 iterations an epoch; SIGTERM in iteration 5 saves mid-epoch.
EPOCHS = """
train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=3, val_interval=1)
train_dataloader = dict(sampler=dict(type='DefaultSampler', shuffle=True))
default_hooks = dict(checkpoint=dict(by_epoch=True, interval=1, max_keep_ckpts=-1))
"""


def _without_init(options: dict) -> dict:
    """The tiny options without their ``init_cfg=None``: the config's Pretrained entry stays."""
    return {k: v for k, v in options.items() if k != 'model.backbone.init_cfg'}


def _segmentation(root: str, **extra) -> dict:
    return {**_without_init(tiny_segmentation_options(root, max_iters=ITERS)),
            # the demo's fused AdamW, where this torch has CPU kernels for it (>= 2.4)
            'optim_wrapper.optimizer.fused': cpu_fused_optimizers(),
            'default_hooks.checkpoint.interval': 2,
            'default_hooks.checkpoint.max_keep_ckpts': 2,
            'default_hooks.logger.interval': 1,
            'train_cfg.val_interval': 2,  # a validation right after each checkpoint
            'randomness.seed': 0,
            **extra}


def _train(config: Path, work_dir: Path, options: dict, die: str = '', resume: bool = False,
           processes: int = 1, die_rank: int | None = None,
           extra: tuple[str, ...] = (), env: dict | None = None,
           background: bool = False) -> subprocess.CompletedProcess | subprocess.Popen:
    """tools/train.py (``processes`` > 1: tools/dist_train.sh) in its own process group;
    ``env`` adds variables (the test hooks'); ``background`` returns the running Popen."""
    extra_env, env = env or {}, dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / 'tests')]),
        RESNEST_TEST_DIE=die, OMP_NUM_THREADS='1')
    for name in ('RESNEST_TEST_DIE_RANK', 'RESNEST_TEST_CHAOS', 'RESNEST_TEST_FILL',
                 'RESNEST_TEST_HOLD'):
        env.pop(name, None)
    env.update(extra_env)
    if die_rank is not None:
        env['RESNEST_TEST_DIE_RANK'] = str(die_rank)
    args = ['--work-dir', str(work_dir), *(['--resume'] if resume else []), *extra,
            *as_cli(options)]
    if processes == 1:
        command = [sys.executable, str(REPO / 'tools' / 'train.py'), str(config), *args]
    else:
        from test_distributed import _free_port
        env['PORT'] = str(_free_port())
        env['PYTHON'] = sys.executable  # tools/dist_run.sh's interpreter: this test's
        command = ['bash', str(REPO / 'tools' / 'dist_train.sh'), str(config), str(processes),
                   *args]
    work_dir.parent.mkdir(parents=True, exist_ok=True)
    if background:
        return subprocess.Popen(command, cwd=work_dir.parent, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
    return subprocess.run(command, cwd=work_dir.parent, env=env, capture_output=True,
                          text=True, timeout=900, start_new_session=True)  # own process group


def _losses(work_dir: Path) -> dict[int, dict[str, float]]:
    """Logged training losses per iteration; a resumed run's entries replace the earlier
    run's for the iterations it trained again."""
    losses: dict[int, dict[str, float]] = {}
    for scalars in sorted(work_dir.glob('*/vis_data/scalars.json')):
        for line in scalars.read_text().splitlines():
            entry = json.loads(line)
            if 'loss' in entry:
                losses[entry['iter']] = {k: v for k, v in entry.items() if 'loss' in k}
    return losses


def _load(path: Path) -> dict:
    from resnest_mm.apis import mmengine_checkpoint_globals
    with mmengine_checkpoint_globals():
        return torch.load(path, map_location='cpu')


def _assert_same_run(resumed: Path, reference: Path, last: str = f'iter_{ITERS}.pth',
                     iters: int = ITERS) -> None:
    """Weights, optimizer state, scheduler state and every logged loss bit-identical."""
    a, b = _load(resumed / last), _load(reference / last)
    assert a['meta']['iter'] == b['meta']['iter'] == iters
    assert a['state_dict'].keys() == b['state_dict'].keys()
    for name, tensor in b['state_dict'].items():
        torch.testing.assert_close(a['state_dict'][name], tensor, rtol=0, atol=0, msg=name)
    torch.testing.assert_close(a['optimizer'], b['optimizer'], rtol=0, atol=0)
    assert a['param_schedulers'] == b['param_schedulers']
    expected = _losses(reference)
    assert sorted(expected) == list(range(1, iters + 1))
    assert _losses(resumed) == expected


def _ok(run: subprocess.CompletedProcess, status: int = 0) -> None:
    assert run.returncode == status, (run.returncode, run.stderr[-3000:])


@pytest.fixture(scope='module')
def pretrained(tmp_path_factory) -> Path:
    return write_pretrained(tmp_path_factory.mktemp('weights') / 'tiny_resnest14.pth')


@pytest.fixture(scope='module')
def seg_config(tmp_path_factory, pretrained) -> Path:
    return _config(tmp_path_factory.mktemp('config'), DEEPLABV3, pretrained=pretrained)


@pytest.fixture(scope='module')
def reference(tmp_path_factory, ade20k, seg_config) -> Path:
    """The tiny DeepLabV3 run, never interrupted."""
    work_dir = tmp_path_factory.mktemp('reference') / 'w'
    _ok(_train(seg_config, work_dir, _segmentation(ade20k)))
    return work_dir


# ----------------------------------------------------------------------------- end to end

def _state(work_dir: Path, run: subprocess.CompletedProcess) -> dict:
    """What a test needs to know of the work dir after one run of the sequence."""
    pointer = work_dir / 'last_checkpoint'
    return {'run': run, 'checkpoints': sorted(p.name for p in work_dir.glob('*.pth')),
            'last_checkpoint': pointer.read_text() if pointer.exists() else None,
            'partial': sorted(work_dir.glob('.iter_*.pth.*.tmp'))}


@pytest.fixture(scope='module')
def interrupted(tmp_path_factory, ade20k, seg_config) -> tuple[Path, list[dict]]:
    """The tiny run (pretrained backbone) killed and resumed: kill -9 in iteration 3, SIGTERM
    in 5, death in the middle of writing iteration 6's checkpoint, the newest checkpoint then
    truncated, and ``--resume`` to the end. Returns the work dir and the state after each."""
    work_dir = tmp_path_factory.mktemp('interrupted') / 'w'
    options = _segmentation(ade20k)
    states = [_state(work_dir, _train(seg_config, work_dir, options, die='kill:3'))]
    states.append(_state(work_dir, _train(seg_config, work_dir, options, die='term:5',
                                          resume=True)))
    states[-1]['meta'] = _load(work_dir / 'iter_5.pth')['meta'] if (
        work_dir / 'iter_5.pth').exists() else None
    states.append(_state(work_dir, _train(seg_config, work_dir, options, die='save:6',
                                          resume=True)))
    newest = work_dir / 'iter_5.pth'
    if newest.exists():
        newest.write_bytes(newest.read_bytes()[:newest.stat().st_size // 2])
    states.append(_state(work_dir, _train(seg_config, work_dir, options, resume=True)))
    return work_dir, states


def test_killed_and_preempted_run_resumes_bit_identical(interrupted, reference):
    """kill -9 in iteration 3, SIGTERM in 5, death in the middle of writing iteration 6's
    checkpoint, the newest checkpoint truncated; each time ``--resume``, with a backbone that
    loads a pretrained file through init_cfg. Only the iterations after the last intact save
    are lost, and the run ends exactly as the uninterrupted one (weights, optimizer,
    schedulers, logged losses)."""
    work_dir, (killed, preempted, died_saving, finished) = interrupted

    _ok(killed['run'], -signal.SIGKILL)
    assert killed['checkpoints'] == ['iter_2.pth']
    assert killed['last_checkpoint'] == str(work_dir / 'iter_2.pth')

    run = preempted['run']
    _ok(run, PREEMPTED_EXIT_STATUS)
    line = (f'Preempted by SIGTERM: saved iteration 5 to {work_dir / "iter_5.pth"}; exiting '
            f'with status {PREEMPTED_EXIT_STATUS}. Resume with: python tools/train.py ')
    assert run.stderr.count(line) == 1, run.stderr[-3000:]
    assert f'--work-dir {work_dir} --resume' in run.stderr
    meta = preempted['meta']
    assert meta['iter'] == 5 and meta['data_seeds'] == {'sampler': 0, 'workers': 0}
    assert len(meta['random_states']) == 1 and {'torch', 'numpy', 'python'} <= set(
        meta['random_states'][0])
    assert preempted['checkpoints'] == ['iter_4.pth', 'iter_5.pth']

    _ok(died_saving['run'], -signal.SIGXFSZ)  # killed by the kernel in the middle of the write
    assert len(died_saving['partial']) == 1 and died_saving['partial'][0].stat().st_size > 0
    # The previous checkpoints, and last_checkpoint naming the newest, are intact; the oldest
    # is deleted only after its successor is in place.
    assert died_saving['checkpoints'] == ['iter_4.pth', 'iter_5.pth']
    assert died_saving['last_checkpoint'] == str(work_dir / 'iter_5.pth')

    run = finished['run']
    _ok(run)
    warnings = [line for line in run.stderr.splitlines() if 'resnest_mm: warning' in line]
    assert len(warnings) == 1 and f'{work_dir / "iter_5.pth"} is truncated' in warnings[0] \
        and f'resuming from the older {work_dir / "iter_4.pth"}' in warnings[0], warnings
    assert 'random states' not in run.stdout + run.stderr  # restored, without a warning
    assert 'other seeds' not in run.stdout + run.stderr
    assert finished['checkpoints'] == ['iter_4.pth', 'iter_5.pth', 'iter_6.pth']
    _assert_same_run(work_dir, reference)


def _last_val_metrics(work_dir: Path) -> dict:
    """The metrics of the run's last validation, from mmengine's scalars.json."""
    metrics = {}
    for scalars in sorted(work_dir.glob('*/vis_data/scalars.json')):
        for line in scalars.read_text().splitlines():
            entry = json.loads(line)
            if 'mIoU' in entry:
                metrics = entry
    return metrics


def test_tools_test_reads_the_resumed_runs_checkpoint(tmp_path, interrupted, ade20k,
                                                      seg_config):
    """tools/test.py on the checkpoint of the killed-and-resumed run (pretrained init_cfg in
    its config) gives the metrics the run's own last validation logged."""
    work_dir, _ = interrupted
    options = _segmentation(ade20k)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / 'tests')]),
               OMP_NUM_THREADS='1')
    run = subprocess.run(
        [sys.executable, str(REPO / 'tools' / 'test.py'), str(seg_config),
         str(work_dir / f'iter_{ITERS}.pth'), '--work-dir', str(tmp_path / 'test'),
         *as_cli(options)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    _ok(run)
    logs = list((tmp_path / 'test').glob('*/*.json'))
    assert len(logs) == 1, logs
    tested = json.loads(logs[0].read_text().splitlines()[-1])
    validated = _last_val_metrics(work_dir)
    assert validated['step'] == ITERS
    for key in ('aAcc', 'mIoU', 'mAcc'):
        assert tested[key] == validated[key], (key, tested, validated)


def test_tools_infer_reads_the_resumed_runs_checkpoint(tmp_path, interrupted, ade20k,
                                                       seg_config):
    """tools/infer.py on the checkpoint of the killed-and-resumed run writes the labels that
    mmseg's own inference API gives with that checkpoint."""
    import mmcv
    import numpy as np
    from mmseg.apis import inference_model, init_model

    from resnest_mm.apis import load_config, mmengine_checkpoint_globals
    work_dir, _ = interrupted
    checkpoint = work_dir / f'iter_{ITERS}.pth'
    image = sorted(Path(ade20k, 'images', 'validation').glob('*.jpg'))[0]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / 'tests')]),
               OMP_NUM_THREADS='1')
    # infer.py takes no --cfg-options: the tiny settings go into a config file
    config = tmp_path / 'tiny_deeplabv3.py'
    cfg = load_config(seg_config, _segmentation(ade20k))
    # MMSegInferencer reads test_dataloader's pipeline, inference_model test_pipeline
    cfg.test_pipeline = cfg.test_dataloader.dataset.pipeline
    cfg.dump(str(config))
    run = subprocess.run(
        [sys.executable, str(REPO / 'tools' / 'infer.py'), str(image), str(config),
         str(checkpoint), '--out-dir', str(tmp_path / 'out')],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    _ok(run)
    labels = sorted((tmp_path / 'out').rglob('pred/*.png'))
    assert len(labels) == 1, sorted((tmp_path / 'out').rglob('*'))
    written = mmcv.imread(str(labels[0]), flag='unchanged')

    with mmengine_checkpoint_globals():
        model = init_model(str(config), str(checkpoint), device='cpu')
    expected = inference_model(model, str(image)).pred_sem_seg.data[0].numpy()
    assert written.shape == expected.shape
    np.testing.assert_array_equal(written, expected.astype(written.dtype))


# ----------------------------------------------------------------------------- broken files

def _training_checkpoint(path: Path, iteration: int, seed: int = 7) -> Path:
    torch.save({'meta': {'iter': iteration, 'epoch': 0, 'seed': seed},
                'state_dict': {'w': torch.ones(3)}, 'message_hub': {}}, path)
    return path


def _break(path: Path, how: str) -> Path:
    if how == 'truncated':
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2])
    elif how == 'empty':
        path.write_bytes(b'')
    elif how == 'garbage':
        path.write_bytes(b'not a checkpoint\n' * 64)
    elif how == 'unsafe':
        torch.save({'meta': {'iter': 1}, 'state_dict': {}, 'args': argparse.Namespace()}, path)
    return path


WHAT_IS_WRONG = {
    'truncated': 'is truncated or damaged',
    'empty': 'is empty (0 bytes)',
    'garbage': "is not a PyTorch checkpoint (it starts with b'not a ch')",
    'unsafe': 'is refused by the safe loader (torch.load with weights_only=True): it pickles '
              'argparse.Namespace',
}


def _tool_error(tool, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as stop:
        tool.main(argv)
    assert isinstance(stop.value.code, str), stop.value.code
    assert '\n' not in stop.value.code and 'Traceback' not in stop.value.code
    return stop.value.code


@pytest.mark.parametrize('how', list(WHAT_IS_WRONG))
def test_broken_checkpoint_is_one_line_for_resume_and_test(tmp_path, how):
    broken = _break(_training_checkpoint(tmp_path / 'iter_4.pth', 4), how)
    message = _tool_error(train_tool, [str(DEEPLABV3), '--work-dir', str(tmp_path),
                                       '--resume', str(broken)])
    assert message.startswith(f'train.py: error: --resume checkpoint {broken} '
                              f'{WHAT_IS_WRONG[how]}'), message
    message = _tool_error(test_tool, [str(DEEPLABV3), str(broken), '--work-dir', str(tmp_path)])
    assert message.startswith(f'test.py: error: checkpoint {broken} {WHAT_IS_WRONG[how]}'), message


def test_resume_needs_a_training_checkpoint(tmp_path):
    weights = tmp_path / 'weights.pth'
    torch.save({'state_dict': {'w': torch.ones(1)}}, weights)
    message = _tool_error(train_tool, [str(DEEPLABV3), '--resume', str(weights)])
    assert f'--resume checkpoint {weights} is not a training checkpoint' in message


def test_auto_resume_skips_a_broken_newer_checkpoint_with_one_warning(tmp_path, capsys):
    _training_checkpoint(tmp_path / 'iter_2.pth', 2, seed=7)
    newer = _break(_training_checkpoint(tmp_path / 'iter_4.pth', 4), 'truncated')
    os.utime(newer, (newer.stat().st_mtime + 5,) * 2)
    (tmp_path / 'last_checkpoint').write_text(str(newer))
    capsys.readouterr()
    cfg = build_train_config(DEEPLABV3, work_dir=str(tmp_path), resume='auto')
    assert cfg.resume is True and cfg.load_from == str(tmp_path / 'iter_2.pth')
    assert cfg.randomness.seed == 7  # the sampler and the workers draw from the saved seed
    warnings = [line for line in capsys.readouterr().err.splitlines() if 'warning' in line]
    assert len(warnings) == 1, warnings
    assert str(newer) in warnings[0] and 'is truncated or damaged' in warnings[0]
    assert str(tmp_path / 'iter_2.pth') in warnings[0]
    assert newer.stat().st_size > 0  # left in place

    _break(tmp_path / 'iter_2.pth', 'garbage')
    message = _tool_error(train_tool, [str(DEEPLABV3), '--work-dir', str(tmp_path), '--resume'])
    assert f'none of the 2 checkpoint(s) in {tmp_path} loads' in message


def test_auto_resume_in_an_empty_work_dir_starts_from_the_beginning(tmp_path):
    cfg = build_train_config(DEEPLABV3, work_dir=str(tmp_path), resume='auto')
    assert cfg.resume is False and cfg.load_from is None


def test_tools_add_the_hooks_and_loops_for_mmdet_and_mmseg_configs():
    for config, loop in ((REPO / 'configs' / 'faster_rcnn_resnest50_fpn.py', 'Epoch'),
                         (DEEPLABV3, 'Iter')):
        cfg = build_train_config(config, preempt_signals=['SIGTERM', 'USR1'])
        assert cfg.train_cfg.type == f'resnest_mm.{loop}BasedTrainLoop'
        assert cfg.default_hooks.checkpoint.type == 'resnest_mm.AtomicCheckpointHook'
        assert [h for h in cfg.custom_hooks if h['type'] == 'resnest_mm.PreemptionHook'] == [
            dict(type='resnest_mm.PreemptionHook', signals=['SIGTERM', 'USR1'])]
    message = _tool_error(train_tool, [str(DEEPLABV3), '--preempt-signals', 'SIGHUP'])
    assert "preemption signal 'SIGHUP' is invalid; allowed: SIGTERM, SIGUSR1, SIGUSR2" in message


def test_atomic_write_killed_mid_write_leaves_the_old_file(tmp_path):
    target = tmp_path / 'iter_2.pth'
    atomic_write(target, b'old')
    pid = os.fork()
    if pid == 0:  # child: the kernel kills it when the write reaches 1000 bytes
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
        atomic_write(target, b'x' * 100_000)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGXFSZ
    assert target.read_bytes() == b'old'
    partial = temporary_path(target).with_name(f'.iter_2.pth.{pid}.tmp')
    assert partial.stat().st_size == 1000
    atomic_write(target, 'new')
    assert target.read_text() == 'new' and not temporary_path(target).exists()


def test_broken_checkpoint_error_is_a_user_error():
    from resnest_mm.apis import USER_ERRORS
    assert issubclass(BrokenCheckpointError, USER_ERRORS)


# ----------------------------------------------------------------------------- slow variants

def _detection_options(root: str) -> dict:
    return {**_without_init(tiny_detection_options(root, max_iters=ITERS)),
            'default_hooks.checkpoint.interval': 2,
            'default_hooks.logger.interval': 1,
            'train_cfg.val_interval': 2,
            'randomness.seed': 0}


def _epoch_options(root: str) -> dict:
    options = _segmentation(root)
    for key in ('train_cfg.max_iters', 'train_cfg.val_interval',
                'default_hooks.checkpoint.interval', 'default_hooks.checkpoint.max_keep_ckpts'):
        options.pop(key)
    return options


@pytest.mark.slow
@pytest.mark.parametrize('variant', ['two_processes', 'workers', 'detector', 'epochs'])
def test_resumed_variants_end_bit_identical(tmp_path, ade20k, seg_config, pretrained, variant):
    """kill -9 in iteration 3, then SIGTERM in iteration 5 (one rank only with two
    processes), then to the end: 2 processes (gloo), 2 persistent data workers (SIGUSR1 to
    the whole process group, workers included, as SLURM signals), the tiny Faster R-CNN
    (mmdet), and an epoch-based loop resumed mid-epoch."""
    config, options, processes = seg_config, _segmentation(ade20k), 1
    term, extra, name = 'term:5', (), 'SIGTERM'
    kill_save, term_save, last = 'iter_2.pth', 'iter_5.pth', f'iter_{ITERS}.pth'
    if variant == 'two_processes':
        processes = 2
    elif variant == 'workers':
        options.update({'train_dataloader.num_workers': 2,
                        'train_dataloader.persistent_workers': True})
        term, extra, name = 'usr1-group:5', ('--preempt-signals', 'SIGTERM', 'SIGUSR1'), 'SIGUSR1'
    elif variant == 'detector':
        root = str(make_coco(tmp_path / 'coco', num_train=4, num_val=2, height=64,
                             width=64)) + '/'
        config = _config(tmp_path, FASTER_RCNN, pretrained=pretrained)
        options = _detection_options(root)
    elif variant == 'epochs':
        config = _config(tmp_path, DEEPLABV3, EPOCHS, pretrained=pretrained)
        options = _epoch_options(ade20k)
        kill_save, term_save, last = 'epoch_1.pth', 'iter_5.pth', 'epoch_3.pth'
    die_rank = 1 if processes == 2 else None

    reference = tmp_path / 'reference'
    _ok(_train(config, reference, options, processes=processes))
    work_dir = tmp_path / 'w'
    run = _train(config, work_dir, options, die='kill:3', processes=processes, die_rank=die_rank)
    assert run.returncode != 0
    assert (work_dir / kill_save).exists()
    run = _train(config, work_dir, options, die=term, resume=True, processes=processes,
                 die_rank=die_rank, extra=extra)
    _ok(run, PREEMPTED_EXIT_STATUS)  # with two processes, tools/dist_train.sh's status too
    assert run.stderr.count(f'Preempted by {name}: saved iteration 5 to {work_dir / term_save}') \
        == 1, run.stderr[-3000:]
    _ok(_train(config, work_dir, options, resume=True, processes=processes))
    _assert_same_run(work_dir, reference, last)


def test_preemption_hook_records_the_signal_and_puts_the_handlers_back():
    from resnest_mm.engine import PreemptionHook
    before = signal.getsignal(signal.SIGUSR2)
    hook = PreemptionHook(['USR2'])
    os.kill(os.getpid(), signal.SIGUSR2)  # recorded, not fatal
    assert hook.received == signal.SIGUSR2
    del hook  # collected with its Runner: the previous handler is back
    import gc
    gc.collect()
    assert signal.getsignal(signal.SIGUSR2) is before
