"""Training that loses nothing under chaos: kill -9 at seeded random moments, a disk that fills.

A *trial* kills the run at a moment drawn from a seeded generator among what is still ahead of
its resume point: F of the way through a training iteration, through the first batch of a
validation, through the write of a checkpoint (the kernel ends the process when the file
reaches F of its size), or just after a save; in a two-process run one rank or the whole
process group (a lost node). After every kill ``--resume`` must continue (the next run gets
to its own kill, or to the end), and the run that finally completes must be bit-identical to
one never interrupted: weights, optimizer, schedulers and every logged loss. The backbone loads
a pretrained file through ``init_cfg`` in every run, as real configs do.

The default suite runs a few trials (one of each kind); ``-m slow`` runs 20 per configuration,
with one process and with two (gloo).
"""

from __future__ import annotations

import random
import signal
import subprocess
from pathlib import Path

import pytest
from test_preemption import (
    _assert_same_run,
    _config,
    _load,
    _ok,
    _segmentation,
    _train,
    write_pretrained,
)
from tiny import DEEPLABV3

from resnest_mm.engine import CHECKPOINT_NOT_WRITTEN_STATUS, PREEMPTED_EXIT_STATUS

ITERS, SAVE_EVERY, VAL_EVERY = 8, 2, 4


def _options(root: str) -> dict:
    return _segmentation(root, **{
        'train_cfg.max_iters': ITERS,
        'train_cfg.val_interval': VAL_EVERY,
        'default_hooks.checkpoint.interval': SAVE_EVERY,
        'default_hooks.checkpoint.max_keep_ckpts': 2})


@pytest.fixture(scope='module')
def config(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp('config')
    return _config(folder, DEEPLABV3, pretrained=write_pretrained(folder / 'pretrained.pth'))


@pytest.fixture(scope='module')
def reference(tmp_path_factory, ade20k, config) -> Path:
    """The run never interrupted, one process."""
    work_dir = tmp_path_factory.mktemp('reference') / 'w'
    _ok(_train(config, work_dir, _options(ade20k)))
    return work_dir


# ----------------------------------------------------------------------------- random kills

def _resume_point(work_dir: Path) -> int:
    """The iteration ``--resume`` continues from: the newest checkpoint's (all load here)."""
    checkpoints = [int(p.stem.split('_')[1]) for p in work_dir.glob('iter_*.pth')]
    return max(checkpoints, default=0)


def _draw(rng: random.Random, done: int, kinds: tuple[str, ...], processes: int) -> str:
    """A kill plan ``phase:iteration:fraction[:group]`` for a run resuming after ``done``."""
    events = [('iter', n) for n in range(done + 1, ITERS + 1)]
    events += [('val', n) for n in range(done + 1, ITERS + 1) if n % VAL_EVERY == 0]
    events += [(phase, n) for n in range(done + 1, ITERS + 1) if n % SAVE_EVERY == 0
               for phase in ('save', 'saved')]
    events = [(phase, n) for phase, n in events if phase in kinds]
    phase, n = rng.choice(events)
    fraction = round(rng.uniform(0.05, 0.95), 3)
    plan = f'{phase}:{n}:{fraction}'
    if processes > 1 and phase != 'save' and rng.random() < 0.3:
        plan += ':group'
    return plan


def _expected_status(plan: str, processes: int) -> set[int]:
    """How a planned kill ends the run. With two processes the launcher exits with the status
    of the rank that died first (128 + N for signal N), or is itself killed with the group."""
    signum = signal.SIGXFSZ if plan.startswith('save:') else signal.SIGKILL
    if processes > 1:
        return {-signal.SIGKILL} if plan.endswith(':group') else {128 + signum}
    return {-signum}


def _chaos(tmp_path: Path, config: Path, ade20k: str, reference: Path, seed: int, trials: int,
           processes: int, kinds: tuple[str, ...] = ('iter', 'val', 'save', 'saved')) -> list:
    """``trials`` kills at seeded random moments, each followed by ``--resume``. A run that
    reaches its end through kills and resumes is compared with ``reference`` and the next
    trials start a new run in a new work dir; the last run is finished and compared too.
    Returns the plans (kill plan, rank, resume point), shown when an assertion fails."""
    rng = random.Random(seed)
    options, plans, lives = _options(ade20k), [], 0
    work_dir = tmp_path / f'w{lives}'
    while len(plans) < trials:
        done = _resume_point(work_dir)
        if done == ITERS:  # through its end: compare, then chaos in a new run
            _ok(_train(config, work_dir, options, resume=True, processes=processes))
            _assert_same_run(work_dir, reference, f'iter_{ITERS}.pth', ITERS)
            lives += 1
            work_dir = tmp_path / f'w{lives}'
            continue
        # each kind at least once when there are few trials
        wanted = (kinds[len(plans)],) if trials <= len(kinds) else kinds
        plan = _draw(rng, done, wanted, processes)
        rank = None
        if processes > 1:  # rank 0 alone writes checkpoints
            rank = 0 if plan.startswith('save:') else rng.randrange(processes)
        plans.append((plan, rank, done))
        run = _train(config, work_dir, options, resume=True, processes=processes,
                     die_rank=rank, env={'RESNEST_TEST_CHAOS': plan})
        assert run.returncode in _expected_status(plan, processes), (
            plans, run.returncode, run.stderr[-4000:])
        if processes == 1:
            assert 'Traceback' not in run.stderr, (plans, run.stderr[-4000:])
        # whatever the kill left, --resume takes a checkpoint that loads, not an older one
        assert _resume_point(work_dir) >= done, plans
    _ok(_train(config, work_dir, options, resume=True, processes=processes))
    _assert_same_run(work_dir, reference, f'iter_{ITERS}.pth', ITERS)
    return plans


def test_random_kills_then_resume_end_bit_identical(tmp_path, config, ade20k, reference):
    """One trial of each kind (in an iteration, in validation, mid-write, after a save)."""
    _chaos(tmp_path, config, ade20k, reference, seed=25, trials=4, processes=1)


@pytest.fixture(scope='module')
def reference_2(tmp_path_factory, ade20k, config) -> Path:
    """The run never interrupted, two processes."""
    work_dir = tmp_path_factory.mktemp('reference_2') / 'w'
    _ok(_train(config, work_dir, _options(ade20k), processes=2))
    return work_dir


@pytest.mark.slow
@pytest.mark.parametrize('processes', [1, 2])
def test_twenty_random_kills_per_configuration(tmp_path, config, ade20k, processes, request):
    """20 kills at seeded random moments, each followed by ``--resume``; the run that ends is
    bit-identical to the one never interrupted (1 process, and 2 processes over gloo)."""
    reference = request.getfixturevalue('reference' if processes == 1 else 'reference_2')
    _chaos(tmp_path, config, ade20k, reference, seed=2500 + processes, trials=20,
           processes=processes)


# ----------------------------------------------------------------------------- full disk

def _mount_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs',
                              str(folder)], capture_output=True)
    return mounted.returncode == 0


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """A 64 MiB tmpfs (needs root, or CAP_SYS_ADMIN)."""
    disk = tmp_path / 'disk'
    if not _mount_tmpfs(disk, '64m'):
        pytest.skip('mount -t tmpfs is not permitted here (not root): the full-disk test '
                    'needs a file system it can fill')
    yield disk
    subprocess.run(['umount', '-l', str(disk)], check=False)


