"""Train and test entry points behind ``tools/train.py`` and ``tools/test.py``.

They follow MMDetection's and MMSegmentation's own tools (mmengine's Runner, the codebase's
registries through ``default_scope``), plus what this machine class needs: distributed runs
on the CPU (:mod:`.distributed`), loading training checkpoints on torch >= 2.6
(:mod:`.mmengine_checkpoints`) and clear errors before any worker starts (:mod:`.config`).
"""

from __future__ import annotations

import logging
import os.path as osp
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.runner import Runner

from ..compat import cpu_fused_optimizers
from ..engine import (
    CheckpointNotWritten,
    TrainingPreempted,
    find_resume_point,
    load_checked,
    make_preemptible,
)
from ..engine.workdir_lock import check_work_dir, lock_for_run, release_work_dir
from ..pretrained import fetch_pretrained_checkpoints
from .config import (
    ConfigError,
    check_checkpoint_path,
    check_dataset_paths,
    check_model,
    check_train_options,
    codebase_of,
    load_config,
)
from .distributed import check_launcher, setup_cpu_distributed, shutdown_distributed
from .mmengine_checkpoints import mmengine_checkpoint_globals


def _default_work_dir(config: str | Path) -> str:
    return osp.join('./work_dirs', Path(config).stem)


def build_train_config(
    config: str | Path,
    work_dir: str | None = None,
    resume: str | None = None,
    amp: bool = False,
    auto_scale_lr: bool = False,
    cfg_options: dict | None = None,
    launcher: str = 'none',
    preempt_signals: tuple[str, ...] | list[str] = ('SIGTERM',),
    channels_last: bool = False,
    allow_shared_work_dir: bool = False,
) -> Config:
    """The config of a training run, as ``tools/train.py`` builds it.

    Checkpoints are written atomically with the random states, a resumed run continues
    exactly, and on ``preempt_signals`` the run saves and exits with status 75
    (:func:`resnest_mm.engine.make_preemptible`).

    Args:
        config: path of the config file.
        work_dir: where logs and checkpoints go; default ``./work_dirs/<config name>``.
        resume: None (no resume), 'auto' (the newest checkpoint in the work dir that loads;
            none: from the start) or a path (which must load).
        amp: mixed precision: mmengine's AmpOptimWrapper (float16, loss scaling) on a GPU;
            on the CPU bfloat16 autocast (:func:`enable_cpu_amp`).
        auto_scale_lr: scale the learning rate by the actual total batch size.
        cfg_options: overrides, ``{'a.b': value}``.
        launcher: 'none', 'pytorch', 'slurm' or 'mpi'.
        preempt_signals: names from SIGTERM, SIGUSR1, SIGUSR2.
        channels_last: model and input images in ``torch.channels_last``.
        allow_shared_work_dir: run without the work dir's lock (``cfg.allow_shared_work_dir``;
            see :mod:`resnest_mm.engine.workdir_lock`).
    """
    check_launcher(launcher)
    cfg = load_config(config, cfg_options)
    codebase_of(cfg)
    cfg.launcher = launcher
    cfg.work_dir = work_dir or cfg.get('work_dir') or _default_work_dir(config)
    if allow_shared_work_dir:
        cfg.allow_shared_work_dir = True
    if amp and not torch.cuda.is_available():
        enable_cpu_amp(cfg, 'train')
    elif amp and cfg.optim_wrapper.get('type', 'OptimWrapper') != 'AmpOptimWrapper':
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if channels_last:
        _add_hook(cfg, 'resnest_mm.ChannelsLastHook')
    plain_optimizer_where_unfused(cfg)
    if auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise ValueError(f'--auto-scale-lr needs auto_scale_lr.base_batch_size in {config}')
        cfg.auto_scale_lr.enable = True
    make_preemptible(cfg, preempt_signals)
    if resume is not None:
        _set_resume(cfg, resume)
    return cfg


