"""Presets and shapes: depths 14-269, radix 1/2/4, groups > 1 and avd_first, against published
parameter counts, MMDetection's ResNeSt and the authors' own ablation models
(``resnest==0.0.5``)."""

from __future__ import annotations

import importlib

import pytest
import torch
from helpers import max_abs_diff, official_stage_outputs, randomize_

from resnest_mm import ResNeSt

ablation = importlib.import_module('resnest.torch.ablation')
MMDET_RESNEST = importlib.import_module('mmdet.models.backbones').ResNeSt

# ImageNet classifier on the 2048-d pooled features, as counted in the published figures.
FC_PARAMS = 2048 * 1000 + 1000

# Published parameter counts (millions, with the classifier): timm's model cards
# (resnest14d, resnest26d, resnest50d_1s4x24d) and the task's figure for resnest50d_4s2x40d,
# which the authors' package reproduces (30,417,592).
PUBLISHED_M = {
    'resnest14d': (dict(depth=14), 10.6),
    'resnest26d': (dict(depth=26), 17.1),
    'resnest50d_4s2x40d': (dict(depth=50, radix=4, groups=2, base_width=40, avd_first=True),
                           30.4),
    'resnest50d_1s4x24d': (dict(depth=50, radix=1, groups=4, base_width=24, avd_first=True),
                           25.7),
}
ABLATION = {
    'resnest50_fast_4s2x40d': PUBLISHED_M['resnest50d_4s2x40d'][0],
    'resnest50_fast_1s4x24d': PUBLISHED_M['resnest50d_1s4x24d'][0],
}


def num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize('name', PUBLISHED_M)
def test_parameter_count_matches_published(name):
    kwargs, millions = PUBLISHED_M[name]
    total = num_params(ResNeSt(stem_channels=64, **kwargs)) + FC_PARAMS
    assert round(total / 1e6, 1) == millions


def official_to_ours(state_dict: dict) -> dict:
    """Official deep stem ``conv1.{0,1,3,4,6}`` + ``bn1`` -> ``stem.{0,1,3,4,6,7}``."""
    renamed = {}
    for key, value in state_dict.items():
        if key.startswith('fc.'):
            continue
        if key.startswith('conv1.'):
            key = 'stem.' + key[len('conv1.'):]
        elif key.startswith('bn1.'):
            key = 'stem.7.' + key[len('bn1.'):]
        renamed[key] = value
    return renamed



@pytest.mark.parametrize('name', ABLATION)
def test_ablation_models_equal_official(name):
    official = randomize_(getattr(ablation, name)()).eval()
    ours = ResNeSt(stem_channels=64, **ABLATION[name]).eval()
    ours.load_state_dict(official_to_ours(official.state_dict()), strict=True)
    assert num_params(ours) + FC_PARAMS == num_params(official)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert max_abs_diff(ours(x), official_stage_outputs(official, x)) <= 1e-5


@pytest.mark.parametrize('radix', [1, 2, 4])
@pytest.mark.parametrize('groups', [1, 2])
def test_radix_and_groups_shapes(radix, groups):
    model = ResNeSt(depth=14, stem_channels=32, base_channels=16, radix=radix, groups=groups,
                    base_width=32).eval()
    attention = model.layer1[0].conv2
    width = 16 if groups == 1 else 16 * 32 // 16 * groups  # planes * base_width / base_channels
    assert attention.conv.out_channels == width * radix
    assert attention.conv.groups == groups * radix
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 48))
    assert [tuple(o.shape) for o in outs] == [
        (1, 64, 16, 12), (1, 128, 8, 6), (1, 256, 4, 3), (1, 512, 2, 2)]


# The authors' ImageNet release (../shared/reference/RESULTS.md): blocks per stage, official
# stem width (stem_channels is twice it) and parameters in millions with the classifier.
RELEASED = {
    50: ((3, 4, 6, 3), 32, 27.48),
    101: ((3, 4, 23, 3), 64, 48.28),
    200: ((3, 24, 36, 3), 64, 70.20),
    269: ((3, 30, 48, 8), 64, 110.93),
}


def stage_blocks(model: torch.nn.Module) -> tuple[int, ...]:
    return tuple(len(getattr(model, f'layer{i}')) for i in range(1, 5))


@pytest.mark.parametrize('depth', sorted(RELEASED))
def test_released_depths_have_the_published_blocks_and_parameters(depth):
    blocks, stem_width, millions = RELEASED[depth]
    with torch.device('meta'):  # shapes only: S-269 would take seconds to initialise
        model = ResNeSt(depth=depth, stem_channels=2 * stem_width)
    assert stage_blocks(model) == blocks
    assert round((num_params(model) + FC_PARAMS) / 1e6, 2) == millions



@pytest.mark.parametrize('depth', sorted(MMDET_RESNEST.arch_settings))
def test_depths_build_mmdets_resnest(depth):
    """Every depth MMDetection's ResNeSt has (152 included, which no release has) builds the
    same blocks and tensors; 14 and 26 are checked against timm's counts above."""
    assert depth in ResNeSt.arch_settings
    kwargs = dict(depth=depth, stem_channels=32, base_channels=8)
    with torch.device('meta'):
        ours, theirs = ResNeSt(**kwargs), MMDET_RESNEST(**kwargs)
    assert stage_blocks(ours) == stage_blocks(theirs)
    assert ({k: v.shape for k, v in ours.state_dict().items()}
            == {k: v.shape for k, v in theirs.state_dict().items()})
