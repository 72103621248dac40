"""Loading pretrained weights into a backbone strictly, from any known layout."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import WeightMismatchError
from .files import resolve_checkpoint
from .layouts import dcn_offset, to_openmmlab
from .reading import load_checkpoint_file
from .reports import LoadReport, log_report, mismatch_message

PRETRAINED_KEYS = ('type', 'checkpoint', 'prefix', 'map_location', 'strict')


def compare_state_dicts(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
                        ) -> tuple[list[str], list[str], list[str], list]:
    """Matching, missing, unexpected and shape-mismatched keys of ``source`` against ``target``.

    ``num_batches_tracked`` counts neither as missing nor as unexpected, and the offset
    convolutions of deformable (DCN) layers, which ImageNet weights never have, not as missing
    (mmcv builds them zero-initialised: the DCN starts as the plain convolution).
    """
    def optional(key: str) -> bool:
        return key.endswith('num_batches_tracked')

    matched, mismatched = [], []
    for key, value in source.items():
        if key in target:
            if tuple(value.shape) == tuple(target[key].shape):
                matched.append(key)
            else:
                mismatched.append((key, tuple(value.shape), tuple(target[key].shape)))
    missing = [k for k in target if k not in source and not optional(k) and not dcn_offset(k)]
    unexpected = [k for k in source if k not in target and not optional(k)]
    return matched, missing, unexpected, mismatched


def load_pretrained(
    model: nn.Module,
    checkpoint: str | os.PathLike,
    prefix: str | None = None,
    strict: bool = True,
    map_location: Any = 'cpu',
    logger: Any = 'current',
) -> LoadReport:
    """Load ResNeSt backbone weights of any known layout into ``model``, loudly.

    Args:
        model: A backbone with OpenMMLab keys (:class:`resnest_mm.ResNeSt`).
        checkpoint: Path, URL or short name (see :func:`resolve_checkpoint`).
        prefix: Backbone key prefix in the file. Default: detected.
        strict: Raise :class:`WeightMismatchError` when a backbone tensor is missing,
            unexpected or of another shape. With False, load what matches and log the rest.
        map_location: Passed to ``torch.load``.
        logger: mmengine logger (name) for the summary.

    Returns:
        A :class:`LoadReport`.
    """
    if not isinstance(strict, bool):
        raise TypeError(f'strict={strict!r} is invalid; expected True or False.')
    path = resolve_checkpoint(checkpoint)
    weights = to_openmmlab(load_checkpoint_file(path, map_location), prefix, source=str(path))
    target = model.state_dict()
    matched, missing, unexpected, mismatched = compare_state_dicts(weights.state_dict, target)
    report = LoadReport(path, weights, matched, missing, unexpected, mismatched)
    if strict and not report.complete:
        raise WeightMismatchError(mismatch_message(report, target))
    model.load_state_dict({k: weights.state_dict[k] for k in matched}, strict=False)
    log_report(report, target, logger)
    return report


def split_pretrained_cfg(init_cfg: Any) -> tuple[dict | None, list[dict]]:
    """Split an mmengine ``init_cfg`` into the ``Pretrained`` entry (as kwargs) and the rest.

    Returns:
        ``(kwargs for load_pretrained or None, the other init configs)``.
    """
    if init_cfg is None:
        return None, []
    cfgs = [init_cfg] if isinstance(init_cfg, Mapping) else list(init_cfg)
    pretrained = [c for c in cfgs if c.get('type') == 'Pretrained']
    others = [c for c in cfgs if c.get('type') != 'Pretrained']
    if not pretrained:
        return None, others
    if len(pretrained) > 1:
        raise ValueError(f'init_cfg={init_cfg!r} is invalid; give one Pretrained entry.')
    cfg = dict(pretrained[0])
    unknown = sorted(set(cfg) - set(PRETRAINED_KEYS))
    if unknown:
        raise ValueError(
            f"init_cfg=dict(type='Pretrained', ...) has unknown keys {unknown}; allowed: "
            f'{", ".join(PRETRAINED_KEYS)}.')
    if 'checkpoint' not in cfg:
        raise ValueError("init_cfg=dict(type='Pretrained') needs checkpoint=PATH_OR_NAME.")
    cfg.pop('type')
    return cfg, others


OUR_BACKBONE = 'resnest_mm.ResNeSt'


def pretrained_checkpoints(model_cfg: Any) -> list[str]:
    """The ``checkpoint`` of every ``resnest_mm.ResNeSt`` in a model config that loads one
    (``init_cfg=dict(type='Pretrained', ...)`` or the deprecated ``pretrained=``)."""
    found: list[str] = []
    if isinstance(model_cfg, Mapping):
        if model_cfg.get('type') == OUR_BACKBONE:
            pretrained, _ = split_pretrained_cfg(model_cfg.get('init_cfg'))
            if pretrained is not None:
                found.append(pretrained['checkpoint'])
            elif isinstance(model_cfg.get('pretrained'), (str, os.PathLike)):
                found.append(model_cfg['pretrained'])
        for value in model_cfg.values():
            found += pretrained_checkpoints(value)
    elif isinstance(model_cfg, (list, tuple)):
        for value in model_cfg:
            found += pretrained_checkpoints(value)
    return found


def fetch_pretrained_checkpoints(model_cfg: Any) -> list[Path]:
    """Find (download if needed) the pretrained files of a model config before a run starts,
    so that a missing one stops the set-up with its one-line error instead of a traceback from
    the middle of the run.

    Raises:
        CheckpointNotFoundError: a file that is neither there nor downloadable (see
            :func:`resolve_checkpoint`).
    """
    return [resolve_checkpoint(checkpoint) for checkpoint in pretrained_checkpoints(model_cfg)]