def plain_optimizer_where_unfused(cfg: Config) -> None:
    """``optimizer.fused=True`` on a CPU-only run with a torch lacking fused CPU optimizers
    (before 2.4): PyTorch's per-parameter loop instead, announced in one line. Fusing only
    makes the same update faster, so the run goes on."""
    optimizer = cfg.get('optim_wrapper', {}).get('optimizer', {})
    if (not isinstance(optimizer, dict) or not optimizer.get('fused')
            or torch.cuda.is_available() or cpu_fused_optimizers()):
        return
    print_log(f'optim_wrapper.optimizer.fused=True needs torch >= 2.4 on the CPU; torch '
              f'{torch.__version__} runs the same {optimizer.get("type")} update as its '
              'per-parameter loop instead (slower).', logger='current', level=logging.WARNING)
    optimizer.fused = None


# checkpoint path -> its state dict's shapes, read when the resume point was chosen, for the
# check that it fits the model (prepare_run) without reading the file a third time
_RESUME_SHAPES: dict[str, dict[str, tuple[int, ...]]] = {}


def _shapes(checkpoint: dict) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in checkpoint['state_dict'].items() if hasattr(v, 'shape')}


def check_resume_fits(model: torch.nn.Module, path: str,
                      shapes: dict[str, tuple[int, ...]]) -> None:
    """Refuse to resume from a checkpoint whose weights are another model's.

    mmengine resumes with ``strict=False``: a checkpoint of another model loads only the
    matching tensors (with a warning) and then the optimizer state fails in the middle of
    ``torch.optim``.

    Raises:
        ConfigError: naming the checkpoint and the first differences.
    """
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in own if k not in shapes and not k.endswith('num_batches_tracked')]
    extra = [k for k in shapes if k not in own and not k.endswith('num_batches_tracked')]
    differ = [k for k in own if k in shapes and own[k] != shapes[k]]
    if not (missing or extra or differ):
        return
    found = []
    if differ:
        k = differ[0]
        found.append(f'{len(differ)} of other shapes (e.g. {k}: {list(shapes[k])} in the '
                     f'checkpoint, {list(own[k])} in this model)')
    if missing:
        found.append(f'{len(missing)} of this model missing (e.g. {missing[0]})')
    if extra:
        found.append(f'{len(extra)} not in this model (e.g. {extra[0]})')
    raise ConfigError(
        f'--resume checkpoint {path} was saved by another model: of its {len(shapes)} '
        f'tensors, {"; ".join(found)}. Resume with a checkpoint of this config, or start '
        'from its weights with --cfg-options load_from=PATH (no --resume)')


def _set_resume(cfg: Config, resume: str) -> None:
    """Resume from ``resume`` ('auto': the newest checkpoint in the work dir that loads), with
    the checkpoint's seed, which the sampler and the data workers draw from."""
    if resume == 'auto':
        check_work_dir(cfg.work_dir)  # an unlistable work dir must not look empty
        point = find_resume_point(cfg.work_dir)
        if point is None:  # nothing saved yet: from the start
            cfg.resume, cfg.load_from = False, None
            return
        path, meta = point.path, point.meta
        shapes = point.shapes
    else:
        check_checkpoint_path('--resume checkpoint', resume)
        checkpoint = load_checked(resume, '--resume checkpoint', training=True)
        path, meta, shapes = resume, checkpoint['meta'], _shapes(checkpoint)
    cfg.resume, cfg.load_from = True, path
    _RESUME_SHAPES[osp.realpath(path)] = shapes
    if meta.get('seed') is not None:
        cfg.randomness = {**cfg.get('randomness', {}), 'seed': meta['seed']}


MMENGINE_LOGGER_HOOK = ('LoggerHook', 'mmengine.LoggerHook')


