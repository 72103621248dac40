"""Config loading for the tools: clear errors for a wrong config path, a missing dataset, and
config entries or a model the run cannot use (one line each, before anything is written)."""

from __future__ import annotations

import inspect
import logging
import os
import os.path as osp
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mmengine.config import Config

CODEBASES = ('mmdet', 'mmseg')
DATALOADERS = {
    'train': ('train_dataloader', 'val_dataloader'),
    'test': ('test_dataloader',),
}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset root, annotation file or image folder named by a config does not exist."""


def load_config(path: str | Path, cfg_options: dict | None = None) -> Config:
    """Read a config file and apply ``--cfg-options`` style overrides.

    Raises:
        FileNotFoundError: the file does not exist (the message names it).
        ConfigError: it is a folder, or not valid Python.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f'config file {str(path)!r} is a folder; pass the path of a config '
                          'file in it, e.g. configs/faster_rcnn_resnest50_fpn.py')
    if not path.is_file():
        raise FileNotFoundError(
            f'config file {str(path)!r} does not exist; pass the path of a config file, '
            'e.g. configs/faster_rcnn_resnest50_fpn.py')
    try:
        cfg = Config.fromfile(str(path))
    except SyntaxError as error:
        # mmengine re-raises the parser's error with the file name: take the parser's place
        cause = error.__context__ if isinstance(error.__context__, SyntaxError) else error
        where = f'line {cause.lineno}: ' if cause.lineno else ''
        raise ConfigError(f'config file {str(path)!r} is not valid Python ({where}'
                          f'{cause.msg}); fix it or pass another config') from None
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def codebase_of(cfg: Config) -> str:
    """'mmdet' or 'mmseg', from the config's ``default_scope``."""
    scope = cfg.get('default_scope')
    if scope not in CODEBASES:
        raise ValueError(
            f'default_scope={scope!r} in {cfg.filename}; allowed: {", ".join(CODEBASES)} '
            "(inherit an mmdet:: or mmseg:: base config, or set default_scope)")
    return scope


def _datasets(dataset: dict) -> list[dict]:
    """The leaf dataset configs under wrappers (RepeatDataset, ConcatDataset, ...)."""
    if 'datasets' in dataset:
        return [leaf for child in dataset['datasets'] for leaf in _datasets(child)]
    if isinstance(dataset.get('dataset'), dict):
        return _datasets(dataset['dataset'])
    return [dataset]


# what each data_prefix entry of the mmdet / mmseg datasets holds
PREFIX_KINDS = {'img': 'image', 'img_path': 'image', 'seg': 'annotation',
                'seg_map_path': 'annotation'}


def _prefix_folder(key: str) -> str:
    """'image folder (data_prefix.img_path)', ... for the error message."""
    kind = PREFIX_KINDS.get(key)
    return f'{kind} folder (data_prefix.{key})' if kind else f'data_prefix.{key} folder'


def _missing_paths(dataset: dict) -> list[tuple[str, str]]:
    """(what, path) for each path named by a dataset config that does not exist."""
    root = dataset.get('data_root') or ''
    missing = []
    if root and not osp.isdir(root):
        return [('data_root', root)]
    ann_file = dataset.get('ann_file') or ''
    if ann_file:
        path = osp.join(root, ann_file)
        if not osp.isfile(path):
            missing.append(('annotation file', path))
    for key, prefix in (dataset.get('data_prefix') or {}).items():
        path = osp.join(root, prefix)
        if prefix and not osp.isdir(path):
            missing.append((_prefix_folder(key), path))
    return missing


def check_dataset_paths(cfg: Config, mode: str) -> None:
    """Stop before any worker starts when a dataset the run needs is not on disk.

    Args:
        cfg: the run's config.
        mode: 'train' (checks train and val datasets) or 'test' (the test dataset).

    Raises:
        DatasetNotFoundError: naming the missing path and how to point ``data_root`` elsewhere.
    """
    for loader in DATALOADERS[mode]:
        dataset = (cfg.get(loader) or {}).get('dataset')
        if loader == 'val_dataloader' and not cfg.get('val_cfg'):
            continue
        if not dataset:
            continue
        for leaf in _datasets(dataset):
            for what, path in _missing_paths(leaf):
                raise DatasetNotFoundError(
                    f'{loader}.dataset: {what} {path!r} does not exist. Put the dataset there '
                    f'or set its root, e.g. --cfg-options {loader}.dataset.data_root=/path/to/'
                    f'dataset/ (data_root is {leaf.get("data_root")!r} in {cfg.filename}).')


# ----------------------------------------------------------------------------- bad configs

class ConfigError(ValueError):
    """A config entry or option the run cannot use; one line naming it, its value and what
    is allowed."""


