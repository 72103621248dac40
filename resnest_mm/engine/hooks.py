"""Hooks: ``type='resnest_mm.DropBlockScheduleHook'`` in ``custom_hooks``, and the logger hook
the tools use in distributed runs.

The schedule reaches the DropBlocks through the model's ``set_dropblock_prob`` method (the
ResNeSt backbone has one), so the engine needs no model code.
"""

from __future__ import annotations

from mmengine.dist import is_main_process
from mmengine.hooks import Hook, LoggerHook
from mmengine.model import is_model_wrapper

from ..registry import HOOKS


def linear_ramp(final: float, step: int, ramp_steps: int) -> float:
    """``final * step / ramp_steps`` clipped to ``final``: the DropBlock probability at ``step``."""
    if ramp_steps <= 0:
        return final
    return final * min(step, ramp_steps) / ramp_steps


@HOOKS.register_module()
class DropBlockScheduleHook(Hook):
    """Ramp the probability of every DropBlock linearly from 0 to ``drop_prob``.

    Before each training iteration ``i`` (0-based) it sets
    ``drop_prob * min(i + 1, ramp_iters) / ramp_iters``, as the official recipe ramps it over
    training. Validation and test run in eval mode, where DropBlock does nothing.

    Args:
        drop_prob (float): Final probability, in ``[0, 1)``. Default: 0.1.
        ramp_iters (int): Iterations to reach it; 0 sets it at once. Default: 0.
    """

    priority = 'NORMAL'

    def __init__(self, drop_prob: float = 0.1, ramp_iters: int = 0) -> None:
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f'DropBlockScheduleHook: drop_prob={drop_prob!r} is invalid; '
                             'expected a float in [0, 1).')
        if isinstance(ramp_iters, bool) or not isinstance(ramp_iters, int) or ramp_iters < 0:
            raise ValueError(f'DropBlockScheduleHook: ramp_iters={ramp_iters!r} is invalid; '
                             'expected an int >= 0.')
        self.drop_prob = drop_prob
        self.ramp_iters = ramp_iters

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        prob = linear_ramp(self.drop_prob, runner.iter + 1, self.ramp_iters)
        dropblocks = sum(module.set_dropblock_prob(prob) or 0 for module in model.modules()
                         if callable(getattr(module, 'set_dropblock_prob', None)))
        if dropblocks == 0 and runner.iter == 0:
            raise RuntimeError('DropBlockScheduleHook: the model has no DropBlock; build the '
                               "backbone with dropblock=dict(drop_prob=0.0, block_size=3).")


@HOOKS.register_module()
class MainProcessLoggerHook(LoggerHook):
    """mmengine's ``LoggerHook`` whose test-metrics JSON is written by the main process only.

    In mmengine 0.10 every rank dumps the test metrics to the same ``<timestamp>.json`` under
    the shared log folder; two processes writing one file at once can leave it corrupt (seen
    here: a line ending in ``}}``). ``tools/test.py`` uses this hook in distributed runs. The
    arguments are ``LoggerHook``'s.
    """

    def after_test_epoch(self, runner, metrics=None) -> None:
        if is_main_process():
            super().after_test_epoch(runner, metrics)