def build_test_config(
    config: str | Path,
    checkpoint: str,
    work_dir: str | None = None,
    out: str | None = None,
    show_dir: str | None = None,
    tta: bool = False,
    cfg_options: dict | None = None,
    launcher: str = 'none',
    amp: bool = False,
    channels_last: bool = False,
) -> Config:
    """The config of a test run, as ``tools/test.py`` builds it.

    Args:
        config, work_dir, cfg_options, launcher: as :func:`build_train_config`.
        checkpoint: the weights to evaluate.
        out: mmdet: a ``.pkl`` file for the raw predictions; mmseg: a folder for the
            prediction PNGs.
        show_dir: folder (relative to ``<work_dir>/<timestamp>/``) for pictures of predictions.
        tta: test-time augmentation, from the config's ``tta_model`` and ``tta_pipeline``.
        amp, channels_last: as :func:`build_train_config` (``amp``: the test loop's autocast,
            float16 on a GPU, bfloat16 on the CPU).

    In a distributed run mmengine's ``LoggerHook`` becomes
    :class:`resnest_mm.engine.MainProcessLoggerHook`, so that one process writes the metrics JSON.
    """
    check_launcher(launcher)
    check_checkpoint_path('checkpoint', checkpoint)
    cfg = load_config(config, cfg_options)
    codebase = codebase_of(cfg)
    cfg.launcher = launcher
    cfg.work_dir = work_dir or cfg.get('work_dir') or _default_work_dir(config)
    cfg.load_from = checkpoint
    logger = cfg.get('default_hooks', {}).get('logger')
    if launcher != 'none' and logger is not None and logger.get('type') in MMENGINE_LOGGER_HOOK:
        logger['type'] = 'resnest_mm.MainProcessLoggerHook'  # one writer of the metrics JSON
    if show_dir:
        enable_prediction_pictures(cfg, show_dir)
    if tta:
        if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
            raise ValueError(f'--tta needs tta_model and tta_pipeline in {config}; it has '
                             f'{[k for k in ("tta_model", "tta_pipeline") if k in cfg]}')
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.model = dict(**cfg.tta_model, module=cfg.model)
    if out:
        _dump_predictions(cfg, codebase, out)
    if amp:
        cfg.test_cfg = dict(cfg.get('test_cfg') or {}, fp16=True)
        if not torch.cuda.is_available():
            enable_cpu_amp(cfg, 'test')
    if channels_last:
        _add_hook(cfg, 'resnest_mm.ChannelsLastHook')
    return cfg


def _add_hook(cfg: Config, hook_type: str) -> None:
    hooks = list(cfg.get('custom_hooks') or [])
    if all(hook.get('type') != hook_type for hook in hooks):
        cfg.custom_hooks = [*hooks, dict(type=hook_type)]


def enable_cpu_amp(cfg: Config, mode: str) -> None:
    """bfloat16 autocast on the CPU: ``resnest_mm.CPUAmpOptimWrapper`` for training (no loss
    scaling; mmengine's AmpOptimWrapper refuses CPUs), the test loop's ``fp16`` for testing,
    and ``resnest_mm.CPUAmpHook`` (mmcv ops without a bf16 CPU kernel run in fp32)."""
    if mode == 'train':
        wrapper = cfg.optim_wrapper
        if wrapper.get('type', 'OptimWrapper') not in ('OptimWrapper', 'AmpOptimWrapper'):
            raise ValueError(f'--amp on the CPU replaces OptimWrapper; {cfg.filename} has '
                             f'optim_wrapper.type={wrapper.type!r}')
        wrapper.pop('loss_scale', None)
        wrapper.pop('dtype', None)
        wrapper.type = 'resnest_mm.CPUAmpOptimWrapper'
    _add_hook(cfg, 'resnest_mm.CPUAmpHook')


def enable_prediction_pictures(cfg: Config, show_dir: str) -> None:
    """Make the visualisation hook save a picture per test image under ``show_dir``."""
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        raise ValueError(f'{cfg.filename} has no default_hooks.visualization for --show-dir')
    hook.draw = True
    hook.interval = 1
    if codebase_of(cfg) == 'mmdet':
        hook.test_out_dir = show_dir
    else:  # mmseg's hook writes through the visualizer's save_dir
        cfg.visualizer.save_dir = show_dir


def _dump_predictions(cfg: Config, codebase: str, out: str) -> None:
    if codebase == 'mmdet':
        if not out.endswith(('.pkl', '.pickle')):
            raise ValueError(f'--out {out!r}: mmdet predictions are dumped to a .pkl file')
        evaluators = cfg.test_evaluator
        evaluators = list(evaluators) if isinstance(evaluators, list) else [evaluators]
        cfg.test_evaluator = [*evaluators, dict(type='DumpDetResults', out_file_path=out)]
    else:
        cfg.test_evaluator.output_dir = out
        cfg.test_evaluator.keep_results = True


