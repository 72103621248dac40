"""``resnest_mm.AtomicCheckpointHook``: mmengine's CheckpointHook, safe against kills.

mmengine 0.10.7 writes a checkpoint in place (``LocalBackend.put`` opens the final path with
'wb'), then ``last_checkpoint`` in place, and with ``max_keep_ckpts`` deletes the oldest
checkpoint *before* writing the new one: a kill during a save can leave a truncated newest
file, an empty ``last_checkpoint``, or no checkpoint at all. This hook

- writes checkpoints and ``last_checkpoint`` atomically (:mod:`.atomic`), ``last_checkpoint``
  only after its checkpoint is in place, and deletes outdated checkpoints only after both;
- stores every process's random states in the checkpoint's meta and restores them when a
  resumed run has skipped the data it already trained on (the loops of :mod:`.loops` call
  :meth:`after_data_skip`);
- saves on demand at the current iteration, mid-epoch too (:meth:`save_now`, used on
  preemption);
- stops the run with one line when a save fails (a full disk, a quota, a read-only or failing
  file system: any ``OSError``), naming the file, the reason and the previous checkpoint, which
  is intact because the failed write went to a temporary file (:class:`CheckpointNotWritten`,
  exit status 74). In a distributed run every process stops after the same save.
"""

from __future__ import annotations

import os.path as osp
import sys
from typing import Any

import torch
from mmengine.dist import all_reduce, get_world_size, is_main_process
from mmengine.hooks import CheckpointHook

from ..registry import HOOKS
from . import random_state
from .atomic import ATOMIC_BACKEND, atomic_write

LAST_CHECKPOINT = 'last_checkpoint'
MID_EPOCH_TEMPLATE = 'iter_{}.pth'
DATA_SEEDS = 'data_seeds'  # meta entry: the seeds of the sampler and of the data workers
# sysexits.h EX_IOERR, "an error occurred while doing I/O on some file"; not 75 (preempted):
# a scheduler must not requeue a run whose disk is full.
CHECKPOINT_NOT_WRITTEN_STATUS = 74


class CheckpointNotWritten(SystemExit):
    """A save failed (``OSError``); the run stopped with status 74 after one line on stderr."""

    def __init__(self, message: str) -> None:
        super().__init__(CHECKPOINT_NOT_WRITTEN_STATUS)
        self.message = message


def resume_hint(runner) -> str:
    """The command that resumes ``runner``'s run."""
    config = getattr(runner.cfg, 'filename', None) or 'CONFIG'
    return f'python tools/train.py {config} --work-dir {runner.work_dir} --resume'


def _previous_checkpoint(runner) -> str | None:
    """The checkpoint ``last_checkpoint`` names, if it is there (what ``--resume`` takes)."""
    pointer = osp.join(runner.work_dir, LAST_CHECKPOINT)
    try:
        with open(pointer) as f:
            named = f.read().strip()
    except OSError:
        return None
    return named if named and osp.isfile(named) else None


