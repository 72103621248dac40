"""Our configs are MMDetection's / MMSegmentation's ResNeSt recipes, field by field, and build.

Each config of ``configs/`` is resolved with its ``mmdet::``/``mmseg::`` bases and compared with
the official ResNeSt config it mirrors: after removing the backbone's ``type``, ``custom_imports``
and the pretrained checkpoint (the only fields allowed to differ), the two dictionaries are equal.
The DeepLabV3 S-50/200/269 configs, which have no mm counterpart, differ from our S-101 one in
depth, stem width and checkpoint only.
"""

from __future__ import annotations

import copy
import functools
import importlib
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.registry import DefaultScope

from resnest_mm import ResNeSt

mmdet_registry = importlib.import_module('mmdet.registry')
mmseg_registry = importlib.import_module('mmseg.registry')

CONFIGS = Path(__file__).resolve().parents[1] / 'configs'
CUSTOM_IMPORTS = dict(imports=['resnest_mm'], allow_failed_imports=False)

# our config -> the MMDetection / MMSegmentation config it mirrors
MIRRORED = {
    'faster_rcnn_resnest50_fpn':
        'mmdet::resnest/faster-rcnn_s50_fpn_syncbn-backbone+head_ms-range-1x_coco.py',
    'faster_rcnn_resnest101_fpn':
        'mmdet::resnest/faster-rcnn_s101_fpn_syncbn-backbone+head_ms-range-1x_coco.py',
    'cascade_mask_rcnn_resnest50_fpn':
        'mmdet::resnest/cascade-mask-rcnn_s50_fpn_syncbn-backbone+head_ms-1x_coco.py',
    'cascade_mask_rcnn_resnest101_fpn':
        'mmdet::resnest/cascade-mask-rcnn_s101_fpn_syncbn-backbone+head_ms-1x_coco.py',
    'deeplabv3_resnest101_d8_ade20k':
        'mmseg::resnest/resnest_s101-d8_deeplabv3_4xb4-160k_ade20k-512x512.py',
}
# DeepLabV3 variants without an mm config: (depth, stem_channels, ImageNet checkpoint)
DEEPLAB_VARIANTS = {
    'deeplabv3_resnest50_d8_ade20k': (50, 64, 'open-mmlab://resnest50'),
    'deeplabv3_resnest200_d8_ade20k': (200, 128, 'open-mmlab://resnest200'),
    'deeplabv3_resnest269_d8_ade20k': (269, 128, 'resnest269'),
}
# (depth, stem_channels) of every config, and the blocks per stage that depth must give
DEPTHS = {
    'faster_rcnn_resnest50_fpn': (50, 64),
    'faster_rcnn_resnest101_fpn': (101, 128),
    'cascade_mask_rcnn_resnest50_fpn': (50, 64),
    'cascade_mask_rcnn_resnest101_fpn': (101, 128),
    'deeplabv3_resnest101_d8_ade20k': (101, 128),
    **{name: spec[:2] for name, spec in DEEPLAB_VARIANTS.items()},
}
BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 200: (3, 24, 36, 3), 269: (3, 30, 48, 8)}


@functools.cache
def _resolve(name: str) -> Config:
    return Config.fromfile(str(CONFIGS / f'{name}.py'))


def load_ours(name: str) -> Config:
    """Resolve ``configs/<name>.py`` with its package bases (this also imports resnest_mm)."""
    return copy.deepcopy(_resolve(name))


def pop_checkpoint(cfg: dict) -> str:
    """Remove and return the backbone's ImageNet checkpoint from a resolved model config.

    MMDetection names it in ``backbone.init_cfg``, MMSegmentation in the segmentor's
    ``pretrained``; ours always in ``backbone.init_cfg`` (leaving ``pretrained=None``).
    """
    model, backbone = cfg['model'], cfg['model']['backbone']
    names = []
    if 'pretrained' in model:
        pretrained = model.pop('pretrained')
        if pretrained is not None:
            names.append(pretrained)
    init_cfg = backbone.get('init_cfg')
    if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained':
        names.append(backbone.pop('init_cfg')['checkpoint'])
    assert len(names) == 1, f'expected one pretrained checkpoint, found {names}'
    return names[0]


def pop_scope_annotations(cfg, scope: str):
    """Remove the ``_scope_`` keys mmengine adds to dicts inherited through ``mmdet::``/``mmseg::``.

    They only say which package's registry builds the dict; each must name ``scope``, the
    config's default scope, so that removing them changes nothing.
    """
    if isinstance(cfg, dict):
        if '_scope_' in cfg:
            assert cfg.pop('_scope_') == scope
        for value in cfg.values():
            pop_scope_annotations(value, scope)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            pop_scope_annotations(value, scope)


