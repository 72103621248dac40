"""The memory path's inference half (models/memory.py): without autograd, eval BatchNorms and the
weighted sum write into buffers the forward owns: the same bits as MMDetection's ResNeSt, less
memory."""

from __future__ import annotations

import importlib

import pytest
import torch
from helpers import randomize_
from torch import nn

from resnest_mm import ResNeSt, benchmark
from resnest_mm.models import memory, split_attention
from resnest_mm.models.memory import norm as batch_norm_in_place

mmdet_backbones = importlib.import_module('mmdet.models.backbones')
mmdet_resnest = importlib.import_module('mmdet.models.backbones.resnest')
FORMATS = {'nchw': torch.contiguous_format, 'nhwc': torch.channels_last}


def _eval_bn(channels=24, seed=0):
    bn = randomize_(nn.BatchNorm2d(channels), seed).eval()
    with torch.no_grad():
        bn.running_mean.normal_(generator=torch.Generator().manual_seed(seed))
    return bn


@pytest.mark.parametrize('fmt', FORMATS)
@pytest.mark.parametrize('amp', [False, True], ids=['fp32', 'bf16'])
@pytest.mark.parametrize('shape', [(2, 24, 17, 9), (1, 24, 1, 1), (3, 24, 8, 8)])
def test_eval_batch_norm_writes_into_its_input_with_the_same_bits(fmt, amp, shape):
    bn = _eval_bn()
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1)).to(
        memory_format=FORMATS[fmt])
    if amp:
        x = x.bfloat16()
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16, enabled=amp):
        expected = bn(x)
        buffer = x.clone()
        out = batch_norm_in_place(bn, buffer)
    assert out is buffer
    assert out.dtype == expected.dtype and torch.equal(out, expected)


def _stands_aside(bn, x):
    before = x.clone()
    out = batch_norm_in_place(bn, x)
    assert out is not x and torch.equal(x, before)
    return out


def test_in_place_batch_norm_stands_aside_where_it_could_change_anything():
    x = torch.randn(2, 24, 5, 5)
    bn = _eval_bn()
    with torch.no_grad():
        _stands_aside(bn.train(), x)  # training: the running statistics are updated
        bn.eval()
        seen = []
        handle = bn.register_forward_hook(lambda m, i, o: seen.append(o))
        _stands_aside(bn, x)  # a hook sees the module run
        handle.remove()
        assert len(seen) == 1
        _stands_aside(nn.GroupNorm(4, 24), x)
        _stands_aside(nn.SyncBatchNorm(24).eval(), x)  # its own forward
    _stands_aside(bn, x)  # autograd on: the input may be saved for backward


def _split_attention_pair(radix, groups, seed=0):
    kwargs = dict(in_channels=16, channels=16, kernel_size=3, padding=1, groups=groups,
                  radix=radix, reduction_factor=4, norm_cfg=dict(type='BN'))
    theirs = randomize_(mmdet_resnest.SplitAttentionConv2d(**kwargs), seed).eval()
    ours = split_attention.SplitAttentionConv2d(**kwargs).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours, theirs


@pytest.mark.parametrize('fmt', FORMATS)
@pytest.mark.parametrize('radix, groups', [(2, 1), (1, 1), (4, 2)])
def test_split_attention_inference_is_bit_identical_to_mmdet(fmt, radix, groups):
    ours, theirs = _split_attention_pair(radix, groups)
    x = torch.randn(2, 16, 13, 11, generator=torch.Generator().manual_seed(3))
    ours, theirs = (m.to(memory_format=FORMATS[fmt]) for m in (ours, theirs))
    x = x.to(memory_format=FORMATS[fmt])
    written = []
    sum_of_products = memory._sum_of_products

    def spy(splits, attn, out=None):
        written.append(out is not None)
        return sum_of_products(splits, attn, out)

    with torch.no_grad(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(memory, '_sum_of_products', spy)
        expected = theirs(x)
        actual = ours(x)
        handle = ours.norm0.register_forward_hook(lambda m, i, o: None)
        kept = ours(x)  # a hook may hold the splits: they are left intact
        handle.remove()
    assert written == [True, False]
    assert torch.equal(actual, expected) and actual.stride() == expected.stride()
    assert torch.equal(kept, expected)


def _bit_identical_pair(**kwargs):
    kwargs = dict(depth=50, stem_channels=64, norm_eval=False, **kwargs)
    theirs = randomize_(mmdet_backbones.ResNeSt(**kwargs))
    ours = ResNeSt(**kwargs)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours, theirs


@pytest.mark.parametrize('fmt', FORMATS)
def test_backbone_is_bit_identical_to_mmdet_in_inference_and_training(fmt):
    ours, theirs = _bit_identical_pair(frozen_stages=1)
    ours, theirs = (m.to(memory_format=FORMATS[fmt]) for m in (ours, theirs))
    x = torch.randn(2, 3, 64, 48, generator=torch.Generator().manual_seed(4)).to(
        memory_format=FORMATS[fmt])
    ours.eval()
    theirs.eval()
    with torch.no_grad():
        for a, b in zip(ours(x), theirs(x), strict=True):
            assert torch.equal(a, b)
    grads = []
    for model in (ours, theirs):
        model.train()
        outs = model(x)
        sum((out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum()
            for out in outs).backward()
        grads.append([o.detach() for o in outs]
                     + [p.grad for p in model.parameters() if p.requires_grad])
    assert len(grads[0]) == len(grads[1])
    # channels_last training: the forward outputs are equal, but most gradients differ by
    # rounding (before these changes too); only the default layout is bit-exact there.
    checked = grads if fmt == 'nchw' else [g[:4] for g in grads]
    for a, b in zip(*checked, strict=True):
        assert torch.equal(a, b)


def test_in_place_inference_lowers_the_inference_peak():
    model = randomize_(ResNeSt(depth=26, stem_channels=16, base_channels=8, frozen_stages=1))
    x = torch.randn(2, 3, 96, 96)
    cfg = benchmark.BenchmarkConfig(device='cpu')
    lean = benchmark.backbone_memory(model, x, cfg)['inference_peak_bytes']
    with memory.switched(False):
        allocating = benchmark.backbone_memory(model, x, cfg)['inference_peak_bytes']
    assert lean < allocating
