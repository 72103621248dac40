"""The memory path's training half (models/memory.py): maps recomputed in backward, the same
bits as keeping them or switching the path off, less memory held."""

from __future__ import annotations

import copy
import os
from collections import OrderedDict

import pytest
import torch
from helpers import randomize_

from resnest_mm import ResNeSt, benchmark
from resnest_mm.models import memory
from resnest_mm.models.memory import RecomputeHooks, recompute

SMALL = dict(depth=26, stem_channels=16, base_channels=8, frozen_stages=1)


# torch 2.1 cannot tell whose saved-tensor hooks are innermost: the recomputation stands aside
# there (test_torch_that_cannot_see_the_hooks_keeps_every_map checks that plain path).
needs_hook_visibility = pytest.mark.skipif(
    not memory.HOOKS_VISIBLE, reason='this torch cannot tell whose saved-tensor hooks are active')


def keep_everything():
    """Pass-through saved-tensor hooks: autograd keeps every tensor, recomputing stands aside."""
    return torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t)


def train_step(model, x):
    model.zero_grad(set_to_none=True)
    outs = model(x)
    weights = [torch.linspace(-1, 1, out.numel()).view_as(out) for out in outs]
    sum((out * w).sum() for out, w in zip(outs, weights, strict=True)).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    return list(outs), grads, [b.clone() for b in model.buffers()]


@pytest.mark.parametrize('kwargs', [
    {}, dict(frozen_stages=-1), dict(avd_first=True, radix=1), dict(groups=2, radix=4),
    dict(dropblock=dict(drop_prob=0.0, block_size=3)), dict(norm_cfg=dict(type='GN', num_groups=4)),
])
@pytest.mark.parametrize('channels_last', [False, True], ids=['nchw', 'nhwc'])
def test_gradients_are_bit_identical_to_keeping_the_tensors(kwargs, channels_last):
    model = randomize_(ResNeSt(**dict(SMALL, **kwargs))).train()
    twin = copy.deepcopy(model)
    x = torch.randn(2, 3, 40, 56, generator=torch.Generator().manual_seed(1))
    if channels_last:
        model, twin = (m.to(memory_format=torch.channels_last) for m in (model, twin))
        x = x.to(memory_format=torch.channels_last)
    lean = train_step(model, x)
    with keep_everything():
        kept = train_step(twin, x)
    for lean_part, kept_part in zip(lean, kept, strict=True):
        assert len(lean_part) == len(kept_part)
        for a, b in zip(lean_part, kept_part, strict=True):
            assert torch.equal(a, b)


@needs_hook_visibility
@pytest.mark.parametrize('frozen_stages', [1, -1])
def test_recomputing_cuts_what_autograd_holds_by_the_recomputed_maps(frozen_stages):
    model = randomize_(ResNeSt(**dict(SMALL, frozen_stages=frozen_stages))).train()
    x = torch.randn(2, 3, 64, 64)
    cfg = benchmark.BenchmarkConfig(device='cpu')
    rebuilt = 0

    def count(module, inputs, output):
        nonlocal rebuilt
        rebuilt += output.numel() * output.element_size()

    trained = [model.layer2, model.layer3, model.layer4]
    hooks = []
    if frozen_stages < 0:  # every stem norm's ReLU output is recomputed too
        trained.append(model.layer1)
        hooks += [norm.register_forward_hook(count) for norm in list(model.stem)[1::3]]
    for layer in trained:
        for block in layer:
            # relu(norm1(conv1(x))), relu(bn0(conv(x))) and the weighted sum are recomputed
            hooks += [block.norm1.register_forward_hook(count),
                      block.conv2.norm0.register_forward_hook(count),
                      block.conv2.register_forward_hook(count)]
    lean = benchmark.held_for_backward_bytes(model, x, cfg)
    for hook in hooks:
        hook.remove()
    with keep_everything():
        kept = benchmark.held_for_backward_bytes(model, x, cfg)
    assert kept - lean == rebuilt


