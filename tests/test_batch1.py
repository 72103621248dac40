"""Training with one image per process: the attention's pooled BatchNorm falls back to running
statistics (warned once); batch >= 2, GN and eval mode are unchanged."""

from __future__ import annotations

import warnings

import pytest
import torch
from helpers import max_abs_diff, randomize_
from torch.nn.modules.batchnorm import _BatchNorm

import resnest_mm.models.split_attention as attention_module
from resnest_mm import ResNeSt, SplitAttentionConv2d

SMALL = dict(depth=14, stem_channels=32, base_channels=16)


@pytest.fixture(autouse=True)
def fresh_warning_state(monkeypatch):
    monkeypatch.setattr(attention_module, '_warned', False)


def attention_norms(model):
    return [m.norm1 for m in model.modules() if isinstance(m, SplitAttentionConv2d)]


def fallback_warnings(records):
    return [r for r in records if 'single value per channel' in str(r.message)]


def test_plain_batchnorm_cannot_train_on_one_pooled_value():
    with pytest.raises(ValueError, match='Expected more than 1 value per channel'):
        torch.nn.BatchNorm2d(4).train()(torch.randn(1, 4, 1, 1))


@pytest.mark.parametrize('norm_type', ['BN', 'SyncBN'])
def test_batch_of_one_trains_and_warns_once(norm_type):
    model = randomize_(ResNeSt(norm_cfg=dict(type=norm_type, requires_grad=True), **SMALL))
    model.train()
    before = [(n.running_mean.clone(), n.running_var.clone()) for n in attention_norms(model)]
    stem_mean = model.stem[1].running_mean.clone()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter('always')
        for _ in range(2):
            loss = sum(out.mean() for out in model(x))
            loss.backward()
    assert len(fallback_warnings(records)) == 1
    for norm, (mean, var) in zip(attention_norms(model), before, strict=True):
        assert torch.equal(norm.running_mean, mean)  # not updated from a single value
        assert torch.equal(norm.running_var, var)
        assert norm.weight.grad is not None and norm.weight.grad.abs().sum() > 0
    assert not torch.equal(model.stem[1].running_mean, stem_mean)  # other BNs still train


def test_batch_of_one_equals_attention_norms_in_eval(image):
    model = randomize_(ResNeSt(**SMALL)).train()
    reference = randomize_(ResNeSt(**SMALL)).train()
    for norm in attention_norms(reference):
        norm.eval()  # what the fallback does: running statistics for these layers only
    x = image[:1]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        assert max_abs_diff(model(x), reference(x)) <= 1e-6


def test_batch_of_two_is_unchanged(image, monkeypatch):
    model = randomize_(ResNeSt(**SMALL)).train()
    reference = randomize_(ResNeSt(**SMALL)).train()
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter('always')
        with torch.no_grad():
            out = model(image)
    assert fallback_warnings(records) == []
    # Same as calling each BatchNorm directly (torch's own training-mode batch statistics).
    monkeypatch.setattr(attention_module, 'norm_single_sample', lambda norm, x: norm(x))
    with torch.no_grad():
        assert max_abs_diff(out, reference(image)) == 0
    assert all(not torch.equal(n.running_mean, torch.zeros_like(n.running_mean))
               for n in attention_norms(model))


def test_group_norm_needs_no_fallback():
    model = ResNeSt(norm_cfg=dict(type='GN', num_groups=8, requires_grad=True), **SMALL).train()
    assert not any(isinstance(m, _BatchNorm) for m in model.modules())
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter('always')
        outs = model(torch.randn(1, 3, 64, 64))
        sum(o.mean() for o in outs).backward()
    assert fallback_warnings(records) == []
    assert all(torch.isfinite(o).all() for o in outs)


def test_eval_mode_and_frozen_norms_are_unaffected(image):
    model = randomize_(ResNeSt(norm_eval=True, **SMALL)).train()
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter('always')
        with torch.no_grad():
            model(image[:1])
    assert fallback_warnings(records) == []
