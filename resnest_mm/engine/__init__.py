"""Training that survives being killed: atomic checkpoints carrying the random states, resume
from the newest intact one, save-and-stop on SIGTERM, exact continuation, one line and status 74
when a save fails (a full disk), and one run per work dir (:mod:`.workdir_lock`); the DropBlock
schedule and the main-process logger (:mod:`.hooks`).

Registers ``resnest_mm.AtomicCheckpointHook``, ``resnest_mm.PreemptionHook``,
``resnest_mm.DropBlockScheduleHook``, ``resnest_mm.MainProcessLoggerHook`` and the loops
``resnest_mm.IterBasedTrainLoop`` / ``resnest_mm.EpochBasedTrainLoop``;
:func:`make_preemptible` puts them into a training config.
"""

from .atomic import ATOMIC_BACKEND, AtomicLocalBackend, atomic_write
from .checkpoint_hook import (
    CHECKPOINT_NOT_WRITTEN_STATUS,
    AtomicCheckpointHook,
    CheckpointNotWritten,
)
from .configure import make_preemptible
from .hooks import DropBlockScheduleHook, MainProcessLoggerHook
from .loops import ExactEpochBasedTrainLoop, ExactIterBasedTrainLoop
from .preemption import PREEMPTED_EXIT_STATUS, PreemptionHook, TrainingPreempted
from .resume import BrokenCheckpointError, ResumePoint, find_resume_point, load_checked
from .workdir_lock import (
    WorkDirBusyError,
    WorkDirLock,
    WorkDirUnusableError,
    lock_for_run,
    release_work_dir,
)

__all__ = [
    'ATOMIC_BACKEND',
    'CHECKPOINT_NOT_WRITTEN_STATUS',
    'PREEMPTED_EXIT_STATUS',
    'AtomicCheckpointHook',
    'AtomicLocalBackend',
    'BrokenCheckpointError',
    'CheckpointNotWritten',
    'DropBlockScheduleHook',
    'ExactEpochBasedTrainLoop',
    'ExactIterBasedTrainLoop',
    'MainProcessLoggerHook',
    'PreemptionHook',
    'ResumePoint',
    'TrainingPreempted',
    'WorkDirBusyError',
    'WorkDirLock',
    'WorkDirUnusableError',
    'atomic_write',
    'find_resume_point',
    'load_checked',
    'lock_for_run',
    'make_preemptible',
    'release_work_dir',
]
