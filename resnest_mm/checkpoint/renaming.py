"""Where each published layout's keys are renamed to the OpenMMLab backbone's (and back).

- official ResNeSt / timm: ``conv1.{0,1,3,4,6}`` + ``bn1`` -> ``stem.{0,1,3,4,6,7}``;
- Detectron2 (``resnest/d2/resnest.py``): ``stem.conv1_{1,2,3}`` (+ ``.norm``) -> ``stem.*``,
  ``res2..res5`` -> ``layer1..layer4``, ``conv1.norm``/``conv3.norm`` -> ``bn1``/``bn3``,
  ``shortcut`` (+ ``.norm``) -> ``downsample.1`` (``.2``).

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


KEY_TO_MM: dict[str, Callable[[str], str]] = {
    'official': lambda key: _rename(key, OFFICIAL_TO_MM),
    'openmmlab': lambda key: key,
    'detectron2': _d2_to_mm,
}


def to_official(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenMMLab backbone keys to the official ResNeSt keys (no classifier)."""
    return {_rename(key, MM_TO_OFFICIAL): value for key, value in state_dict.items()}
