"""torchrun for ``tools/dist_train.sh`` / ``dist_test.sh``, exiting with the workers' status.

torchrun (``torch.distributed.run``) ends with status 1 and a traceback of its own whenever a
worker fails, whatever the worker's status. A scheduler that requeues a preempted run (status
75, :data:`resnest_mm.engine.PREEMPTED_EXIT_STATUS`) or must not requeue one whose save failed
(74) then cannot tell them apart, and a user's mistake reported in one line by every worker is
followed by forty lines of launcher traceback. :func:`torchrun` runs torchrun's own ``main``
and, when workers fail, prints one line and returns the status of the worker that stopped the
run (:func:`root_failure`; ``128 + N`` for a worker killed by signal ``N``, as shells do).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch.distributed.elastic.multiprocessing.errors import ProcessFailure


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


def _consequence_rank(exitcode: int) -> int:
    """How likely a worker's end is the consequence of another's: 0 killed by a signal other
    than SIGTERM (kill -9, the OOM killer, a file-size limit: a cause), 1 a deliberate status
    (75 preempted, 74 save failed, 2 usage), 2 status 1 (an exception, such as the connection
    reset that a peer's death causes), 3 SIGTERM (how torchrun stops the others)."""
    if exitcode < 0:
        return 3 if -exitcode == signal.SIGTERM else 0
    return 2 if exitcode == 1 else 1


def root_failure(failures: Mapping[int, ProcessFailure]) -> tuple[int, ProcessFailure]:
    """The rank whose end stopped the run, and its failure: by :func:`_consequence_rank`,
    then the earliest (torch records the time to the second, so ties are common), then the
    lowest rank."""
    rank = min(failures, key=lambda r: (_consequence_rank(failures[r].exitcode),
                                        failures[r].timestamp, r))
    return rank, failures[rank]


def torchrun(argv: Sequence[str]) -> int:
    """``python -m torch.distributed.run *argv``, returning the first failed worker's status.

    Returns 0 when every worker succeeds. When workers fail, prints which rank stopped the
    run (:func:`root_failure`) and how, and returns its :func:`shell_status`. When the
    launcher itself receives a termination signal (it passes it on to the workers), returns
    ``128 + N``.
    """
    from torch.distributed import run
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    try:
        run.main(list(argv))
    except ChildFailedError as err:
        rank, failure = root_failure(err.failures)
        print(f'dist_run: rank {rank} stopped the run, with {_describe(failure.exitcode)}; its '
              'output is above', file=sys.stderr)
        return shell_status(failure.exitcode)
    except SignalException as err:
        print(f'dist_run: the launcher received {signal.Signals(err.sigval).name} and passed it '
              'on to the processes', file=sys.stderr)
        return 128 + int(err.sigval)
    return 0
