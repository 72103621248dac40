"""Parity with MMDetection's and MMSegmentation's own ResNeSt: same keys, shapes and outputs."""

from __future__ import annotations

import importlib

import pytest
import torch
from helpers import max_abs_diff, randomize_

from resnest_mm import ResNeSt

mmdet_backbones = importlib.import_module('mmdet.models.backbones')
mmseg_backbones = importlib.import_module('mmseg.models.backbones')

SEG_OS8 = dict(strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4), contract_dilation=True)
# mmdet's ResNet defaults to norm_eval=True, mmseg's to False; the ResNeSt recipes of both set
# False (BN/SyncBN statistics are trained), which is also our default. Stated explicitly here.
CASES = {
    'mmdet-S50': (mmdet_backbones.ResNeSt, dict(depth=50, stem_channels=64, norm_eval=False)),
    'mmdet-S50-frozen1-normeval': (mmdet_backbones.ResNeSt, dict(
        depth=50, stem_channels=64, frozen_stages=1, norm_eval=True)),
    'mmdet-S101': (mmdet_backbones.ResNeSt, dict(depth=101, stem_channels=128, norm_eval=False)),
    'mmseg-S101-os8': (mmseg_backbones.ResNeSt, dict(
        depth=101, stem_channels=128, norm_eval=False, **SEG_OS8)),
}


def build_pair(reference_cls, kwargs, seed=0):
    reference = randomize_(reference_cls(**kwargs), seed)
    ours = ResNeSt(**kwargs)
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference, ours


@pytest.mark.parametrize('case', CASES)
def test_state_dict_keys_and_shapes_match(case):
    reference_cls, kwargs = CASES[case]
    theirs = {k: tuple(v.shape) for k, v in reference_cls(**kwargs).state_dict().items()}
    ours = {k: tuple(v.shape) for k, v in ResNeSt(**kwargs).state_dict().items()}
    assert sorted(set(theirs) - set(ours)) == []
    assert sorted(set(ours) - set(theirs)) == []
    assert ours == theirs


@pytest.mark.parametrize('case', CASES)
@pytest.mark.parametrize('mode', ['eval', 'train'])
def test_stage_outputs_match(case, mode, image):
    reference, ours = build_pair(*CASES[case])
    reference.train(mode == 'train')
    ours.train(mode == 'train')
    with torch.no_grad():
        expected, actual = reference(image), ours(image)
    assert len(actual) == 4
    assert max_abs_diff(actual, expected) <= 1e-5
    if mode == 'train':  # the batch statistics were folded into the running ones identically
        assert max_abs_diff(
            tuple(ours.state_dict().values()), tuple(reference.state_dict().values())) <= 1e-6


def test_gradients_match(image):
    reference, ours = build_pair(*CASES['mmdet-S50'])
    for model in (reference, ours):
        model.train()
        sum(out.square().mean() for out in model(image)).backward()
    ref_grads = {k: p.grad for k, p in reference.named_parameters()}
    for name, param in ours.named_parameters():
        torch.testing.assert_close(param.grad, ref_grads[name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize('mode', ['eval', 'train'])
@pytest.mark.parametrize('extra', [{}, SEG_OS8], ids=['os32', 'os8'])
def test_odd_input_sizes_match(mode, extra):
    kwargs = dict(depth=50, stem_channels=64, norm_eval=False, **extra)
    reference, ours = build_pair(mmseg_backbones.ResNeSt, kwargs)
    x = torch.randn(2, 3, 97, 131)
    reference.train(mode == 'train')
    ours.train(mode == 'train')
    with torch.no_grad():
        expected, actual = reference(x), ours(x)
    assert [o.shape for o in actual] == [o.shape for o in expected]
    assert max_abs_diff(actual, expected) <= 1e-5

