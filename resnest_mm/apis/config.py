"""Config loading for the tools: clear errors for a wrong config path or a missing dataset."""

from __future__ import annotations

import os.path as osp
from pathlib import Path

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
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f'config file {str(path)!r} does not exist; pass the path of a config file, '
            'e.g. configs/faster_rcnn_resnest50_fpn.py')
    cfg = Config.fromfile(str(path))
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
