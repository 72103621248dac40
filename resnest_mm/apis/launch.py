"""torchrun for ``tools/dist_train.sh`` / ``dist_test.sh``, exiting with the workers' status.

torchrun (``torch.distributed.run``) ends with status 1 and a traceback of its own whenever a
worker fails, whatever the worker's status. A scheduler that requeues a preempted run (status
75, :data:`resnest_mm.engine.PREEMPTED_EXIT_STATUS`) or must not requeue one whose save failed
(74) then cannot tell them apart, and a user's mistake reported in one line by every worker is
followed by forty lines of launcher traceback. :func:`torchrun` runs torchrun's own ``main``
and, when workers fail, prints one line and returns the status of the first worker that
failed (torch's root cause; ``128 + N`` for a worker killed by signal ``N``, as shells do).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence


def shell_status(exitcode: int) -> int:
    """A process's status as a shell reports it: ``128 + N`` for death by signal ``N``."""
    return 128 - exitcode if exitcode < 0 else exitcode


def _describe(exitcode: int) -> str:
    if exitcode >= 0:
        return f'status {exitcode}'
    try:
        name = signal.Signals(-exitcode).name
    except ValueError:
        name = f'signal {-exitcode}'
    return f'{name} (status {shell_status(exitcode)})'


def torchrun(argv: Sequence[str]) -> int:
    """``python -m torch.distributed.run *argv``, returning the first failed worker's status.

    Returns 0 when every worker succeeds. When workers fail, prints which rank failed first
    and how, and returns its :func:`shell_status`. When the launcher itself receives a
    termination signal (it passes it on to the workers), returns ``128 + N``.
    """
    from torch.distributed import run
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    try:
        run.main(list(argv))
    except ChildFailedError as err:
        rank, failure = err.get_first_failure()
        print(f'dist_run: rank {rank} ended first, with {_describe(failure.exitcode)}; its '
              'output is above', file=sys.stderr)
        return shell_status(failure.exitcode)
    except SignalException as err:
        print(f'dist_run: the launcher received {signal.Signals(err.sigval).name} and passed it '
              'on to the processes', file=sys.stderr)
        return 128 + int(err.sigval)
    return 0
