"""Our configs are MMDetection's / MMSegmentation's ResNeSt recipes, field by field, and build.

Each config of ``configs/`` is resolved with its ``mmdet::``/``mmseg::`` bases and compared with
the official ResNeSt config it mirrors (tests/zoo.py lists the 16 pairs): after removing the
backbone's ``type``, ``custom_imports`` and the pretrained checkpoint (the only fields allowed to
differ), the two dictionaries are equal. The configs without an mm counterpart (DeepLabV3
S-50/200/269, Cascade R-CNN S-200) differ from our config of the same recipe in depth, stem width
and checkpoint only. Every config builds; its model has the ``state_dict`` keys and shapes of
mm's own model of the recipe (for a variant: its base's mm config at the variant's depth; mm has
no ResNeSt-269), so the released mm checkpoints load into them.
"""

from __future__ import annotations

import copy
import importlib
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from zoo import (
    ALL,
    BLOCKS,
    CONFIGS,
    MM_COUNTERPARTS,
    MM_DEPTHS,
    VARIANTS,
    build_model,
    depth_of,
    load_mm,
    load_ours,
    mm_reference,
)

from resnest_mm import ResNeSt

CUSTOM_IMPORTS = dict(imports=['resnest_mm'], allow_failed_imports=False)


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


@pytest.mark.parametrize('name', MM_COUNTERPARTS)
def test_config_equals_the_mm_resnest_config_but_backbone_type_and_imports(name):
    ours, ours_removed = without_allowed_differences(load_ours(name))
    theirs, theirs_removed = without_allowed_differences(load_mm(MM_COUNTERPARTS[name]))
    assert ours_removed['custom_imports'] == CUSTOM_IMPORTS
    assert ours_removed['type'] == 'resnest_mm.ResNeSt'
    assert theirs_removed['type'] == 'ResNeSt'
    # the released mm checkpoints keep their names: same ImageNet weights as the mm recipe
    assert ours_removed['checkpoint'] == theirs_removed['checkpoint']
    assert_same_dict(ours, theirs)


@pytest.mark.parametrize('name', VARIANTS)
def test_variant_differs_from_its_base_in_depth_stem_and_checkpoint_only(name):
    variant = VARIANTS[name]
    base = load_ours(variant.base).to_dict()
    ours = load_ours(name).to_dict()
    base_backbone, backbone = base['model']['backbone'], ours['model']['backbone']
    assert (backbone['depth'], backbone['stem_channels']) == (variant.depth, variant.stem_channels)
    assert backbone['init_cfg'] == dict(type='Pretrained', checkpoint=variant.checkpoint)
    assert base_backbone['depth'] != variant.depth
    assert base_backbone['init_cfg'] != backbone['init_cfg']
    expected = copy.deepcopy(base)
    expected['model']['backbone'].update(
        depth=variant.depth, stem_channels=variant.stem_channels, init_cfg=backbone['init_cfg'])
    assert_same_dict(ours, expected)


def test_every_config_file_is_covered():
    shipped = {path.stem for path in CONFIGS.glob('*.py')}
    assert shipped == set(ALL)
    assert len(MM_COUNTERPARTS) == 16  # every ResNeSt config of mmdet 3.3 and mmseg 1.2


def test_every_mm_resnest_config_has_a_counterpart():
    """The 8 + 8 ResNeSt configs the installed mmdet and mmseg ship are all mirrored."""
    shipped = set()
    for package in ('mmdet', 'mmseg'):
        root = Path(importlib.import_module(package).__file__).parent / '.mim' / 'configs'
        shipped |= {f'{package}::resnest/{path.name}'
                    for path in (root / 'resnest').glob('*.py')}
    assert shipped == set(MM_COUNTERPARTS.values())


def build_structure(cfg) -> torch.nn.Module:
    """The model of ``cfg`` on the meta device: modules, parameter names and shapes, without
    the cost of allocating and initialising S-101/200/269 weights."""
    with torch.device('meta'):
        return build_model(cfg)


@pytest.mark.parametrize('name', ALL)
def test_config_builds_its_model_with_our_backbone(name):
    cfg = load_ours(name)
    model = build_structure(cfg)
    depth, stem_channels = depth_of(name)
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


# every config but S-269: mm's ResNeSt stops at depth 200
WITH_MM_MODEL = [name for name in ALL if depth_of(name)[0] in MM_DEPTHS]


@pytest.mark.parametrize('name', WITH_MM_MODEL)
def test_released_mm_checkpoints_fit_our_model(name):
    """Same state_dict keys and shapes as mm's model of the recipe: its zoo checkpoint loads."""
    ours = build_structure(load_ours(name)).state_dict()
    reference = mm_reference(name)
    assert reference.model.backbone.depth == depth_of(name)[0]
    theirs = build_structure(reference).state_dict()
    assert sorted(set(theirs) - set(ours)) == []
    assert sorted(set(ours) - set(theirs)) == []
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