@needs_hook_visibility
def test_hooks_are_shared_by_nested_blocks_and_stand_aside_for_other_hooks():
    with recompute() as outer:
        assert isinstance(outer, RecomputeHooks)
        with recompute() as inner:
            assert inner is outer
    with keep_everything(), recompute() as hooks:
        assert hooks is None
    with torch.no_grad(), recompute() as hooks:
        assert hooks is None
    with memory.switched(False), recompute() as hooks:
        assert hooks is None


@needs_hook_visibility
def test_registered_storage_cannot_be_mistaken_while_the_hooks_are_open():
    with recompute() as hooks:
        out = torch.ones(4, requires_grad=True) * 2
        hooks.add(out, lambda: torch.full((4,), 2.0))
        del out  # the hooks keep it alive, so no new tensor can reuse its address
        fresh = torch.zeros(4)
        assert hooks.pack(fresh) is fresh


def _backward_batch_norms(model, x, amp=False):
    """Training step; returns its outputs and gradients, and how many BatchNorm forwards the
    backward pass ran (the replays of recipes that recompute the batch statistics)."""
    model.zero_grad(set_to_none=True)
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=amp):
        outs = model(x)
    loss = sum((out.float() * torch.linspace(-1, 1, out.numel()).view_as(out)).sum()
               for out in outs)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        loss.backward()
    replays = sum(e.count for e in prof.key_averages() if e.key == 'aten::native_batch_norm')
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    return [o.detach() for o in outs] + grads, replays


@pytest.mark.parametrize('amp', [False, True], ids=['fp32', 'bf16'])
@pytest.mark.parametrize('channels_last', [False, True], ids=['nchw', 'nhwc'])
def test_training_norms_are_rebuilt_from_the_saved_batch_statistics(amp, channels_last):
    model = randomize_(ResNeSt(**dict(SMALL, frozen_stages=-1))).train()
    twin = copy.deepcopy(model)
    x = torch.randn(2, 3, 40, 56, generator=torch.Generator().manual_seed(5))
    if channels_last:
        model, twin = (m.to(memory_format=torch.channels_last) for m in (model, twin))
        x = x.to(memory_format=torch.channels_last)
    lean, replays = _backward_batch_norms(model, x, amp)
    with keep_everything():
        kept, _ = _backward_batch_norms(twin, x, amp)
    assert replays == 0  # only the affine step, no statistics recomputed
    assert len(lean) == len(kept)
    for a, b in zip(lean, kept, strict=True):
        assert torch.equal(a, b)


