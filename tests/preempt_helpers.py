"""A hook for the preemption tests that kills its own training run at a chosen moment.

``RESNEST_TEST_DIE=<how>:<iteration>`` (1-based iteration), read when the hook is built:

- ``kill:N``: SIGKILL at the start of iteration N (after its batch is loaded);
- ``term:N``: SIGTERM at the start of iteration N (the run should finish N and save it);
- ``usr1-group:N``: SIGUSR1 to the whole process group (data workers too), as SLURM sends it;
- ``save:N``: die in the middle of writing the checkpoint of iteration N: the file size limit
  is set to half the previous checkpoint, so the kernel kills the process (SIGXFSZ) when the
  write reaches it, as a kill or a full disk during a save would leave it.

``RESNEST_TEST_DIE_RANK`` (default: every rank) limits it to one process.
"""

import contextlib
import os
import resource
import signal
import threading
import time
from pathlib import Path

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class PreemptTestDieHook(Hook):
    priority = 'HIGHEST'

    def __init__(self) -> None:
        how, _, at = (os.environ.get('RESNEST_TEST_DIE') or ':0').partition(':')
        self.how, self.at = how, int(at)
        rank = os.environ.get('RESNEST_TEST_DIE_RANK')
        self.rank = None if rank is None else int(rank)

    def _mine(self, runner, iteration: int) -> bool:
        return (iteration == self.at and self.how != ''
                and (self.rank is None or self.rank == get_rank()))

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if not self._mine(runner, runner.iter + 1):
            return
        if self.how == 'kill':
            os.kill(os.getpid(), signal.SIGKILL)
        elif self.how == 'term':
            os.kill(os.getpid(), signal.SIGTERM)
        elif self.how == 'usr1-group':
            os.killpg(os.getpgid(0), signal.SIGUSR1)

    def before_save_checkpoint(self, runner, checkpoint) -> None:
        if self.how != 'save' or not self._mine(runner, checkpoint['meta']['iter']):
            return
        sizes = [f.stat().st_size for f in os.scandir(runner.work_dir)
                 if f.name.endswith('.pth')]
        limit = max(sizes) // 2
        assert limit > 0, sizes
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it; the kernel kills
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


# ----------------------------------------------------------------------------- chaos

