"""Recognising a checkpoint's key layout and extracting its backbone in OpenMMLab keys."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .errors import UnknownLayoutError
from .renaming import key_map

LAYOUTS = {
    'official': 'official ResNeSt / timm (conv1.*, bn1, fc)',
    'openmmlab': 'OpenMMLab backbone (stem.*)',
    'detectron2': 'Detectron2 ResNeSt (stem.conv1_*, res2..res5)',
    'mmpretrain': 'mmpretrain ResNeSt (stem.{0,1,2}.conv/bn)',
}
CLASSIFIER_PREFIXES = ('fc.', 'linear.')


def detect_layout(keys: Iterable[str]) -> str | None:
    """Name of the layout (see ``LAYOUTS``) of backbone keys without prefix, or None."""
    keys = list(keys)
    if any(k.startswith('stem.conv1_') or re.match(r'res[2-5]\.', k) for k in keys):
        return 'detectron2'
    if any(re.match(r'stem\.\d+\.(conv|bn)\.', k) for k in keys):
        return 'mmpretrain'
    if any(k.startswith('stem.') for k in keys):
        return 'openmmlab'
    if any(k.startswith(('conv1.', 'bn1.')) for k in keys):
        return 'official'
    if any(re.match(r'layer[1-4]\.\d+\.', k) for k in keys):
        return 'openmmlab'  # blocks only: their keys are the same in every layout
    return None


def dcn_offset(key: str) -> bool:
    """Whether a key belongs to the offset convolution of an mmcv DCN layer."""
    return '.conv_offset.' in key


@dataclass
class BackboneWeights:
    """Backbone tensors in the OpenMMLab layout, and where they came from.

    Attributes:
        state_dict: ``{key: tensor}`` with OpenMMLab keys (``stem.*``, ``layerX.Y.*``).
        layout: The source layout, a key of ``LAYOUTS``.
        container: ``'bare'``, ``'state_dict'`` or ``'model'``.
        prefix: The prefix stripped from the backbone keys (``''``, ``'backbone.'``, ...).
        dropped: Classifier keys left out (source names).
        ignored: Keys outside the backbone prefix (necks, heads), left out.
    """

    state_dict: dict[str, torch.Tensor]
    layout: str
    container: str = 'bare'
    prefix: str = ''
    dropped: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def describe(self) -> str:
        where = f'{self.container} state dict' if self.container != 'bare' else 'bare state dict'
        prefix = f", prefix '{self.prefix}'" if self.prefix else ''
        return f'{LAYOUTS[self.layout]}; {where}{prefix}'


def unwrap_state_dict(obj: Any, source: str = 'checkpoint') -> tuple[dict, str]:
    """The ``{key: value}`` mapping of a loaded file and its container name.

    Accepts a bare state dict or one under ``state_dict`` (mmengine, mmdet, timm training) or
    ``model`` (Detectron2). A ``module.`` (DataParallel) prefix on every key is removed.
    """
    if not isinstance(obj, Mapping):
        raise TypeError(f'{source}: expected a dict of tensors, got {type(obj).__name__}.')
    container = 'bare'
    for name in ('state_dict', 'model'):
        if isinstance(obj.get(name), Mapping):
            obj, container = obj[name], name
            break
    state_dict = {str(key): torch.from_numpy(value) if isinstance(value, np.ndarray) else value
                  for key, value in obj.items()}
    if state_dict and all(k.startswith('module.') for k in state_dict):
        state_dict = {k[len('module.'):]: v for k, v in state_dict.items()}
    return state_dict, container


def _backbone_prefix(keys: list[str]) -> str:
    for prefix in ('backbone.bottom_up.', 'backbone.'):
        if any(k.startswith(prefix) for k in keys):
            return prefix
    return ''


def to_openmmlab(obj: Any, prefix: str | None = None, source: str = 'checkpoint'
                 ) -> BackboneWeights:
    """Extract the backbone of a loaded checkpoint in any known layout, in OpenMMLab keys.

    Args:
        obj: What :func:`load_checkpoint_file` returned (or a state dict).
        prefix: Backbone key prefix to select and strip. Default: ``backbone.bottom_up.`` or
            ``backbone.`` when such keys exist, else none.
        source: Name of the file, for error messages.

    Raises:
        UnknownLayoutError: the keys match no known layout.
    """
    state_dict, container = unwrap_state_dict(obj, source)
    keys = list(state_dict)
    if prefix is None:
        prefix = _backbone_prefix(keys)
    elif not any(k.startswith(prefix) for k in keys):
        raise UnknownLayoutError(
            f"{source}: no key starts with prefix={prefix!r}; first keys: {keys[:5]}.")
    selected = [k for k in keys if k.startswith(prefix)]
    ignored = [k for k in keys if not k.startswith(prefix)]
    stripped = [k[len(prefix):] for k in selected]
    layout = detect_layout(stripped)
    if layout is None:
        raise UnknownLayoutError(
            f'{source}: keys match no known ResNeSt layout (first keys: {stripped[:5]}); '
            f'supported: {"; ".join(LAYOUTS.values())}, bare or under state_dict/model, '
            "optionally prefixed with 'backbone.' or 'backbone.bottom_up.'.")
    rename = key_map(layout, stripped)
    converted, dropped = {}, []
    for key, short in zip(selected, stripped, strict=True):
        if not isinstance(state_dict[key], torch.Tensor):
            raise TypeError(f'{source}: backbone key {key!r} holds a '
                            f'{type(state_dict[key]).__name__}, not a tensor.')
        if short.startswith(CLASSIFIER_PREFIXES):
            dropped.append(key)
        else:
            converted[rename(short)] = state_dict[key]
    return BackboneWeights(converted, layout, container, prefix, dropped, ignored)
