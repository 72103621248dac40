"""The model zoo as the tests see it: every config of ``configs/`` and the recipe it must equal.

Each config either mirrors an official MMDetection / MMSegmentation ResNeSt config
(:data:`MM_COUNTERPARTS`) or is one of ours with another depth (:data:`VARIANTS`): our config of
the same recipe with depth, stem width and ImageNet checkpoint changed.
"""

from __future__ import annotations

import copy
import functools
import importlib
import re
from pathlib import Path
from typing import NamedTuple

import torch
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.registry import DefaultScope

from resnest_mm.models.arch import STAGE_BLOCKS

CONFIGS = Path(__file__).resolve().parents[1] / 'configs'

_MMDET = 'mmdet::resnest/{}_fpn_syncbn-backbone+head_{}_coco.py'
_MMSEG = 'mmseg::resnest/resnest_s101-d8_{}.py'
# our config -> the MMDetection 3.3 / MMSegmentation 1.2 config it mirrors
MM_COUNTERPARTS = {
    'faster_rcnn_resnest50_fpn': _MMDET.format('faster-rcnn_s50', 'ms-range-1x'),
    'faster_rcnn_resnest101_fpn': _MMDET.format('faster-rcnn_s101', 'ms-range-1x'),
    'mask_rcnn_resnest50_fpn': _MMDET.format('mask-rcnn_s50', 'ms-1x'),
    'mask_rcnn_resnest101_fpn': _MMDET.format('mask-rcnn_s101', 'ms-1x'),
    'cascade_rcnn_resnest50_fpn': _MMDET.format('cascade-rcnn_s50', 'ms-range-1x'),
    'cascade_rcnn_resnest101_fpn': _MMDET.format('cascade-rcnn_s101', 'ms-range-1x'),
    'cascade_mask_rcnn_resnest50_fpn': _MMDET.format('cascade-mask-rcnn_s50', 'ms-1x'),
    'cascade_mask_rcnn_resnest101_fpn': _MMDET.format('cascade-mask-rcnn_s101', 'ms-1x'),
    'fcn_resnest101_d8_ade20k': _MMSEG.format('fcn_4xb4-160k_ade20k-512x512'),
    'pspnet_resnest101_d8_ade20k': _MMSEG.format('pspnet_4xb4-160k_ade20k-512x512'),
    'deeplabv3_resnest101_d8_ade20k': _MMSEG.format('deeplabv3_4xb4-160k_ade20k-512x512'),
    'deeplabv3plus_resnest101_d8_ade20k':
        _MMSEG.format('deeplabv3plus_4xb4-160k_ade20k-512x512'),
    'fcn_resnest101_d8_cityscapes': _MMSEG.format('fcn_4xb2-80k_cityscapes-512x1024'),
    # sic: MMSegmentation's file name lacks the dash before 512x1024
    'pspnet_resnest101_d8_cityscapes': _MMSEG.format('pspnet_4xb2-80k_cityscapes512x1024'),
    'deeplabv3_resnest101_d8_cityscapes': _MMSEG.format('deeplabv3_4xb2-80k_cityscapes-512x1024'),
    'deeplabv3plus_resnest101_d8_cityscapes':
        _MMSEG.format('deeplabv3plus_4xb2-80k_cityscapes-512x1024'),
}


class Variant(NamedTuple):
    base: str  # our config it differs from
    depth: int
    stem_channels: int
    checkpoint: str  # ImageNet weights in backbone.init_cfg


# configs without an mm counterpart: an mm recipe applied to another depth
VARIANTS = {
    'deeplabv3_resnest50_d8_ade20k':
        Variant('deeplabv3_resnest101_d8_ade20k', 50, 64, 'open-mmlab://resnest50'),
    'deeplabv3_resnest200_d8_ade20k':
        Variant('deeplabv3_resnest101_d8_ade20k', 200, 128, 'open-mmlab://resnest200'),
    'deeplabv3_resnest269_d8_ade20k':
        Variant('deeplabv3_resnest101_d8_ade20k', 269, 128, 'resnest269'),
    'cascade_rcnn_resnest200_fpn':
        Variant('cascade_rcnn_resnest101_fpn', 200, 128, 'open-mmlab://resnest200'),
}
ALL = [*MM_COUNTERPARTS, *VARIANTS]
BLOCKS = STAGE_BLOCKS  # blocks per stage of each depth
# depths mm's own ResNeSt builds (269 is not among them)
MM_DEPTHS = (50, 101, 200)


def depth_of(name: str) -> tuple[int, int]:
    """(depth, stem_channels) that a config's file name promises: S-50 has a 64-wide stem."""
    depth = int(re.search(r'resnest(\d+)', name).group(1))
    return depth, 64 if depth == 50 else 128


@functools.cache
def _resolve(name: str) -> Config:
    return Config.fromfile(str(CONFIGS / f'{name}.py'))


def load_ours(name: str) -> Config:
    """Resolve ``configs/<name>.py`` with its package bases (this also imports resnest_mm)."""
    return copy.deepcopy(_resolve(name))


@functools.cache
def _resolve_mm(path: str) -> Config:
    return get_config(path)


def load_mm(path: str) -> Config:
    """Resolve an ``mmdet::``/``mmseg::`` config (cached; each call returns a fresh copy)."""
    return copy.deepcopy(_resolve_mm(path))


def mm_reference(name: str) -> Config:
    """The mm config whose model ``name`` must equal: its counterpart, or for a variant its
    base's counterpart with the variant's depth and stem width (mm's ResNeSt at that depth)."""
    if name in MM_COUNTERPARTS:
        return load_mm(MM_COUNTERPARTS[name])
    variant = VARIANTS[name]
    if variant.depth not in MM_DEPTHS:
        raise ValueError(f'mm builds no ResNeSt-{variant.depth}')
    cfg = mm_reference(variant.base)
    cfg.merge_from_dict({'model.backbone.depth': variant.depth,
                         'model.backbone.stem_channels': variant.stem_channels})
    return cfg


def build_model(cfg: Config) -> torch.nn.Module:
    """Build ``cfg.model`` in its default scope without loading the pretrained weights."""
    registries = {'mmdet': 'mmdet.registry', 'mmseg': 'mmseg.registry'}
    registry = importlib.import_module(registries[cfg.default_scope])
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.pop('pretrained', None)
    model_cfg.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return registry.MODELS.build(model_cfg)
