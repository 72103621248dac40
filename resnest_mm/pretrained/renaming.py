"""Where each published layout's keys are renamed to the OpenMMLab backbone's (and back).

- official ResNeSt / timm: ``conv1.{0,1,3,4,6}`` + ``bn1`` -> ``stem.{0,1,3,4,6,7}``;
- Detectron2 (``resnest/d2/resnest.py``): ``stem.conv1_{1,2,3}`` (+ ``.norm``) -> ``stem.*``,
  ``res2..res5`` -> ``layer1..layer4``, ``conv1.norm``/``conv3.norm`` -> ``bn1``/``bn3``,
  ``shortcut`` (+ ``.norm``) -> ``downsample.1`` (``.2``);
- mmpretrain (``mmpretrain/models/backbones/resnest.py``): a stem of ConvModules
  ``stem.{0,1,2}.{conv,bn}`` -> ``stem.{0,1,3,4,6,7}``; a shortcut without average pool (stride 1,
  mmpretrain adds the pool only when it strides) ``downsample.{0,1}`` -> ``downsample.{1,2}``.

The block keys (``layerX.Y.conv1``, the split attention's ``conv2.*``) are the same everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

import torch


def _rename(key: str, rules: Iterable[tuple[str, str]]) -> str:
    for pattern, replacement in rules:
        key, count = re.subn(pattern, replacement, key)
        if count:
            return key
    return key


OFFICIAL_TO_MM = (
    (r'^conv1\.([01346])\.', r'stem.\1.'),
    (r'^bn1\.', 'stem.7.'),
)
MM_TO_OFFICIAL = (
    (r'^stem\.([01346])\.', r'conv1.\1.'),
    (r'^stem\.7\.', 'bn1.'),
)
D2_STEM_TO_MM = (
    (r'^stem\.conv1_1\.norm\.', 'stem.1.'),
    (r'^stem\.conv1_1\.', 'stem.0.'),
    (r'^stem\.conv1_2\.norm\.', 'stem.4.'),
    (r'^stem\.conv1_2\.', 'stem.3.'),
    (r'^stem\.conv1_3\.norm\.', 'stem.7.'),
    (r'^stem\.conv1_3\.', 'stem.6.'),
)
D2_BLOCK_TO_MM = (
    (r'\.conv1\.norm\.', '.bn1.'),
    (r'\.conv3\.norm\.', '.bn3.'),
    (r'\.shortcut\.norm\.', '.downsample.2.'),
    (r'\.shortcut\.', '.downsample.1.'),
)


def _d2_to_mm(key: str) -> str:
    stage = re.match(r'^res([2-5])\.', key)
    if stage is None:
        return _rename(key, D2_STEM_TO_MM)
    key = f'layer{int(stage.group(1)) - 1}.' + key[stage.end():]
    return _rename(key, D2_BLOCK_TO_MM)


MMPRETRAIN_STEM_TO_MM = (
    (r'^stem\.0\.conv\.', 'stem.0.'),
    (r'^stem\.0\.bn\.', 'stem.1.'),
    (r'^stem\.1\.conv\.', 'stem.3.'),
    (r'^stem\.1\.bn\.', 'stem.4.'),
    (r'^stem\.2\.conv\.', 'stem.6.'),
    (r'^stem\.2\.bn\.', 'stem.7.'),
)
_UNPOOLED_SHORTCUT = re.compile(r'^(layer\d+\.\d+\.downsample\.)([01])\.')


def mmpretrain_to_mm(keys: Iterable[str]) -> Callable[[str], str]:
    """The key map of one mmpretrain state dict (backbone keys without prefix).

    Which shortcuts lack the average pool is read from the keys: a block whose
    ``downsample.0`` holds weights starts its shortcut with the convolution.
    """
    unpooled = {m.group(1) for m in map(_UNPOOLED_SHORTCUT.match, keys)
                if m is not None and m.group(2) == '0'}

    def rename(key: str) -> str:
        match = _UNPOOLED_SHORTCUT.match(key)
        if match is not None and match.group(1) in unpooled:
            return f'{match.group(1)}{int(match.group(2)) + 1}.{key[match.end():]}'
        return _rename(key, MMPRETRAIN_STEM_TO_MM)

    return rename


KEY_TO_MM: dict[str, Callable[[str], str]] = {
    'official': lambda key: _rename(key, OFFICIAL_TO_MM),
    'openmmlab': lambda key: key,
    'detectron2': _d2_to_mm,
}


def key_map(layout: str, keys: Iterable[str]) -> Callable[[str], str]:
    """The function renaming the backbone keys ``keys`` of ``layout`` to OpenMMLab keys."""
    if layout == 'mmpretrain':
        return mmpretrain_to_mm(keys)
    return KEY_TO_MM[layout]


def to_official(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenMMLab backbone keys to the official ResNeSt keys (no classifier)."""
    return {_rename(key, MM_TO_OFFICIAL): value for key, value in state_dict.items()}