def _invalid(option: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f'{option}={value!r} is invalid; {allowed}')


def _lookup(cfg: Config, option: str) -> tuple[bool, Any]:
    """(present, value) of a dotted config entry such as ``train_cfg.max_iters``."""
    node: Any = cfg
    for key in option.split('.'):
        if not isinstance(node, (Mapping, Config)) or key not in node:
            return False, None
        node = node[key]
    return True, node


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


LOG_LEVELS = ('DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL')
# entry -> (test, what is allowed); an absent entry, or None where noted, is left to defaults
_INT_AT_LEAST_1 = (lambda v: _is_int(v) and v >= 1, 'expected an int >= 1')
TRAIN_OPTIONS: dict[str, tuple[Callable[[Any], bool], str]] = {
    'train_cfg.max_iters': _INT_AT_LEAST_1,
    'train_cfg.max_epochs': _INT_AT_LEAST_1,
    'train_cfg.val_interval': _INT_AT_LEAST_1,
    'train_cfg.val_begin': (lambda v: _is_int(v) and v >= 0, 'expected an int >= 0'),
    'train_dataloader.batch_size': _INT_AT_LEAST_1,
    'train_dataloader.num_workers': (lambda v: _is_int(v) and v >= 0, 'expected an int >= 0'),
    'train_dataloader.persistent_workers': (lambda v: isinstance(v, bool),
                                            'expected True or False'),
    'val_dataloader.batch_size': _INT_AT_LEAST_1,
    'default_hooks.checkpoint.interval': (
        lambda v: _is_int(v) and (v >= 1 or v == -1), 'expected an int >= 1, or -1 (never)'),
    'default_hooks.checkpoint.max_keep_ckpts': (
        _is_int, 'expected an int (the number of checkpoints kept; <= 0 keeps all)'),
    'default_hooks.checkpoint.by_epoch': (lambda v: isinstance(v, bool),
                                          'expected True or False'),
    'default_hooks.logger.interval': _INT_AT_LEAST_1,
    'randomness.seed': (lambda v: v is None or (_is_int(v) and 0 <= v < 2**32),
                        'expected None or an int in [0, 2**32)'),
    'randomness.deterministic': (lambda v: isinstance(v, bool), 'expected True or False'),
    'optim_wrapper.optimizer.lr': (
        lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < float('inf'),
        'expected a number >= 0'),
    'optim_wrapper.accumulative_counts': _INT_AT_LEAST_1,
    'auto_scale_lr.base_batch_size': _INT_AT_LEAST_1,
    'log_level': (lambda v: v in LOG_LEVELS, f'allowed: {", ".join(LOG_LEVELS)}'),
    'allow_shared_work_dir': (lambda v: isinstance(v, bool), 'expected True or False'),
}


def check_train_options(cfg: Config) -> None:
    """Refuse the entries of a training config that the Runner would fail on deep inside
    (a string for a number, an interval of 0, a negative batch size, ...).

    Raises:
        ConfigError: naming the entry, its value and what is allowed.
    """
    for option, (valid, allowed) in TRAIN_OPTIONS.items():
        present, value = _lookup(cfg, option)
        if present and not valid(value):
            raise _invalid(option, value, allowed)
    loader = cfg.get('train_dataloader') or {}
    if loader.get('persistent_workers') and not loader.get('num_workers'):
        raise ConfigError(
            f'train_dataloader.persistent_workers=True is invalid with num_workers='
            f'{loader.get("num_workers", 0)!r}; persistent workers need num_workers >= 1')
    work_dir = cfg.get('work_dir')
    if not isinstance(work_dir, (str, os.PathLike)) or not str(work_dir):
        raise _invalid('work_dir', work_dir, 'expected a folder path')
    load_from = cfg.get('load_from')
    if load_from and not cfg.get('resume'):
        check_checkpoint_path('load_from', load_from)


