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
from conftest import max_abs_diff, official_stage_outputs, randomize_
from torch import nn

from resnest_mm import ResNeSt
from resnest_mm import checkpoint as ckpt

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


@torch.no_grad()
def test_official_dilated_model_differs_only_by_a_stride_1_avd_pool(tmp_path):
    """The official segmentation backbone (``dilated=True``) versus our output stride 8.

    The weights map one to one, but the architectures differ: the official ``_make_layer``
    passes ``is_first=True`` to the first block of layer2..4, so in a dilated (stride-1) stage
    that block still applies its 3x3 average pool, with stride 1. MMSegmentation's ResNeSt and
    ours only pool where the stride is 2. With that pool added, all four stages match.
    """
    official = build_official(50, dilated=True)
    assert isinstance(official.layer3[0].avd_layer, nn.AvgPool2d)
    assert official.layer3[0].avd_layer.stride == 1
    path = tmp_path / 'resnest50.pth'
    torch.save(official.state_dict(), path)
    ours = load_ours(path, depth=50, stem_channels=64, strides=(1, 2, 1, 1),
                     dilations=(1, 1, 2, 4), contract_dilation=True)

    x = image(8)
    expected = official_stage_outputs(official, x)
    outs = ours(x)
    assert max_abs_diff(outs[:2], expected[:2]) <= 1e-5
    assert max_abs_diff(outs[2], expected[2]) > 1e-2  # the stride-1 pool changes layer3

    for stage in (ours.layer3, ours.layer4):
        stage[0].avd_layer = nn.AvgPool2d(3, 1, padding=1)
    assert max_abs_diff(ours(x), expected) <= 1e-5
