"""Parity with the authors' own ResNeSt (PyPI ``resnest==0.0.5``), the official weight layout.

The official model keeps its own random convolution init (seeded) and gets random norm weights
and statistics (``randomize_``); its state dict (with ``fc``) is saved as the release files
are, loaded into our backbone through ``init_cfg=dict(type='Pretrained')``, and every stage
output is compared with the official ``layer1..layer4`` outputs. A 48x48 input gives odd-sized
maps (3x3 before the last stride) so the ceil-mode and padded pools are exercised.
"""

from __future__ import annotations

import importlib

import pytest
import torch
from helpers import max_abs_diff, official_stage_outputs, randomize_
from torch import nn

from resnest_mm import ResNeSt
from resnest_mm import pretrained as ckpt

official_resnest = importlib.import_module('resnest.torch')

# Official stem_width (resnest.torch.resnestXX); our stem_channels is twice that.
DEPTHS = {50: 32, 101: 64, 200: 64, 269: 64}


def build_official(depth: int, **kwargs) -> nn.Module:
    """``resnest.torch.resnest{depth}`` with seeded random weights and norm statistics."""
    torch.manual_seed(depth)
    model = getattr(official_resnest, f'resnest{depth}')(**kwargs)
    # Convolutions are already random (official init); randomising every norm too makes a
    # wrongly mapped or misused norm layer visible. Much faster than randomize_(model).
    for index, module in enumerate(model.modules()):
        if isinstance(module, nn.BatchNorm2d):
            randomize_(module, seed=index)
    return model.eval()



def load_ours(path, **kwargs) -> ResNeSt:
    model = ResNeSt(**kwargs, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    return model.eval()


def image(seed: int) -> torch.Tensor:
    return torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize('depth', sorted(DEPTHS))
@torch.no_grad()
def test_official_weights_give_official_outputs(tmp_path, depth):
    official = build_official(depth)
    assert official.conv1[0].out_channels == DEPTHS[depth]  # the reference's own stem width
    path = tmp_path / f'resnest{depth}.pth'
    torch.save(official.state_dict(), path)
    ours = load_ours(path, depth=depth, stem_channels=2 * DEPTHS[depth])

    x = image(depth)
    assert max_abs_diff(ours(x), official_stage_outputs(official, x)) <= 1e-5

    # Round trip official -> OpenMMLab -> official: same keys (the classifier aside), same tensors.
    weights = ckpt.to_openmmlab(official.state_dict())
    assert sorted(weights.dropped) == ['fc.bias', 'fc.weight']
    back = ckpt.to_official(weights.state_dict)
    original = {k: v for k, v in official.state_dict().items() if not k.startswith('fc.')}
    assert set(back) == set(original)
    assert all(torch.equal(back[k], v) for k, v in original.items())


@pytest.mark.parametrize(('dilations', 'official_kwargs'), [
    ((1, 1, 2, 4), dict(dilated=True)),      # output stride 8, the segmentation models
    ((1, 1, 1, 2), dict(dilation=2)),        # output stride 16
])
@torch.no_grad()
def test_official_dilated_models_need_first_block_avd(tmp_path, dilations, official_kwargs):
    """The authors' dilated backbones versus ours at the same output stride.

    The weights map one to one, but the official ``_make_layer`` passes ``is_first=True`` to the
    first block of layer2..4, so in a dilated (stride-1) stage that block still applies its 3x3
    average pool, with stride 1. MMSegmentation's ResNeSt and ours by default only pool where
    the stride is 2; ``first_block_avd=True`` adds that pool and all four stages match.
    """
    official = build_official(50, **official_kwargs)
    assert official.layer4[0].avd_layer.stride == 1
    path = tmp_path / 'resnest50.pth'
    torch.save(official.state_dict(), path)
    strides = tuple(1 if d > 1 else s for s, d in zip((1, 2, 2, 2), dilations, strict=True))
    layout = dict(depth=50, stem_channels=64, strides=strides, dilations=dilations,
                  contract_dilation=True)
    x = image(8)
    expected = official_stage_outputs(official, x)

    like_mmseg = load_ours(path, **layout)
    outs = like_mmseg(x)
    first_dilated = dilations.index(2)
    assert max_abs_diff(outs[:first_dilated], expected[:first_dilated]) <= 1e-5
    assert max_abs_diff(outs[first_dilated], expected[first_dilated]) > 1e-2

    ours = load_ours(path, **layout, first_block_avd=True)
    assert list(ours.state_dict()) == list(like_mmseg.state_dict())
    assert max_abs_diff(ours(x), expected) <= 1e-5