def data_seeds(runner) -> dict[str, int | None]:
    """The seeds the training data is drawn with: the sampler's and the workers' base.

    Together with the iteration they say where the data stream is; a resumed run replays
    the stream to that iteration (mmengine's data skipping), which needs the same seeds.
    """
    loader = runner.train_dataloader
    init = getattr(loader, 'worker_init_fn', None)
    return {'sampler': getattr(loader.sampler, 'seed', None),
            'workers': getattr(init, 'keywords', {}).get('seed')}


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` (same arguments) with atomic saves and random states.

    Local folders are written through the ``resnest_mm_atomic`` file backend; a run that sets
    ``backend_args`` or ``file_client_args`` (remote storage) keeps its own backend.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.resumed_random_states: list | None = None
        self.resumed_data_seeds: dict | None = None
        self._saved_states: tuple[int, list] | None = None  # (step, states) of the last save
        self.last_saved_iter: int | None = None  # 1-based iteration of the last save

    def before_train(self, runner) -> None:
        out_dir = str(self.out_dir or runner.work_dir)
        if self.backend_args is None and self.file_client_args is None and '://' not in out_dir:
            self.backend_args = {'backend': ATOMIC_BACKEND}
        super().before_train(runner)

    # ----------------------------------------------------------------------------- saving

    def _random_states(self, step: int) -> list:
        # CheckpointHook saves again at the same step after a new best validation score, from
        # within validation; the states to keep are those of the training step.
        if self._saved_states is None or self._saved_states[0] != step:
            self._saved_states = (step, random_state.gather())
        return self._saved_states[1]

    def _keep(self, runner, step: int) -> list[int]:
        """Add ``step`` to the kept checkpoints; returns the steps that fall out."""
        if self.max_keep_ckpts <= 0 or (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            return []
        dropped = []
        if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
            dropped.append(self.keep_ckpt_ids.popleft())
        self.keep_ckpt_ids.append(step)
        runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        return dropped

    def _remove(self, step: int) -> None:
        path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(step))
        if self.file_backend.isfile(path):
            self.file_backend.remove(path)
        elif self.file_backend.isdir(path):  # deepspeed checkpoints are folders
            self.file_backend.rmtree(path)

    def _write(self, runner, filename: str, meta: dict, by_epoch: bool, step: int) -> str:
        meta = {**meta, random_state.META_KEY: self._random_states(step),
                DATA_SEEDS: data_seeds(runner)}
        path = self.file_backend.join_path(self.out_dir, filename)
        previous = _previous_checkpoint(runner) if is_main_process() else None
        runner.message_hub.update_info('last_ckpt', path)
        failed: tuple[str, OSError] | None = None
        written = None
        try:
            runner.save_checkpoint(  # writes on the main process only
                self.out_dir, filename, self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler, meta=meta, by_epoch=by_epoch,
                backend_args=self.backend_args, **self.args)
        except OSError as error:
            failed = (path, error)
        if failed is None and is_main_process():
            pointer = osp.join(runner.work_dir, LAST_CHECKPOINT)
            try:
                atomic_write(pointer, path)
            except OSError as error:  # the checkpoint itself is in place: --resume finds it
                failed, written = (pointer, error), path
        self._stop_if_failed(runner, failed, previous, written)
        return path

    def _stop_if_failed(self, runner, failed: tuple[str, OSError] | None,
                        previous: str | None, written: str | None = None) -> None:
        """Stop every process of the run, with one line from the main one, if a save failed.

        A collective: every process calls it after the same save. ``written``: the checkpoint
        was written, ``last_checkpoint`` (``failed``) was not.
        """
        anywhere = failed is not None
        if get_world_size() > 1:
            flag = torch.tensor([int(anywhere)], dtype=torch.int64)
            all_reduce(flag, op='max')
            anywhere = bool(flag.item())
        if not anywhere:
            return
        message = ''
        if failed is not None:
            target, error = failed
            reason = f'[Errno {error.errno}] {error.strerror}' if error.errno else str(error)
            if written is not None:
                kept = f'the checkpoint {written} is complete, and --resume finds it'
            elif previous is None:
                kept = 'no earlier checkpoint was saved, so --resume starts from the beginning'
            else:
                kept = f'the previous checkpoint {previous} is intact'
            message = (f'resnest_mm: error: could not write {target} ({reason}); the run stops '
                       f'here, {kept}. Free space or fix the cause, then resume with: '
                       f'{resume_hint(runner)}')
            print(message, file=sys.stderr, flush=True)
        raise CheckpointNotWritten(message)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        # mmengine writes best_*.pth with runner.save_checkpoint directly
        previous = _previous_checkpoint(runner) if is_main_process() else None
        failed = None
        try:
            super()._save_best_checkpoint(runner, metrics)
        except OSError as error:
            failed = (error.filename or 'the best checkpoint', error)
        if self.save_best is not None:
            self._stop_if_failed(runner, failed, previous)

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        dropped = self._keep(runner, step)
        self.last_ckpt = self._write(runner, self.filename_tmpl.format(step), meta,
                                     self.by_epoch, step)
        if not self.by_epoch:
            self.last_saved_iter = meta['iter']
        if is_main_process():
            for old in dropped:
                self._remove(old)

    def save_now(self, runner) -> str:
        """Save the state after the current training iteration (unless already saved).

        Iteration-based runs save as the hook does every ``interval``; epoch-based runs save
        ``iter_<n>.pth`` with the epoch still in progress, which the loops of :mod:`.loops`
        resume mid-epoch. Returns the checkpoint's path.
        """
        done = runner.iter + 1
        if self.last_saved_iter == done and self.last_ckpt is not None:
            return self.last_ckpt
        if not self.by_epoch:
            self._save_checkpoint_with_step(runner, done, dict(epoch=runner.epoch, iter=done))
        else:
            self.last_ckpt = self._write(runner, MID_EPOCH_TEMPLATE.format(done),
                                         dict(epoch=runner.epoch, iter=done), False, done)
            self.last_saved_iter = done
        return self.last_ckpt

    # ----------------------------------------------------------------------------- resuming

    def after_load_checkpoint(self, runner, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get('meta', {})
        self.resumed_random_states = meta.get(random_state.META_KEY)
        self.resumed_data_seeds = meta.get(DATA_SEEDS)

    def after_data_skip(self, runner) -> None:
        """Called by the loops of :mod:`.loops` once a resumed run has skipped the data it had
        already trained on: restore the random states of the moment the checkpoint was saved."""
        states, self.resumed_random_states = self.resumed_random_states, None
        saved, current = self.resumed_data_seeds, data_seeds(runner)
        if saved is not None and saved != current:
            runner.logger.warning(
                f'The data is drawn with other seeds than in the run that saved the checkpoint '
                f'({current} instead of {saved}; randomness.diff_rank_seed=True draws new ones '
                'at each start): the resumed run sees other batches than it would have.')
        if states is None:
            runner.logger.warning(
                'The checkpoint holds no random states (it was not saved by '
                'resnest_mm.AtomicCheckpointHook): the resumed run continues with fresh ones, '
                'so it will not repeat the uninterrupted run exactly.')
        elif not random_state.restore_rank(states):
            runner.logger.warning(
                f'The checkpoint was saved by {len(states)} process(es), this run has another '
                'number: the random states are not restored.')
