"""Turn a training config into one that survives being killed (what ``tools/train.py`` does)."""

from __future__ import annotations

from collections.abc import Sequence

from mmengine.config import Config

from .preemption import parse_signals
from .resume import warn

CHECKPOINT_HOOKS = ('CheckpointHook', 'mmengine.CheckpointHook')
ATOMIC_CHECKPOINT_HOOK = 'resnest_mm.AtomicCheckpointHook'
PREEMPTION_HOOK = 'resnest_mm.PreemptionHook'
LOOPS = {f'{prefix}{name}': f'resnest_mm.{name}' for prefix in ('', 'mmengine.')
         for name in ('IterBasedTrainLoop', 'EpochBasedTrainLoop')}


def make_preemptible(cfg: Config, signals: Sequence[str] = ('SIGTERM',)) -> None:
    """Atomic checkpoints with random states, exactly resuming loops, save-and-stop on signals.

    In place: ``default_hooks.checkpoint`` becomes ``resnest_mm.AtomicCheckpointHook`` (same
    arguments; mmengine's default ``interval=1`` when the config has none), the train loop
    ``resnest_mm.IterBasedTrainLoop`` / ``EpochBasedTrainLoop`` (mmengine's, resuming exactly),
    and ``custom_hooks`` get a ``resnest_mm.PreemptionHook`` for ``signals`` unless they have
    one. A config with ``default_hooks.checkpoint=None`` or another hook type, or another loop
    type, keeps it, with a warning saying what is lost.

    Raises:
        ValueError: an unknown signal name.
    """
    parse_signals(signals)
    hooks = cfg.setdefault('default_hooks', {})
    if 'checkpoint' not in hooks:
        hooks['checkpoint'] = dict(type='CheckpointHook', interval=1)
    checkpoint = hooks['checkpoint']
    if checkpoint is not None and checkpoint.get('type') in CHECKPOINT_HOOKS:
        checkpoint['type'] = ATOMIC_CHECKPOINT_HOOK
    custom = list(cfg.get('custom_hooks') or [])
    if checkpoint is None or checkpoint.get('type') != ATOMIC_CHECKPOINT_HOOK:
        kind = 'None' if checkpoint is None else repr(checkpoint.get('type'))
        warn(f'default_hooks.checkpoint is {kind}, not a CheckpointHook: saves are not atomic, '
             'and a signal stops the run without saving it')
    elif not any(h.get('type') == PREEMPTION_HOOK for h in custom):
        custom.append(dict(type=PREEMPTION_HOOK, signals=list(signals)))
    cfg.custom_hooks = custom
    loop = cfg.get('train_cfg')
    if loop is None:
        return
    if 'type' not in loop and 'by_epoch' in loop:
        loop['type'] = 'EpochBasedTrainLoop' if loop.pop('by_epoch') else 'IterBasedTrainLoop'
    if loop.get('type') in LOOPS:
        loop['type'] = LOOPS[loop['type']]
    elif loop.get('type') not in LOOPS.values():
        warn(f'train_cfg type {loop.get("type")!r} is not mmengine\'s iteration- or epoch-based '
             'loop: a resumed run does not restore the random states, so it will not repeat '
             'the uninterrupted run exactly')