@needs_hook_visibility
def test_norms_are_replayed_where_the_affine_step_would_round_differently(monkeypatch):
    model = randomize_(ResNeSt(**dict(SMALL, frozen_stages=-1))).train()
    twin = copy.deepcopy(model)
    x = torch.randn(2, 3, 40, 56, generator=torch.Generator().manual_seed(6))
    affine = memory._affine
    monkeypatch.setattr(memory, '_AFFINE_MATCHES', OrderedDict())
    monkeypatch.setattr(memory, '_affine', lambda *args: affine(*args).mul_(1 + 2**-20))
    lean, replays = _backward_batch_norms(model, x)
    assert not any(memory._AFFINE_MATCHES.values())  # the check against the forward failed
    assert replays == 3 + 2 * sum(len(layer) for layer in (model.layer1, model.layer2,
                                                           model.layer3, model.layer4))
    with keep_everything():
        kept, _ = _backward_batch_norms(twin, x)
    for a, b in zip(lean, kept, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize('kwargs', [dict(frozen_stages=-1), dict(groups=2, radix=4)])
def test_switch_off_gives_the_same_bits_and_running_stats(kwargs):
    """The one switch: with the memory path off, training and inference give the same outputs,
    gradients and running statistics as with it on."""
    model = randomize_(ResNeSt(**dict(SMALL, **kwargs))).train()
    twin = copy.deepcopy(model)
    x = torch.randn(2, 3, 40, 56, generator=torch.Generator().manual_seed(2))
    on = train_step(model, x)
    with memory.switched(False):
        assert not memory.is_enabled()
        off = train_step(twin, x)
    assert memory.is_enabled()
    for on_part, off_part in zip(on, off, strict=True):
        assert len(on_part) == len(off_part)
        for a, b in zip(on_part, off_part, strict=True):
            assert torch.equal(a, b)
    model.eval()
    twin.eval()
    with torch.no_grad():
        expected = model(x)
        with memory.switched(False):
            for a, b in zip(expected, twin(x), strict=True):
                assert torch.equal(a, b)


def test_unchecked_torch_takes_the_plain_path(monkeypatch):
    """Outside the checked torch range (or where a self-check fails) no internal is touched."""
    monkeypatch.setattr(memory, 'INTERNALS_CHECKED', False)
    monkeypatch.setattr(memory, '_innermost_hooks', None)  # any use would raise
    model = randomize_(ResNeSt(**SMALL)).train()
    x = torch.randn(2, 3, 40, 56)
    with recompute() as hooks:
        assert hooks is None
    sum(out.sum() for out in model(x)).backward()
    model.eval()
    bn = model.layer1[0].norm1
    with torch.no_grad():
        assert not memory.can_norm_in_place(bn, torch.randn(2, bn.num_features, 4, 4))
        model(x)
    monkeypatch.setattr(memory, 'INTERNALS_CHECKED', True)
    monkeypatch.setattr(memory, '_norm_out_checked', False)  # the self-check failed
    with torch.no_grad():
        assert not memory.can_norm_in_place(bn, torch.randn(2, bn.num_features, 4, 4))


def _resident_bytes() -> int:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def test_training_on_random_sizes_keeps_memory_flat(monkeypatch):
    """200 training steps of a tiny backbone on random input sizes: the per-layout cache of the
    affine check stays within its bound and the process's resident memory (/proc/self/statm)
    grows by less than 16 MiB over the last 100 steps. (Measured: about 11 MiB there, the same
    with the memory path off: the allocator's high-water mark over ever new sizes, level after
    about 300 steps; a leak of one 2x8x48x48 map a step would add 7 MiB more.)"""
    monkeypatch.setattr(memory, '_AFFINE_MATCHES', OrderedDict())
    monkeypatch.setattr(memory, 'AFFINE_CACHE_SIZE', 64)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny maps: one thread is fastest, even on a loaded machine
    model = randomize_(ResNeSt(depth=14, stem_channels=8, base_channels=4)).train()
    gen = torch.Generator().manual_seed(0)
    resident = []
    for step in range(200):
        height, width = (int(v) for v in torch.randint(20, 52, (2,), generator=gen))
        x = torch.randn(2, 3, height, width, generator=gen)
        sum(out.mean() for out in model(x)).backward()
        model.zero_grad(set_to_none=True)
        if step in (99, 199):
            resident.append(_resident_bytes())
    torch.set_num_threads(threads)
    assert len(memory._AFFINE_MATCHES) <= 64
    assert resident[1] - resident[0] < 16 * 2**20


@pytest.mark.skipif(memory.HOOKS_VISIBLE, reason='this torch tells whose hooks are active')
def test_torch_that_cannot_see_the_hooks_keeps_every_map():
    """torch 2.1: no recompute hooks are installed and autograd keeps every map; gradients
    are those of the path switched off."""
    model = ResNeSt(depth=14, stem_channels=16, base_channels=8).train()
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    with memory.recompute() as hooks:
        assert hooks is None
    grads = {}
    for enabled in (True, False):
        with memory.switched(enabled):
            x.grad = None
            model.zero_grad()
            sum(o.sum() for o in model(x)).backward()
            grads[enabled] = x.grad.clone()
    assert torch.equal(grads[True], grads[False])
