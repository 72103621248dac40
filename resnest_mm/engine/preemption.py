"""``resnest_mm.PreemptionHook``: on SIGTERM (or another chosen signal) save, then stop.

Clusters announce the end of a job with a signal: Kubernetes and SLURM send SIGTERM some
seconds before SIGKILL, and SLURM sends a chosen signal ahead of the time limit with
``--signal=USR1@120``. mmengine 0.10 installs no handler, so the run dies at once and loses
the iterations since its last checkpoint. With this hook the run finishes the iteration in
progress, saves a checkpoint at it (through :class:`~.checkpoint_hook.AtomicCheckpointHook`),
prints one line with the checkpoint and how to resume, and exits with status
:data:`PREEMPTED_EXIT_STATUS`. In a distributed run the processes agree on the signal after
every iteration (an all-reduce of one integer), so all of them stop after the same one.
A second signal of the same kind ends the process at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import weakref
from collections.abc import Sequence
from typing import Any

import torch
from mmengine.dist import all_reduce, barrier, get_world_size, is_main_process
from mmengine.hooks import Hook

from ..registry import HOOKS
from .checkpoint_hook import AtomicCheckpointHook, resume_hint

# sysexits.h EX_TEMPFAIL: "a temporary failure; the user is invited to retry later".
PREEMPTED_EXIT_STATUS = 75
PREEMPTION_SIGNALS = ('SIGTERM', 'SIGUSR1', 'SIGUSR2')


class TrainingPreempted(SystemExit):
    """The run stopped on a signal after saving ``checkpoint``; exits with status 75."""

    def __init__(self, signum: int, checkpoint: str) -> None:
        super().__init__(PREEMPTED_EXIT_STATUS)
        self.signum, self.checkpoint = signum, checkpoint


def parse_signals(names: Sequence[str]) -> list[signal.Signals]:
    """``['SIGTERM', 'USR1']`` -> signals; raises ValueError naming an unknown one."""
    signals = []
    for name in names:
        full = name.upper() if name.upper().startswith('SIG') else f'SIG{name.upper()}'
        if full not in PREEMPTION_SIGNALS:
            raise ValueError(f'preemption signal {name!r} is invalid; allowed: '
                             f'{", ".join(PREEMPTION_SIGNALS)}')
        signals.append(signal.Signals[full])
    return signals


class SignalCatcher:
    """Records the first of ``signals`` this process gets; a second one ends it at once.

    Other processes forked from this one (data workers) inherit the handler, which ignores
    signals there: they survive a signal sent to the whole process group.
    """

    def __init__(self, signals: Sequence[signal.Signals]) -> None:
        self.received = 0
        self._pid = os.getpid()
        self._previous: dict[int, Any] = {}
        for sig in signals:
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame) -> None:
        if os.getpid() != self._pid:  # a data worker
            return
        if self.received:  # asked twice: stop now, as without the catcher
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
            os.kill(os.getpid(), signum)
            return
        self.received = signum

    def close(self) -> None:
        """Put back the handlers that were there before (where they are still ours)."""
        for sig, previous in self._previous.items():
            with contextlib.suppress(ValueError):  # outside the main thread
                if signal.getsignal(sig) == self._on_signal:
                    signal.signal(sig, previous)
        self._previous.clear()


@HOOKS.register_module()
class PreemptionHook(Hook):
    """Save at the current iteration and stop when the process receives one of ``signals``.

    Args:
        signals (Sequence[str]): Signal names, from ``SIGTERM``, ``SIGUSR1``, ``SIGUSR2``.
            Default: ``('SIGTERM',)``.

    The handlers are installed when the hook is built (with the Runner), before the train
    loop forks its data workers, so that the workers inherit them (see :class:`SignalCatcher`),
    and are removed after training or when the hook is collected. The run needs an
    ``AtomicCheckpointHook`` (the tools make ``default_hooks.checkpoint`` one). At the last
    iteration a signal does not stop the run, which is about to end anyway.
    """

    priority = 'LOWEST'  # after the checkpoint hook's own save at this iteration

    def __init__(self, signals: Sequence[str] = ('SIGTERM',)) -> None:
        self.signals = parse_signals(signals)
        self.catcher: SignalCatcher | None = None
        if threading.current_thread() is threading.main_thread():
            self.catcher = SignalCatcher(self.signals)
            weakref.finalize(self, self.catcher.close)

    @property
    def received(self) -> int:
        """The signal received (0: none)."""
        return self.catcher.received if self.catcher else 0

    def before_train(self, runner) -> None:
        _checkpoint_hook(runner)  # fail before training, not at the signal
        if self.catcher is None:
            runner.logger.warning('PreemptionHook: the Runner was built outside the main '
                                  'thread, where Python cannot handle signals; preemption is '
                                  'off.')

    def after_train(self, runner) -> None:
        if self.catcher is not None:
            self.catcher.close()

    def _agreed_signal(self) -> int:
        if get_world_size() == 1:
            return self.received
        flag = torch.tensor([self.received], dtype=torch.int64)
        all_reduce(flag, op='max')
        return int(flag.item())

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        signum = self._agreed_signal()
        if not signum:
            return
        name = signal.Signals(signum).name
        if self.is_last_train_iter(runner):
            runner.logger.warning(f'{name} at the last iteration: finishing the run.')
            return
        path = _checkpoint_hook(runner).save_now(runner)
        barrier()  # no process exits (and gets the others killed) before the file is in place
        if is_main_process():
            print(f'Preempted by {name}: saved iteration {runner.iter + 1} to {path}; exiting '
                  f'with status {PREEMPTED_EXIT_STATUS}. Resume with: {resume_hint(runner)}',
                  file=sys.stderr, flush=True)
        raise TrainingPreempted(signum, path)


def _checkpoint_hook(runner) -> AtomicCheckpointHook:
    for hook in runner.hooks:
        if isinstance(hook, AtomicCheckpointHook):
            return hook
    raise RuntimeError("PreemptionHook needs default_hooks.checkpoint of type "
                       "'resnest_mm.AtomicCheckpointHook' to save the run before it stops")
