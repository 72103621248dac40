"""Deformable split convolutions: placement, the user's dcn dict left intact, CPU forward and
backward, and parity with MMDetection's ResNeSt for a DCN stage."""

from __future__ import annotations

import copy
import importlib

import pytest
import torch
from helpers import max_abs_diff, randomize_
from torch import nn

from resnest_mm import ResNeSt

ops = importlib.import_module('mmcv.ops')

SMALL = dict(depth=26, stem_channels=32, base_channels=16)
DCN_CLASSES = {'DCN': ops.DeformConv2dPack, 'DCNv2': ops.ModulatedDeformConv2dPack}


def split_convs(model):
    return {name: [block.conv2.conv for block in getattr(model, name)]
            for name in model.res_layers}


@pytest.mark.parametrize('dcn_type', ['DCN', 'DCNv2'])
def test_dcn_in_every_block_of_chosen_stages_and_config_untouched(dcn_type):
    dcn = dict(type=dcn_type, deform_groups=1, fallback_on_stride=False)
    given = copy.deepcopy(dcn)
    model = ResNeSt(dcn=dcn, stage_with_dcn=(False, True, True, True), **SMALL)
    assert dcn == given  # building 8 blocks did not pop 'fallback_on_stride'
    for i, (name, convs) in enumerate(split_convs(model).items()):
        expected = DCN_CLASSES[dcn_type] if i > 0 else nn.Conv2d
        assert all(type(conv) is expected for conv in convs), name
    # mmcv's DCN (v1) rejects maps smaller than its 3x3 kernel: 96 px leaves 3x3 in stage 4.
    size = 96 if dcn_type == 'DCN' else 64
    x = torch.randn(2, 3, size, size)
    outs = model.train()(x)
    sum(o.mean() for o in outs).backward()
    offset = model.layer4[1].conv2.conv.conv_offset
    assert offset.weight.grad is not None


def test_fallback_on_stride_keeps_plain_conv_where_strided():
    dcn = dict(type='DCNv2', deform_groups=1, fallback_on_stride=True)
    model = ResNeSt(dcn=dcn, stage_with_dcn=(True, True, True, True), avg_down_stride=False,
                    **SMALL)
    for i, (name, convs) in enumerate(split_convs(model).items()):
        # The first block of stages 2-4 strides its split conv (no average-pool downsampling).
        expected_first = nn.Conv2d if i > 0 else ops.ModulatedDeformConv2dPack
        assert type(convs[0]) is expected_first, name
        assert type(convs[1]) is ops.ModulatedDeformConv2dPack, name
    assert dcn['fallback_on_stride'] is True


def test_bad_dcn_options_are_named():
    with pytest.raises(ValueError, match="dcn\\['type'\\]='NoSuchConv'"):
        ResNeSt(dcn=dict(type='NoSuchConv'), stage_with_dcn=(False, True, True, True), **SMALL)
    with pytest.raises(TypeError, match='stage_with_dcn'):
        ResNeSt(dcn=dict(type='DCN'), stage_with_dcn='all', **SMALL)


@pytest.mark.parametrize('dcn_type', [pytest.param('DCN', marks=pytest.mark.slow), 'DCNv2'])
def test_dcn_stage_matches_mmdet(dcn_type):
    mmdet_backbones = importlib.import_module('mmdet.models.backbones')
    dcn = dict(type=dcn_type, deform_groups=1, fallback_on_stride=False)
    kwargs = dict(depth=50, stem_channels=32, base_channels=16, norm_eval=False,
                  stage_with_dcn=(False, False, False, True))
    reference = randomize_(mmdet_backbones.ResNeSt(dcn=copy.deepcopy(dcn), **kwargs))
    ours = ResNeSt(dcn=dcn, **kwargs)
    theirs = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == theirs
    # randomize_ leaves the deformable weights alone: give them values as well.
    with torch.no_grad():
        for module in reference.modules():
            if isinstance(module, tuple(DCN_CLASSES.values())):
                module.weight.normal_(0, 0.05)
                module.conv_offset.weight.normal_(0, 0.01)
                module.conv_offset.bias.normal_(0, 0.5)
    ours.load_state_dict(reference.state_dict(), strict=True)
    size = 96 if dcn_type == 'DCN' else 64
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(4))
    for mode in (False, True):
        reference.train(mode)
        ours.train(mode)
        with torch.no_grad():
            assert max_abs_diff(ours(x), reference(x)) <= 1e-5


@pytest.mark.parametrize('dcn_type', ['DCN', 'DCNv2'])
def test_default_init_keeps_offsets_at_zero(dcn_type):
    """The Kaiming init of every Conv2d must not reach the offset predictors of the DCNs."""
    model = ResNeSt(dcn=dict(type=dcn_type, deform_groups=1),
                    stage_with_dcn=(False, True, True, True), **SMALL)
    model.init_weights()
    offsets = [m.conv_offset for m in model.modules() if hasattr(m, 'conv_offset')]
    assert offsets
    assert all(torch.count_nonzero(o.weight) == 0 and torch.count_nonzero(o.bias) == 0
               for o in offsets)
    assert torch.count_nonzero(model.layer2[0].conv2.conv.weight) > 0  # the rest is initialised
