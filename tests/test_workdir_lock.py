"""One training run per work dir: the lock of resnest_mm.engine.workdir_lock.

Other processes hold the lock here as real runs would: a ``python -c`` holder (a process of its
own, since a POSIX lock never conflicts within one process), a tools/train.py run held at its
first iteration, and two processes of tools/dist_train.sh.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_preemption import _config, _ok, _segmentation, _train, write_pretrained
from tiny import DEEPLABV3, REPO, tiny_segmentation_options

from resnest_mm.apis import build_train_config, prepare_run
from resnest_mm.apis.runner import end_run
from resnest_mm.datasets import make_ade20k
from resnest_mm.engine import WorkDirBusyError, WorkDirLock, release_work_dir
from resnest_mm.engine.workdir_lock import LOCK_NAME

HOLDER = """
import os, sys, time
from resnest_mm.engine import WorkDirLock
WorkDirLock(sys.argv[1]).acquire()
if len(sys.argv) > 2:  # a forked child that outlives this process, as a data worker can
    if os.fork() == 0:
        time.sleep(60)
        os._exit(0)
print('locked', flush=True)
time.sleep(600)
"""


def _holder(work_dir: Path, fork_child: bool = False) -> subprocess.Popen:
    """A process holding ``work_dir``'s lock (and, optionally, a forked child of it)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    holder = subprocess.Popen(
        [sys.executable, '-c', HOLDER, str(work_dir), *(['fork'] if fork_child else [])],
        stdout=subprocess.PIPE, text=True, env=env, start_new_session=True)
    assert holder.stdout.readline().strip() == 'locked'
    return holder


def _kill(process: subprocess.Popen, group: bool = False) -> None:
    with contextlib.suppress(ProcessLookupError):  # it may have ended (a failed test)
        if group:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    process.wait(timeout=60)


def _snapshot(folder: Path) -> dict:
    """Every file under ``folder`` with its size, modification time and content."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob('*')) if p.is_file()}


def test_a_live_holder_blocks_and_is_named_a_dead_one_never_blocks(tmp_path):
    work_dir = tmp_path / 'w'
    holder = _holder(work_dir, fork_child=True)
    try:
        with pytest.raises(WorkDirBusyError) as refused:
            WorkDirLock(work_dir).acquire()
        message = str(refused.value)
        assert '\n' not in message
        assert message.startswith(f'work dir {work_dir} is in use by another training run: '
                                  f'pid {holder.pid} on host ')
        assert 'python -c' in message and '--allow-shared-work-dir' in message
    finally:
        _kill(holder)  # kill -9 the holder only: its forked child lives on with the file open
    lock = WorkDirLock(work_dir)
    started = time.monotonic()
    lock.acquire()  # a stale lock: taken at once
    assert time.monotonic() - started < 1
    assert f'pid={os.getpid()}' in (work_dir / LOCK_NAME).read_text()
    lock.release()
    os.killpg(holder.pid, signal.SIGKILL)  # the orphaned child


def test_the_lock_is_the_processs_own_and_can_be_taken_twice(tmp_path):
    from resnest_mm.engine.workdir_lock import lock_work_dir
    first = lock_work_dir(tmp_path)
    assert lock_work_dir(tmp_path) is first  # a second open+close would drop a POSIX lock
    holder = subprocess.run(
        [sys.executable, '-c', HOLDER, str(tmp_path)], env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True, text=True, timeout=120)
    assert holder.returncode == 1 and f'pid {os.getpid()}' in holder.stderr
    release_work_dir(tmp_path)
    holder = _holder(tmp_path)  # released: another process takes it
    _kill(holder)


def test_allow_shared_work_dir_runs_beside_a_holder(tmp_path):
    holder = _holder(tmp_path / 'w')
    try:
        data = make_ade20k(tmp_path / 'ade', num_train=1, num_val=1, height=32, width=32)
        cfg = build_train_config(DEEPLABV3, work_dir=str(tmp_path / 'w'),
                                 cfg_options=tiny_segmentation_options(f'{data}/'),
                                 allow_shared_work_dir=True)
        prepare_run(cfg, 'train')  # no WorkDirBusyError
        cfg.allow_shared_work_dir = False
        cfg.work_dir = str(tmp_path / 'w' / '.')  # the same folder, another spelling
        with pytest.raises(WorkDirBusyError, match=f'pid {holder.pid}'):
            prepare_run(cfg, 'train')
    finally:
        end_run(cfg)
        _kill(holder)


@pytest.fixture(scope='module')
def seg_config(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp('config')
    return _config(folder, DEEPLABV3, pretrained=write_pretrained(folder / 'pretrained.pth'))


def test_second_training_run_is_refused_and_a_killed_ones_lock_is_gone(tmp_path, ade20k,
                                                                       seg_config):
    """tools/train.py twice on one work dir: the second stops at once with one line naming the
    work dir and the first run's pid, and changes nothing there; after the first is killed
    with kill -9, a third run (resuming) takes the work dir at once."""
    work_dir, hold = tmp_path / 'w', tmp_path / 'hold'
    options = _segmentation(ade20k)
    hold.write_text('')
    first = _train(seg_config, work_dir, options, env={'RESNEST_TEST_HOLD': str(hold)},
                   background=True)
    try:
        deadline = time.monotonic() + 300
        while not Path(f'{hold}.ready').exists():
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.2)
        before = _snapshot(work_dir)
        second = _train(seg_config, work_dir, options)
        assert second.returncode == 1
        lines = second.stderr.strip().splitlines()
        assert lines[-1].startswith(f'train.py: error: work dir {work_dir} is in use by another '
                                    f'training run: pid {first.pid} on host '), lines
        assert 'Traceback' not in second.stderr
        assert _snapshot(work_dir) == before
    finally:
        _kill(first, group=True)
    third = _train(seg_config, work_dir, options, resume=True)
    _ok(third)
    assert (work_dir / 'iter_6.pth').is_file()


def test_distributed_run_refused_on_every_rank_with_one_line(tmp_path, ade20k, seg_config):
    """Two processes (gloo) against a held work dir: both stop, rank 0 says why, once."""
    work_dir = tmp_path / 'w'
    holder = _holder(work_dir)
    try:
        run = _train(seg_config, work_dir, _segmentation(ade20k), processes=2)
    finally:
        _kill(holder)
    assert run.returncode != 0
    line = f'train.py: error: work dir {work_dir} is in use by another training run: pid ' \
           f'{holder.pid}'
    assert run.stderr.count(line) == 1, run.stderr[-3000:]
    assert not list(work_dir.glob('2*'))  # no log folder: the Runner was never built
