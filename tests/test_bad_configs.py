"""Malformed configs and command lines: each ends in one line naming the option, the value and
what is allowed, never a traceback, and a refused run changes nothing in its work dir.

Every case is a tools/train.py command line, run through the tool's ``main()`` in this process
(one Python start-up for all of them); a few run as real subprocesses too. The config is the
tiny DeepLabV3 (tests/tiny.py) whose backbone loads a pretrained file through ``init_cfg``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import randomize_
from test_preemption import _segmentation, write_pretrained
from test_tools import train_tool
from tiny import DEEPLABV3, REPO, as_cli

from resnest_mm import ResNeSt
from resnest_mm.datasets import make_ade20k

D = 'model.backbone'


def _file(path: Path, data: bytes = b'') -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture(scope='module')
def paths(tmp_path_factory) -> SimpleNamespace:
    """The files the cases point at: data, good and bad weights, checkpoints, folders."""
    root = tmp_path_factory.mktemp('bad_configs')
    p = SimpleNamespace(root=root)
    p.data = str(make_ade20k(root / 'ade', num_train=2, num_val=1, height=32, width=32)) + '/'
    p.pretrained = write_pretrained(root / 'pretrained.pth')
    p.config = root / 'tiny_pretrained.py'
    p.config.write_text(f'_base_ = {str(DEEPLABV3)!r}\n'
                        f"model = dict(backbone=dict(init_cfg=dict(type='Pretrained', "
                        f'checkpoint={str(p.pretrained)!r})))\n')
    p.folder = root / 'a_folder'
    p.folder.mkdir()
    p.garbage = _file(root / 'garbage.pth', b'not a checkpoint\n' * 64)
    p.missing = root / 'missing.pth'
    p.a_file = _file(root / 'a_file.txt', b'x')
    wrong = ResNeSt(depth=26, stem_channels=32, base_channels=16)  # another depth
    p.wrong_depth = root / 'resnest26.pth'
    torch.save({'state_dict': randomize_(wrong).state_dict()}, p.wrong_depth)
    p.weights_only = root / 'weights_only.pth'
    torch.save({'state_dict': {'w': torch.ones(1)}}, p.weights_only)
    p.truncated = root / 'truncated.pth'
    torch.save({'meta': {'iter': 2}, 'state_dict': {'w': torch.ones(1000)}}, p.truncated)
    p.truncated.write_bytes(p.truncated.read_bytes()[:600])
    p.other_model = _other_models_checkpoint(root / 'faster_rcnn_iter_2.pth')
    p.ro_disk = root / 'ro'
    p.ro_disk.mkdir()
    p.ro_mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs',
                                   str(p.ro_disk)], capture_output=True).returncode == 0
    if not p.ro_mounted:  # not root: a folder without write permission does the same
        p.ro_disk.chmod(0o555)
    yield p
    if p.ro_mounted:
        subprocess.run(['umount', '-l', str(p.ro_disk)], check=False)


def _other_models_checkpoint(path: Path) -> Path:
    """A training checkpoint of another model (the tiny Faster R-CNN), as mmengine saves one."""
    from mmengine.registry import MODELS, DefaultScope
    from tiny import FASTER_RCNN, tiny_detection_options

    from resnest_mm.apis import load_config
    cfg = load_config(FASTER_RCNN, tiny_detection_options('/nowhere/'))
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    torch.save({'meta': {'iter': 2, 'epoch': 0, 'seed': 0}, 'state_dict': model.state_dict(),
                'message_hub': {}, 'optimizer': {'state': {}, 'param_groups': []}}, path)
    return path


# id -> the case from the paths: (its options after the tiny ones, its other arguments, the
# words its one line must hold: the option, the value, what is allowed)
CASES = {
    # config entries: wrong types and out-of-range numbers
    'max_iters_zero': lambda p: (
        ['train_cfg.max_iters=0'], [], ['train_cfg.max_iters=0', 'expected an int >= 1']),
    'max_iters_string': lambda p: (
        ['train_cfg.max_iters=ten'], [], ["train_cfg.max_iters='ten'", 'expected an int >= 1']),
    'max_iters_float': lambda p: (
        ['train_cfg.max_iters=2.5'], [], ['train_cfg.max_iters=2.5', 'expected an int >= 1']),
    'val_interval_negative': lambda p: (
        ['train_cfg.val_interval=-1'], [],
        ['train_cfg.val_interval=-1', 'expected an int >= 1']),
    'batch_size_zero': lambda p: (
        ['train_dataloader.batch_size=0'], [],
        ['train_dataloader.batch_size=0', 'expected an int >= 1']),
    'num_workers_negative': lambda p: (
        ['train_dataloader.num_workers=-2'], [],
        ['train_dataloader.num_workers=-2', 'expected an int >= 0']),
    'persistent_without_workers': lambda p: (
        ['train_dataloader.persistent_workers=True', 'train_dataloader.num_workers=0'], [],
        ['train_dataloader.persistent_workers=True', 'num_workers=0', 'num_workers >= 1']),
    'checkpoint_interval_zero': lambda p: (
        ['default_hooks.checkpoint.interval=0'], [],
        ['default_hooks.checkpoint.interval=0', 'int >= 1, or -1']),
    'max_keep_ckpts_string': lambda p: (
        ['default_hooks.checkpoint.max_keep_ckpts=three'], [],
        ["default_hooks.checkpoint.max_keep_ckpts='three'", 'expected an int']),
    'logger_interval_zero': lambda p: (
        ['default_hooks.logger.interval=0'], [],
        ['default_hooks.logger.interval=0', 'expected an int >= 1']),
    'seed_negative': lambda p: (
        ['randomness.seed=-1'], [], ['randomness.seed=-1', 'None or an int in [0, 2**32)']),
    'lr_negative': lambda p: (
        ['optim_wrapper.optimizer.lr=-0.1'], [],
        ['optim_wrapper.optimizer.lr=-0.1', 'expected a number >= 0']),
    'log_level_unknown': lambda p: (
        ['log_level=LOUD'], [], ["log_level='LOUD'", 'DEBUG, INFO, WARNING, ERROR, CRITICAL']),
    # the backbone
    'depth_unknown': lambda p: (
        [f'{D}.depth=42'], [],
        ['model.backbone: ResNeSt: depth=42', 'allowed: 14, 26, 50, 101, 152, 200, 269']),
    'radix_zero': lambda p: ([f'{D}.radix=0'], [], ['radix=0', 'expected an int >= 1']),
    'radix_float': lambda p: ([f'{D}.radix=2.0'], [], ['radix=2.0', 'expected an int >= 1']),
    'out_indices_out_of_range': lambda p: (
        [f'{D}.out_indices=(0,4)'], [], ['out_indices=(0, 4)', '0..3']),
    'strides_too_few': lambda p: (
        [f'{D}.strides=(1,2)'], [], ['strides=(1, 2)', 'expected 4 values']),
    'frozen_stages_out_of_range': lambda p: (
        [f'{D}.frozen_stages=7'], [], ['frozen_stages=7', 'allowed: -1 (none), 0 (stem) to 4']),
    'norm_type_unknown': lambda p: (
        [f'{D}.norm_cfg.type=FancyNorm'], [],
        ["norm_cfg['type']='FancyNorm'", 'allowed: ', 'BN', 'GN']),
    'unknown_backbone_key': lambda p: (
        [f'{D}.widen=2'], [],
        [f'{D}.widen=2 is not an option of ResNeSt', 'allowed: depth, ', 'radix', 'init_cfg']),
    'unknown_backbone_type': lambda p: (
        [f'{D}.type=NoSuchNet'], [], [f"{D}.type='NoSuchNet'", "'resnest_mm.ResNeSt'"]),
    # files
    'pretrained_missing': lambda p: (
        [f'{D}.init_cfg.checkpoint={p.missing}'], [],
        [f"{D}.init_cfg.checkpoint '{p.missing}' does not exist", 'allowed: a weights file',
         'resnest50']),
    'pretrained_is_a_folder': lambda p: (
        [f'{D}.init_cfg.checkpoint={p.folder}'], [],
        [f"{D}.init_cfg.checkpoint '{p.folder}' is a folder", 'checkpoint file']),
    'pretrained_garbage': lambda p: (
        [f'{D}.init_cfg.checkpoint={p.garbage}'], [],
        [f'cannot read checkpoint {p.garbage}', 'not a PyTorch checkpoint']),
    'pretrained_other_depth': lambda p: (
        [f'{D}.init_cfg.checkpoint={p.wrong_depth}'], [],
        [f'pretrained weights {p.wrong_depth}', 'do not fit the model', 'depth=26']),
    'load_from_missing': lambda p: (
        [f'load_from={p.missing}'], [], [f"load_from '{p.missing}' does not exist"]),
    'load_from_is_a_folder': lambda p: (
        [f'load_from={p.folder}'], [],
        [f"load_from '{p.folder}' is a folder, not a checkpoint file"]),
    'data_root_missing': lambda p: (
        [f'train_dataloader.dataset.data_root={p.missing}/'], [],
        [f"data_root '{p.missing}/' does not exist",
         '--cfg-options train_dataloader.dataset.data_root=']),
    'resume_missing': lambda p: (
        [], ['--resume', str(p.missing)], [f"--resume checkpoint '{p.missing}' does not exist"]),
    'resume_is_a_folder': lambda p: (
        [], ['--resume', str(p.folder)],
        [f"--resume checkpoint '{p.folder}' is a folder, not a checkpoint"]),
    'resume_weights_only': lambda p: (
        [], ['--resume', str(p.weights_only)],
        [f'--resume checkpoint {p.weights_only} is not a training checkpoint', 'use load_from']),
    'resume_truncated': lambda p: (
        [], ['--resume', str(p.truncated)],
        [f'--resume checkpoint {p.truncated} is truncated or damaged']),
    'resume_other_model': lambda p: (
        [], ['--resume', str(p.other_model)],
        [f'--resume checkpoint {p.other_model} was saved by another model', 'load_from=PATH']),
    # the command line and the work dir
    'config_missing': lambda p: (
        [], ['CONFIG', str(p.missing.with_suffix('.py'))],
        [f"config file '{p.missing.with_suffix('.py')}' does not exist"]),
    'config_is_a_folder': lambda p: (
        [], ['CONFIG', str(p.folder)], [f"config file '{p.folder}' is a folder"]),
    'config_syntax_error': lambda p: (
        [], ['CONFIG', str(_file(p.root / 'broken.py', b"model = dict(type='X'\n"))],
        [f"config file '{p.root / 'broken.py'}' is not valid Python", 'line 1']),
    'preempt_signal_unknown': lambda p: (
        [], ['--preempt-signals', 'SIGHUP'],
        ["preemption signal 'SIGHUP' is invalid", 'allowed: SIGTERM, SIGUSR1, SIGUSR2']),
    'launcher_unknown': lambda p: (
        [], ['--launcher', 'gloo'],
        ["argument --launcher: invalid choice: 'gloo'", "'none', 'pytorch', 'slurm', 'mpi'"]),
    'launcher_without_torchrun': lambda p: (
        [], ['--launcher', 'pytorch'],
        ["launcher='pytorch' needs the environment variables", 'torchrun']),
    'cfg_option_without_value': lambda p: (
        ['train_cfg.max_iters'], [],
        ["argument --cfg-options: 'train_cfg.max_iters' is invalid", 'KEY=VALUE']),
    'work_dir_is_a_file': lambda p: (
        [], ['--work-dir', str(p.a_file)],
        [f'work dir {p.a_file} cannot be used: it is a file']),
    'work_dir_under_a_file': lambda p: (
        [], ['--work-dir', str(p.a_file / 'w')],
        [f'work dir {p.a_file / "w"} cannot be used', f'{p.a_file} (a parent folder) is a file']),
    'work_dir_not_writable': lambda p: (
        [], ['--work-dir', str(p.ro_disk / 'w')],
        [f'work dir {p.ro_disk / "w"} cannot be written']),
    'work_dir_read_only': lambda p: (
        [], ['--work-dir', str(p.ro_disk)],
        [f'work dir {p.ro_disk} cannot be used: ', 'another --work-dir']),
}


def _argv(p: SimpleNamespace, case: str, work_dir: Path) -> list[str]:
    options, arguments, _ = CASES[case](p)
    config = str(p.config)
    if arguments[:1] == ['CONFIG']:
        config, arguments = arguments[1], arguments[2:]
    base = as_cli(_segmentation(p.data, **{'train_cfg.max_iters': 2}))
    if '--work-dir' not in arguments:
        arguments = ['--work-dir', str(work_dir), *arguments]
    return [config, *arguments, *base, *options]


def _snapshot(folder: Path) -> dict | None:
    if not folder.exists():
        return None
    return {str(f.relative_to(folder)): (f.stat().st_mtime_ns, f.read_bytes() if f.is_file()
                                         else None) for f in sorted(folder.rglob('*'))}


def test_there_are_at_least_30_cases():
    assert len(CASES) >= 30


@pytest.mark.parametrize('case', list(CASES))
def test_bad_config_ends_in_one_line_and_changes_nothing(case, paths, tmp_path, capsys):
    work_dir = tmp_path / 'w'
    work_dir.mkdir()
    (work_dir / 'iter_2.pth').write_bytes(b'an earlier run')  # must survive, untouched
    (work_dir / 'last_checkpoint').write_text(str(work_dir / 'iter_2.pth'))
    before = _snapshot(work_dir)
    argv = _argv(paths, case, work_dir)
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        train_tool.main(argv)
    captured = capsys.readouterr()
    code = stop.value.code
    assert code not in (0, None)
    text = (code if isinstance(code, str) else captured.err).strip()
    assert 'Traceback' not in captured.err + captured.out
    line = text.splitlines()[-1]
    assert line.startswith('train.py: error: ') or 'error: argument' in line, text
    for word in CASES[case](paths)[2]:
        assert word in line, (word, line)
    assert _snapshot(work_dir) == before


@pytest.mark.parametrize('case', ['unknown_backbone_key', 'resume_other_model',
                                  'cfg_option_without_value'])
def test_bad_config_as_a_user_runs_it(case, paths, tmp_path):
    """The same through a real ``python tools/train.py`` process: status 1 or 2, one line."""
    work_dir = tmp_path / 'new_work_dir'
    argv = _argv(paths, case, work_dir)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / 'tests')]))
    run = subprocess.run([sys.executable, str(REPO / 'tools' / 'train.py'), *argv],
                         capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert run.returncode in (1, 2), run.stderr[-3000:]
    assert 'Traceback' not in run.stderr, run.stderr[-3000:]
    line = run.stderr.strip().splitlines()[-1]
    for word in CASES[case](paths)[2]:
        assert word in line, (word, line)
    assert not work_dir.exists()  # a refused run does not even make its work dir


def test_unreadable_work_dir_is_refused_and_left_alone(paths, tmp_path):
    """A work dir this user cannot read (mode 000): one line, nothing changed. Root reads
    every folder, so as root the tool runs without the capabilities that allow it (setpriv
    drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from its bounding set)."""
    work_dir = tmp_path / 'unreadable'
    work_dir.mkdir()
    (work_dir / 'iter_2.pth').write_bytes(b'an earlier run')
    before = _snapshot(work_dir)
    work_dir.chmod(0)
    argv = [str(paths.config), '--work-dir', str(work_dir), '--resume',
            *as_cli(_segmentation(paths.data, **{'train_cfg.max_iters': 2}))]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / 'tests')]))
    command = [sys.executable, str(REPO / 'tools' / 'train.py'), *argv]
    if os.geteuid() == 0:
        command = ['setpriv', '--bounding-set', '-dac_override,-dac_read_search', *command]
    try:
        run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600,
                             cwd=tmp_path)
    finally:
        work_dir.chmod(0o755)
    assert run.returncode == 1, run.stderr[-3000:]
    assert 'Traceback' not in run.stderr
    line = run.stderr.strip().splitlines()[-1]
    assert line.startswith(f'train.py: error: work dir {work_dir} cannot be used: this user '), line
    assert 'cannot read and write it (mode 0)' in line
    assert _snapshot(work_dir) == before