def check_checkpoint_path(option: str, path: Any) -> None:
    """A checkpoint named by the user is an existing file (not a folder, not missing).

    Raises:
        ConfigError: a folder or a wrong type. FileNotFoundError: no such file.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise _invalid(option, path, 'expected the path of a checkpoint file')
    if osp.isdir(path):
        raise ConfigError(f'{option} {str(path)!r} is a folder, not a checkpoint file; pass '
                          'the .pth file in it (e.g. the one its last_checkpoint names)')
    if not osp.isfile(path):
        raise FileNotFoundError(f'{option} {str(path)!r} does not exist')


# mmengine's registry raises KeyError('X is not in the mmseg::model registry. Please check ...')
_NOT_REGISTERED = re.compile(r'^(\S+ is not in the \S+ registry)\. .*$', re.S)


def _registry_class(type_name: Any, scope: str) -> type | None:
    from mmengine.registry import MODELS, DefaultScope
    if not isinstance(type_name, str):
        return type_name if isinstance(type_name, type) else None
    with DefaultScope.overwrite_default_scope(scope), \
            MODELS.switch_scope_and_registry(scope) as registry:
        return registry.get(type_name)


def check_backbone_keys(cfg: Config) -> None:
    """Refuse ``model.backbone`` entries that its class does not take, listing those it does.

    Raises:
        ConfigError: ``model.backbone.<key>`` unknown, or ``model.backbone.type`` unknown.
    """
    backbone = (cfg.get('model') or {}).get('backbone')
    if not isinstance(backbone, Mapping) or 'type' not in backbone:
        return
    cls = _registry_class(backbone['type'], cfg.get('default_scope'))
    if cls is None:
        raise ConfigError(f'model.backbone.type={backbone["type"]!r} is not a registered '
                          "backbone; this package's is 'resnest_mm.ResNeSt'")
    parameters = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    allowed = [name for name in parameters if name != 'self']
    unknown = [key for key in backbone if key != 'type' and key not in parameters]
    if unknown:
        key = unknown[0]
        raise ConfigError(
            f'model.backbone.{key}={backbone[key]!r} is not an option of {cls.__name__}; '
            f'allowed: {", ".join(allowed)}')


def _pretrained_files(node: Any, where: str = 'model') -> list[tuple[str, Any]]:
    """(entry, checkpoint) of every ``init_cfg`` ``Pretrained`` entry under ``node``."""
    found = []
    if isinstance(node, Mapping):
        for key, value in node.items():
            here = f'{where}.{key}'
            if key == 'init_cfg':
                for entry in value if isinstance(value, (list, tuple)) else [value]:
                    if isinstance(entry, Mapping) and entry.get('type') == 'Pretrained':
                        found.append((f'{here}.checkpoint', entry.get('checkpoint')))
            else:
                found += _pretrained_files(value, here)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            found += _pretrained_files(value, f'{where}.{i}')
    return found


def check_pretrained_path(option: str, path: Any) -> None:
    """A local pretrained file named by ``init_cfg`` exists and is a file (names and URLs are
    resolved, and downloaded if need be, when the weights are initialised).

    Raises:
        ConfigError: a folder. FileNotFoundError: a local path that does not exist.
    """
    from ..pretrained.files import HF_HUB_SCHEME, checkpoint_url, known_names
    if not isinstance(path, (str, os.PathLike)) or str(path).startswith(HF_HUB_SCHEME):
        return  # the backbone's own check names the type; hub names are resolved at init
    if osp.isdir(path):
        raise ConfigError(f'{option} {str(path)!r} is a folder, not a checkpoint file')
    if '://' not in str(path) and checkpoint_url(str(path)) is None and not osp.isfile(path):
        raise FileNotFoundError(
            f'{option} {str(path)!r} does not exist; allowed: a weights file, an http(s):// '
            f'URL or one of {known_names()}')


def _one_line(error: BaseException) -> str:
    if isinstance(error, KeyError) and error.args:
        text = str(error.args[0])
        match = _NOT_REGISTERED.match(text)
        return match.group(1) if match else text
    text = str(error) or type(error).__name__
    return ' '.join(text.split())


def check_model(cfg: Config):
    """Build and initialise ``cfg.model`` as the Runner will, before anything is written.

    Catches in one line what would otherwise stop the Runner with a traceback after it made
    its log folder: unknown backbone keys, wrong types and values (the backbone's own checks),
    a missing or broken pretrained file. Returns the initialised model (for the resume check).

    Raises:
        ConfigError: the model config is invalid. FileNotFoundError, RuntimeError: a
            pretrained file is missing or cannot be read (resnest_mm.pretrained's errors).
    """
    from mmengine.logging import MMLogger
    from mmengine.registry import MODELS, DefaultScope
    check_backbone_keys(cfg)
    for option, path in _pretrained_files(cfg.get('model')):
        check_pretrained_path(option, path)
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # the Runner logs the initialisation again, to its log
    try:
        with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
            try:
                model = MODELS.build(cfg.model)
            except (TypeError, ValueError, KeyError, AssertionError, AttributeError) as error:
                text = _one_line(error)
                where = 'model.backbone' if text.startswith('ResNeSt:') else 'model'
                raise ConfigError(f'{where}: {text}') from None
            try:
                model.init_weights()
            except (TypeError, ValueError) as error:
                raise ConfigError(f'model init_cfg: {_one_line(error)}') from None
    finally:
        logger.setLevel(level)
    return model
