"""Training that survives being killed: atomic checkpoints carrying the random states, resume
from the newest intact one, save-and-stop on SIGTERM, exact continuation.

Registers ``resnest_mm.AtomicCheckpointHook``, ``resnest_mm.PreemptionHook`` and the loops
``resnest_mm.IterBasedTrainLoop`` / ``resnest_mm.EpochBasedTrainLoop``;
:func:`make_preemptible` puts them into a training config.
"""

from .atomic import ATOMIC_BACKEND, AtomicLocalBackend, atomic_write
from .checkpoint_hook import AtomicCheckpointHook
from .configure import make_preemptible
from .loops import ExactEpochBasedTrainLoop, ExactIterBasedTrainLoop
from .preemption import PREEMPTED_EXIT_STATUS, PreemptionHook, TrainingPreempted
from .resume import BrokenCheckpointError, ResumePoint, find_resume_point, load_checked

__all__ = [
    'ATOMIC_BACKEND',
    'PREEMPTED_EXIT_STATUS',
    'AtomicCheckpointHook',
    'AtomicLocalBackend',
    'BrokenCheckpointError',
    'ExactEpochBasedTrainLoop',
    'ExactIterBasedTrainLoop',
    'PreemptionHook',
    'ResumePoint',
    'TrainingPreempted',
    'atomic_write',
    'find_resume_point',
    'load_checked',
    'make_preemptible',
]
