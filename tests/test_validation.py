"""Bad options and inputs fail with a message naming the option, the value and what is allowed."""

from __future__ import annotations

import pytest
import torch

from resnest_mm import ResNeSt

SMALL = dict(depth=14, stem_channels=32, base_channels=16)


@pytest.mark.parametrize('override,exc,words', [
    (dict(depth=42), ValueError, ['depth=42', '50', '269']),
    (dict(radix=0), ValueError, ['radix=0', '>= 1']),
    (dict(groups=0), ValueError, ['groups=0', '>= 1']),
    (dict(reduction_factor=0), ValueError, ['reduction_factor=0', '>= 1']),
    (dict(radix=2.0), TypeError, ['radix=2.0', 'int']),
    (dict(out_indices=(0, 4)), ValueError, ['out_indices=(0, 4)', '0..3']),
    (dict(out_indices=()), TypeError, ['out_indices=()']),
    (dict(frozen_stages=5), ValueError, ['frozen_stages=5', '-1']),
    (dict(frozen_stages=-2), ValueError, ['frozen_stages=-2']),
    (dict(strides=(1, 2, 2)), ValueError, ['strides=(1, 2, 2)', '4 values', 'num_stages=4']),
    (dict(dilations=(1, 1)), ValueError, ['dilations=(1, 1)', '4 values']),
    (dict(num_stages=5), ValueError, ['num_stages=5', '1, 2, 3, 4']),
    (dict(norm_cfg=dict(type='FancyNorm')), ValueError, ["norm_cfg['type']='FancyNorm'", 'BN',
                                                          'SyncBN', 'GN']),
    (dict(norm_cfg=dict(type='GN')), ValueError, ['num_groups']),
    (dict(norm_cfg='BN'), TypeError, ['norm_cfg=']),
    (dict(style='caffe'), ValueError, ["style='caffe'", 'pytorch']),
    (dict(multi_grid=(1, 2, 4)), ValueError, ['multi_grid=(1, 2, 4)', '1 values']),
    (dict(pretrained='a.pth', init_cfg=dict(type='Pretrained', checkpoint='b.pth')), ValueError,
     ['pretrained', 'init_cfg']),
    (dict(first_block_avd=1), TypeError, ['first_block_avd=1', 'True or False']),
    (dict(first_block_avd=True, avg_down_stride=False), ValueError,
     ['first_block_avd=True', 'avg_down_stride=True']),
    (dict(with_cp=1), TypeError, ['with_cp=1', 'True or False']),
    (dict(drop_path_rate=1.5), ValueError, ['drop_path_rate=1.5', '[0, 1)']),
    (dict(stage_with_dcn=(True,)), ValueError, ['stage_with_dcn=(True,)', '4 values']),
])
def test_bad_options_are_named(override, exc, words):
    with pytest.raises(exc) as info:
        ResNeSt(**{**SMALL, **override})
    for word in words:
        assert word in str(info.value), (word, str(info.value))


@pytest.mark.parametrize('x,exc,words', [
    (torch.zeros(3, 64, 64), ValueError, ['4-D', '(3, 64, 64)']),
    (torch.zeros(1, 4, 64, 64), ValueError, ['4 channels', 'in_channels=3']),
    ([[0.0]], TypeError, ['torch.Tensor', 'list']),
])
def test_bad_inputs_are_named(x, exc, words):
    model = ResNeSt(**SMALL).eval()
    with pytest.raises(exc) as info:
        model(x)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_other_in_channels_work():
    model = ResNeSt(in_channels=1, **SMALL).eval()
    assert model(torch.zeros(1, 1, 32, 32))[0].shape == (1, 64, 8, 8)


def test_every_option_is_declared_once_and_checked_in_one_place(monkeypatch):
    """An option is its ``__init__`` parameter plus its docstring line: the validator receives
    every parameter by name, and the class docstring documents each one."""
    import inspect

    from resnest_mm.models import resnest

    seen = {}
    monkeypatch.setattr(resnest, 'check_backbone_args', seen.update)
    ResNeSt(**SMALL)
    parameters = [p for p in inspect.signature(ResNeSt.__init__).parameters if p != 'self']
    assert sorted(seen) == sorted(parameters)
    assert seen['depth'] == 14 and seen['radix'] == 2
    undocumented = [p for p in parameters if f'    {p} (' not in ResNeSt.__doc__]
    assert undocumented == []