def without_allowed_differences(cfg: Config) -> tuple[dict, dict]:
    """The config as a dict minus backbone type, custom_imports and checkpoint; and those."""
    rest = copy.deepcopy(cfg.to_dict())
    pop_scope_annotations(rest, rest['default_scope'])
    removed = dict(
        custom_imports=rest.pop('custom_imports', None),
        type=rest['model']['backbone'].pop('type'),
        checkpoint=pop_checkpoint(rest))
    return rest, removed


def assert_same_dict(actual, expected, path='cfg'):
    """Equality of nested config dicts, failing with the path of the first difference."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        assert sorted(actual) == sorted(expected), f'{path}: keys differ'
        for key in expected:
            assert_same_dict(actual[key], expected[key], f'{path}.{key}')
    elif isinstance(expected, (list, tuple)) and isinstance(actual, (list, tuple)):
        assert len(actual) == len(expected), f'{path}: {len(actual)} items vs {len(expected)}'
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same_dict(a, e, f'{path}[{i}]')
    else:
        assert actual == expected, f'{path}: {actual!r} vs {expected!r}'
    assert actual == expected, path


@pytest.mark.parametrize('name', MIRRORED)
def test_config_equals_the_mm_resnest_config_but_backbone_type_and_imports(name):
    ours, ours_removed = without_allowed_differences(load_ours(name))
    theirs, theirs_removed = without_allowed_differences(get_config(MIRRORED[name]))
    assert ours_removed['custom_imports'] == CUSTOM_IMPORTS
    assert ours_removed['type'] == 'resnest_mm.ResNeSt'
    assert theirs_removed['type'] == 'ResNeSt'
    # the released mm checkpoints keep their names: same ImageNet weights as the mm recipe
    assert ours_removed['checkpoint'] == theirs_removed['checkpoint']
    assert_same_dict(ours, theirs)


@pytest.mark.parametrize('name', DEEPLAB_VARIANTS)
def test_deeplab_variant_differs_from_s101_in_depth_stem_and_checkpoint_only(name):
    depth, stem_channels, checkpoint = DEEPLAB_VARIANTS[name]
    s101 = load_ours('deeplabv3_resnest101_d8_ade20k').to_dict()
    variant = load_ours(name).to_dict()
    s101_backbone, backbone = s101['model']['backbone'], variant['model']['backbone']
    assert (backbone['depth'], backbone['stem_channels']) == (depth, stem_channels)
    assert backbone['init_cfg'] == dict(type='Pretrained', checkpoint=checkpoint)
    assert (s101_backbone['depth'], s101_backbone['stem_channels']) != (depth, stem_channels)
    expected = copy.deepcopy(s101)
    expected['model']['backbone'].update(
        depth=depth, stem_channels=stem_channels, init_cfg=backbone['init_cfg'])
    assert_same_dict(variant, expected)


def test_every_config_file_is_covered():
    shipped = {path.stem for path in CONFIGS.glob('*.py')}
    assert shipped == set(DEPTHS)


def build_model(cfg: Config) -> torch.nn.Module:
    """Build ``cfg.model`` in its default scope without loading the pretrained weights."""
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.pop('pretrained', None)
    model_cfg.backbone.init_cfg = None
    registry = mmdet_registry if cfg.default_scope == 'mmdet' else mmseg_registry
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return registry.MODELS.build(model_cfg)


@pytest.mark.parametrize('name', DEPTHS)
def test_config_builds_its_model_with_our_backbone(name):
    cfg = load_ours(name)
    model = build_model(cfg)
    depth, stem_channels = DEPTHS[name]
    backbone = model.backbone
    assert type(backbone) is ResNeSt
    assert backbone.depth == depth
    assert backbone.stem[6].out_channels == stem_channels
    assert [len(getattr(backbone, layer)) for layer in backbone.res_layers] == list(BLOCKS[depth])
    assert isinstance(backbone.stem[1], torch.nn.SyncBatchNorm)  # the recipe's SyncBN
    # detection freezes the stem and stage 1, segmentation trains everything
    frozen_stages = 1 if cfg.default_scope == 'mmdet' else -1
    assert backbone.frozen_stages == frozen_stages
    trainable = [backbone.stem[0].weight.requires_grad] + [
        getattr(backbone, layer)[0].conv1.weight.requires_grad for layer in backbone.res_layers]
    assert trainable == [i > frozen_stages for i in range(5)]


# test_detector_parity.py loads the other mirrored configs' mm state_dicts strictly
@pytest.mark.parametrize('name', ['faster_rcnn_resnest101_fpn', 'cascade_mask_rcnn_resnest101_fpn'])
def test_released_mm_checkpoints_fit_our_model(name):
    """Same state_dict keys and shapes as the mm config's model: its zoo checkpoint loads."""
    ours = build_model(load_ours(name)).state_dict()
    theirs = build_model(get_config(MIRRORED[name])).state_dict()
    assert sorted(set(theirs) - set(ours)) == []
    assert sorted(set(ours) - set(theirs)) == []
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