def test_full_disk_stops_with_one_line_and_resumes_bit_identical(small_disk, config, ade20k,
                                                                 reference):
    """The work dir's file system really fills up just before the checkpoint of iteration 4
    is written: the run stops with one line (the file, ENOSPC, the intact previous
    checkpoint, the resume command) and status 74, the temporary file is gone; once space is
    freed, ``--resume`` ends bit-identical to the uninterrupted run."""
    work_dir, options = small_disk / 'w', _options(ade20k)
    run = _train(config, work_dir, options, env={'RESNEST_TEST_FILL': '4'})
    assert run.returncode == CHECKPOINT_NOT_WRITTEN_STATUS != PREEMPTED_EXIT_STATUS
    assert 'Traceback' not in run.stderr, run.stderr[-4000:]
    errors = [line for line in run.stderr.splitlines() if 'error' in line.lower()]
    assert len(errors) == 1, run.stderr[-4000:]
    assert errors[0] == (
        f'resnest_mm: error: could not write {work_dir / "iter_4.pth"} ([Errno 28] No space '
        f'left on device); the run stops here, the previous checkpoint '
        f'{work_dir / "iter_2.pth"} is intact. Free space or fix the cause, then resume with: '
        f'python tools/train.py {config} --work-dir {work_dir} --resume')
    assert run.stderr.strip().splitlines()[-1] == errors[0]
    assert not list(work_dir.glob('.*.tmp'))  # the temporary file is removed
    assert sorted(p.name for p in work_dir.glob('*.pth')) == ['iter_2.pth']
    assert (work_dir / 'last_checkpoint').read_text() == str(work_dir / 'iter_2.pth')
    assert _load(work_dir / 'iter_2.pth')['meta']['iter'] == 2

    (small_disk / 'filler').unlink()  # space again
    _ok(_train(config, work_dir, options, resume=True))
    _assert_same_run(work_dir, reference, f'iter_{ITERS}.pth', ITERS)


def test_failed_write_of_the_last_checkpoint_pointer_stops_the_run_too(tmp_path, ade20k,
                                                                      capsys):
    """Any OSError of a save stops the run, also one writing ``last_checkpoint`` after the
    checkpoint itself is in place (here a folder stands where that file goes)."""
    from tiny import tiny_segmentation_options

    from resnest_mm.apis import build_train_config, run_train
    from resnest_mm.compat import cpu_fused_optimizers
    from resnest_mm.engine import CheckpointNotWritten
    work_dir = tmp_path / 'w'
    (work_dir / 'last_checkpoint').mkdir(parents=True)
    options = {**tiny_segmentation_options(ade20k, max_iters=2),
               'optim_wrapper.optimizer.fused': cpu_fused_optimizers()}
    cfg = build_train_config(DEEPLABV3, work_dir=str(work_dir), cfg_options=options)
    capsys.readouterr()
    with pytest.raises(CheckpointNotWritten) as stop:
        run_train(cfg)
    assert stop.value.code == CHECKPOINT_NOT_WRITTEN_STATUS
    line = (f'resnest_mm: error: could not write {work_dir / "last_checkpoint"} ([Errno 21] Is '
            f'a directory); the run stops here, the checkpoint {work_dir / "iter_1.pth"} is '
            'complete, and --resume finds it. Free space or fix the cause, then resume with: ')
    assert capsys.readouterr().err.count(line) == 1
    assert (work_dir / 'iter_1.pth').is_file()  # written before the pointer
    assert not list(work_dir.glob('.*.tmp'))
