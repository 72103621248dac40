"""Training loops that continue a resumed run exactly where it stopped.

mmengine 0.10.7's loops, with three changes:

- after a resumed run has skipped the batches it already trained on (so the sampler and the
  data workers are where they were), the hooks' ``after_data_skip`` runs; there
  :class:`~.checkpoint_hook.AtomicCheckpointHook` restores the saved random states;
- the epoch-based loop resumes mid-epoch (mmengine restarts the epoch from its first batch
  while counting its iterations as done);
- validation runs with the training's random states saved and restored around it, so a run
  resumed after a validation draws the same numbers as one that went through it.

``type='resnest_mm.IterBasedTrainLoop'`` and ``'resnest_mm.EpochBasedTrainLoop'`` take the
arguments of mmengine's loops of the same names; the tools select them.
"""

from __future__ import annotations

import logging

from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop as MMEngineEpochLoop
from mmengine.runner import IterBasedTrainLoop as MMEngineIterLoop

from ..registry import LOOPS
from . import random_state

AFTER_DATA_SKIP = 'after_data_skip'


def _validate(loop) -> None:
    with random_state.preserved():
        loop.runner.val_loop.run()


@LOOPS.register_module(name='IterBasedTrainLoop')
class ExactIterBasedTrainLoop(MMEngineIterLoop):
    """mmengine's ``IterBasedTrainLoop`` that resumes exactly (see the module's notes)."""

    def run(self):
        self.runner.call_hook('before_train')
        self.runner.call_hook('before_train_epoch')
        if self._iter > 0:
            print_log(f'Advance dataloader {self._iter} steps to skip data that has already '
                      'been trained', logger='current', level=logging.WARNING)
            for _ in range(self._iter):
                next(self.dataloader_iterator)
            self.runner.call_hook(AFTER_DATA_SKIP)
        while self._iter < self._max_iters and not self.stop_training:
            self.runner.model.train()
            data_batch = next(self.dataloader_iterator)
            self.run_iter(data_batch)
            self._decide_current_val_interval()
            if (self.runner.val_loop is not None and self._iter >= self.val_begin
                    and (self._iter % self.val_interval == 0 or self._iter == self._max_iters)):
                _validate(self)
        self.runner.call_hook('after_train_epoch')
        self.runner.call_hook('after_train')
        return self.runner.model


@LOOPS.register_module(name='EpochBasedTrainLoop')
class ExactEpochBasedTrainLoop(MMEngineEpochLoop):
    """mmengine's ``EpochBasedTrainLoop`` that resumes exactly, mid-epoch too."""

    def run(self):
        self.runner.call_hook('before_train')
        self._resuming = self._iter > 0
        while self._epoch < self._max_epochs and not self.stop_training:
            self.run_epoch()
            self._decide_current_val_interval()
            if (self.runner.val_loop is not None and self._epoch >= self.val_begin
                    and (self._epoch % self.val_interval == 0
                         or self._epoch == self._max_epochs)):
                _validate(self)
        self.runner.call_hook('after_train')
        return self.runner.model

    def _batches(self):
        """The epoch's (index, batch) pairs, after the ones a resumed run already trained."""
        if not getattr(self, '_resuming', False):
            return enumerate(self.dataloader)
        self._resuming = False
        done = self._iter - self._epoch * len(self.dataloader)
        if not 0 <= done <= len(self.dataloader):
            print_log(f'Cannot place iteration {self._iter} in epoch {self._epoch} of '
                      f'{len(self.dataloader)} batches: the epoch starts from its first batch',
                      logger='current', level=logging.WARNING)
            done = 0
        if done == 0:  # the epoch's iterator (and its seed draw) comes after the restore
            self.runner.call_hook(AFTER_DATA_SKIP)
            return enumerate(self.dataloader)
        print_log(f'Advance dataloader {done} steps to skip data that has already been '
                  'trained in this epoch', logger='current', level=logging.WARNING)
        batches = iter(self.dataloader)
        for _ in range(done):
            next(batches)
        self.runner.call_hook(AFTER_DATA_SKIP)
        return enumerate(batches, start=done)

    def run_epoch(self) -> None:
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        for idx, data_batch in self._batches():
            self.run_iter(idx, data_batch)
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1