# Errors of the set-up stage that the tools print as one line (no trace); ConfigError is a
# ValueError, WorkDirBusyError and WorkDirUnusableError are RuntimeErrors.
USER_ERRORS = (FileNotFoundError, ValueError, RuntimeError, KeyError)


_PREPARED: set[str] = set()  # work dirs of the training runs prepared in this process


def prepare_run(cfg: Config, mode: str) -> None:
    """Check what the run needs, set up a CPU-distributed run if there is one, and (training)
    take the work dir's lock; nothing is written before all checks pass.

    Safe to call twice. Args: ``cfg`` from :func:`build_train_config` or
    :func:`build_test_config`; ``mode`` 'train' or 'test' (which datasets must exist; a test
    run's checkpoint must load, else :class:`~resnest_mm.engine.BrokenCheckpointError`).

    A training run also checks its config entries and work dir, builds and initialises its
    model once (a bad backbone option, a missing pretrained file) and, when resuming, that the
    checkpoint is this model's; then it locks the work dir
    (:mod:`resnest_mm.engine.workdir_lock`) unless ``cfg.allow_shared_work_dir`` is True.
    Raises the errors the tools print as one line (:data:`USER_ERRORS`), and
    :class:`~resnest_mm.engine.workdir_lock.WorkDirBusyError` when another run holds the lock.
    """
    if mode == 'test' and cfg.get('load_from'):
        load_checked(cfg.load_from)
    check_dataset_paths(cfg, mode)
    fresh = mode == 'train' and osp.realpath(cfg.work_dir) not in _PREPARED
    if fresh:
        check_train_options(cfg)
        check_work_dir(cfg.work_dir)
        model = check_model(cfg)
        fetch_pretrained_checkpoints(cfg.model)
        if cfg.get('resume') and cfg.get('load_from'):
            path = cfg.load_from
            shapes = _RESUME_SHAPES.get(osp.realpath(path))
            if shapes is None:
                shapes = _shapes(load_checked(path, 'resume checkpoint', training=True))
            check_resume_fits(model, path, shapes)
        del model
    setup_cpu_distributed(cfg, cfg.launcher)
    if mode == 'train' and not cfg.get('allow_shared_work_dir'):
        lock_for_run(cfg.work_dir)  # this process's lock, taken once
    if fresh:
        _PREPARED.add(osp.realpath(cfg.work_dir))


def build_runner(cfg: Config) -> Runner:
    """mmengine's Runner (or the config's ``runner_type``) for a prepared config."""
    # mm configs name their visualizer 'visualizer'; a second Runner in the same process would
    # then reuse the first one's instance (and its save_dir). Unnamed, each run gets its own.
    if isinstance(cfg.get('visualizer'), dict):
        cfg.visualizer.pop('name', None)
    if 'runner_type' in cfg:
        from mmengine.registry import RUNNERS
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def run_train(cfg: Config) -> Runner:
    """Train with a config from :func:`build_train_config`; returns the finished Runner.

    The work dir's lock (:func:`prepare_run`) is held until the run ends, however it ends.

    Raises:
        TrainingPreempted: stopped on a signal after saving (a ``SystemExit`` with status 75),
            with the process group, if any, shut down.
        CheckpointNotWritten: a save failed, e.g. on a full disk (a ``SystemExit`` with status
            74, after one line on stderr), with the process group, if any, shut down.
    """
    try:
        prepare_run(cfg, 'train')
        runner = build_runner(cfg)
        with mmengine_checkpoint_globals():
            try:
                runner.train()
            except (TrainingPreempted, CheckpointNotWritten):
                shutdown_distributed()  # a live gloo group can abort the exit, changing its status
                raise
    finally:
        end_run(cfg)
    return runner


def end_run(cfg: Config) -> None:
    """Release what :func:`prepare_run` took for a training run (the work dir's lock); the
    next :func:`prepare_run` of that work dir checks everything again."""
    _PREPARED.discard(osp.realpath(cfg.work_dir))
    release_work_dir(cfg.work_dir)


def run_test(cfg: Config) -> dict:
    """Evaluate with a config from :func:`build_test_config`; returns the metrics."""
    prepare_run(cfg, 'test')
    runner = build_runner(cfg)
    with mmengine_checkpoint_globals():
        return runner.test()