def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    children = []
    for stat in Path('/proc').glob('[0-9]*/stat'):
        try:
            fields = stat.read_text().rsplit(')', 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _kill_now(group: bool = False) -> None:
    if group:  # the whole job, as a lost node: the launcher, every rank, data workers
        launcher = os.getppid()
        ranks = _children(launcher)  # torchrun starts each rank in a session of its own
        with contextlib.suppress(OSError):
            os.killpg(os.getpgid(launcher), signal.SIGKILL)
        for pid in ranks:
            with contextlib.suppress(OSError):
                os.killpg(os.getpgid(pid), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def _tensor_bytes(node) -> int:
    if isinstance(node, torch.Tensor):
        return node.numel() * node.element_size()
    if isinstance(node, dict):
        return sum(_tensor_bytes(v) for v in node.values())
    if isinstance(node, (list, tuple)):
        return sum(_tensor_bytes(v) for v in node)
    return 0


@HOOKS.register_module()
class ChaosKillHook(Hook):
    """Kills its run at the moment ``RESNEST_TEST_CHAOS=<phase>:<n>:<fraction>[:group]`` says.

    - ``iter:N:F``: SIGKILL during training iteration N, about F of the way through it (a timer
      thread, timed by the shortest iteration this process has run; at the end of iteration
      N, before its save, if the timer has not fired yet; the first iteration of a process is
      killed at its start);
    - ``val:N:F``: SIGKILL in the validation after iteration N, in its first batch (timed the
      same way);
    - ``save:N:F``: killed by the kernel (SIGXFSZ) when the checkpoint of iteration N has
      F of its tensor bytes written (the file size limit), in the middle of the write;
    - ``saved:N:0``: SIGKILL right after the save of iteration N, before the validation
      (:class:`ChaosAfterSaveHook`);
    - ``:group`` kills the whole process group (every rank and the launcher) instead.

    ``RESNEST_TEST_DIE_RANK`` limits it to one process. ``RESNEST_TEST_FILL=N`` fills the work
    dir's file system (leaving a few KiB) just before the checkpoint of iteration N is written:
    the write then fails with ENOSPC; the filler is ``<work_dir>/../filler``.
    """

    priority = 'HIGHEST'  # after_train_iter: before the checkpoint hook's save

    def __init__(self) -> None:
        plan = (os.environ.get('RESNEST_TEST_CHAOS') or '').split(':')
        self.phase = plan[0] if plan[0] else None
        self.at = int(plan[1]) if self.phase else 0
        self.fraction = float(plan[2]) if self.phase else 0.0
        self.group = len(plan) > 3 and plan[3] == 'group'
        rank = os.environ.get('RESNEST_TEST_DIE_RANK')
        self.rank = None if rank is None else int(rank)
        fill = os.environ.get('RESNEST_TEST_FILL')
        self.fill_at = int(fill) if fill else None
        self.started = 0.0
        self.shortest: float | None = None  # the shortest training iteration so far
        self.timer: threading.Timer | None = None

    def mine(self, phase: str, iteration: int) -> bool:
        return (self.phase == phase and iteration == self.at
                and (self.rank is None or self.rank == get_rank()))

    def _arm(self) -> None:
        delay = self.fraction * (self.shortest or 0.0)
        if delay <= 0:
            _kill_now(self.group)
        self.timer = threading.Timer(delay, _kill_now, kwargs={'group': self.group})
        self.timer.daemon = True
        self.timer.start()

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self.started = time.perf_counter()
        if self.mine('iter', runner.iter + 1):
            self._arm()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if self.timer is not None:  # the iteration was shorter than planned
            _kill_now(self.group)
        took = time.perf_counter() - self.started
        self.shortest = took if self.shortest is None else min(self.shortest, took)

    def before_val_iter(self, runner, batch_idx, data_batch=None) -> None:
        if batch_idx == 0 and self.mine('val', runner.iter):
            self._arm()

    def after_val_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if self.timer is not None:
            _kill_now(self.group)

    def before_save_checkpoint(self, runner, checkpoint) -> None:
        iteration = checkpoint['meta']['iter']
        if self.fill_at == iteration:
            _fill(Path(runner.work_dir).parent / 'filler')
        if self.mine('save', iteration):
            size = _tensor_bytes([checkpoint.get('state_dict'), checkpoint.get('optimizer')])
            limit = max(int(size * self.fraction), 1)
            signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it; the kernel kills
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@HOOKS.register_module()
class ChaosAfterSaveHook(ChaosKillHook):
    """The ``saved:N`` plans of :class:`ChaosKillHook`: SIGKILL after the checkpoint hook."""

    priority = 'LOWEST'

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        pass

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if self.mine('saved', runner.iter + 1):
            _kill_now(self.group)

    def before_val_iter(self, runner, batch_idx, data_batch=None) -> None:
        pass

    def after_val_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        pass

    def before_save_checkpoint(self, runner, checkpoint) -> None:
        pass


def _fill(filler: Path, leave: int = 16 * 1024) -> None:
    """Write ``filler`` until its file system has about ``leave`` bytes free."""
    with open(filler, 'ab') as f:
        while True:
            stats = os.statvfs(filler)
            remaining = stats.f_bavail * stats.f_frsize - leave
            if remaining < 4096:
                return
            try:
                f.write(b'\0' * min(remaining, 1 << 20))
                f.flush()
            except OSError:
                return


@HOOKS.register_module()
class HoldHook(Hook):
    """``RESNEST_TEST_HOLD=<file>``: at the first training iteration, create ``<file>.ready``
    and wait until ``<file>`` is removed (so a test knows the run is mid-training)."""

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        hold = os.environ.get('RESNEST_TEST_HOLD')
        if not hold or not os.path.exists(hold):
            return
        Path(f'{hold}.ready').write_text(str(os.getpid()))
        while os.path.exists(hold):
            time.sleep(0.05)
