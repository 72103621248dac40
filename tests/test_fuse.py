"""Folding BatchNorm into the preceding convolutions: same outputs, no BatchNorm left."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import max_abs_diff, randomize_
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from resnest_mm import ResNeSt
from resnest_mm.deploy import fuse_conv_bn

SMALL = dict(depth=14, stem_channels=32, base_channels=16)


def conv_bn_pairs(model: ResNeSt) -> int:
    """Stem (3) + per block conv1, conv3, split conv, fc1 (4) + one shortcut per stage."""
    blocks = sum(model.stage_blocks)
    return 3 + 4 * blocks + len(model.res_layers)


@pytest.mark.parametrize('kwargs', [
    {},
    dict(radix=4, groups=2, base_width=40, avd_first=True),
    dict(radix=1, groups=4, base_width=24, avd_first=True),
    dict(strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4), contract_dilation=True),
], ids=['default', '4s2x40d', '1s4x24d', 'os8'])
def test_fused_outputs_equal_unfused(kwargs):
    model = randomize_(ResNeSt(**SMALL, **kwargs)).eval()
    fused = copy.deepcopy(model)
    assert fuse_conv_bn(fused) == conv_bn_pairs(model)
    assert not any(isinstance(m, _BatchNorm) for m in fused.modules())
    assert sum(isinstance(m, nn.Identity) for m in fused.modules()) == conv_bn_pairs(model)
    for shape in [(2, 3, 64, 64), (1, 3, 97, 75)]:
        x = torch.randn(shape, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            assert max_abs_diff(fused(x), model(x)) <= 1e-4


def test_fused_model_is_in_eval_and_leaves_other_norms():
    model = randomize_(ResNeSt(norm_cfg=dict(type='GN', num_groups=8), **SMALL))
    reference = copy.deepcopy(model).eval()
    assert fuse_conv_bn(model) == 0
    assert not model.training
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert max_abs_diff(model(x), reference(x)) == 0


def test_benchmark_fusion_times_each_model_under_its_name(monkeypatch):
    """The fused model is made 0.5 s of CPU time slower (a busy loop before its forward): its
    timings must show it and the BN model's must not. CPU time, unlike the wall clock, hardly
    grows with the load other processes put on a shared machine."""
    import time

    from resnest_mm.benchmark import fusion

    delay = 0.5

    def busy(module, args):  # at least `delay` of CPU time and of wall clock (idle OpenMP
        # threads spinning can make the process's CPU time run faster than the clock)
        cpu, wall = time.process_time(), time.perf_counter()
        while time.process_time() - cpu < delay or time.perf_counter() - wall < delay:
            pass

    def fuse_then_slow_down(model):
        pairs = fuse_conv_bn(model)
        model.register_forward_pre_hook(busy)
        return pairs

    monkeypatch.setattr(fusion, 'fuse_conv_bn', fuse_then_slow_down)
    result = fusion.benchmark_fusion(depth=14, stem_channels=32, base_channels=16,
                                     size=(32, 32), repeats=2, warmup=1)
    assert result['pairs'] == 23 and result['max_abs_diff'] <= 1e-4
    fused, bn = result['fused']['cpu'], result['bn']['cpu']
    assert fused['min'] >= delay and fused['median'] - bn['median'] > delay / 2
    assert result['fused']['min'] >= delay  # the wall clock includes the CPU time
    assert result['speedup_cpu'] < 1
