"""The benchmark tool (correctness only; speed is measured with the tool, not asserted here) and
the lean split-attention weighted sum it motivated."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from mmdet.models import backbones as mmdet_backbones

from resnest_mm import benchmark
from resnest_mm.models.split_attention import SplitAttentionConv2d, _WeightedSum

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(depth=14, batch=2, size=(32, 32), stem_channels=8, base_channels=4, repeats=1,
            warmup=0, flops_size=None)


def load_cli():
    spec = importlib.util.spec_from_file_location('benchmark_cli', ROOT / 'tools/benchmark.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_run_measures_three_models_and_writes_json_and_png(tmp_path):
    result = benchmark.run_benchmark(benchmark.BenchmarkConfig(**TINY))

    parity = result['parity']
    assert parity['equal'] is True
    assert parity['eval_max_abs_diff'] <= 1e-5 * max(parity['eval_output_scale'], 1.0)
    assert parity['train_max_abs_diff'] <= 1e-5 * max(parity['train_output_scale'], 1.0)
    assert list(result['models']) == [
        benchmark.OURS, benchmark.MMDET, benchmark.REFERENCE.format('ResNetV1d')]
    for entry in result['models'].values():
        for key in ('inference_s', 'train_s'):
            for stats in (entry[key], entry[key]['cpu']):
                assert len(stats['runs']) == 1
                assert 0 < stats['min'] <= stats['median'] <= stats['max']
        assert entry['train_peak_bytes'] > entry['held_bytes'] > 0
        assert entry['flops_at_input'] > 0 and entry['params'] > 0
    ours, theirs = result['models'][benchmark.OURS], result['models'][benchmark.MMDET]
    assert ours['params'] == theirs['params']
    assert ours['flops_at_input'] == pytest.approx(theirs['flops_at_input'], rel=0.02)
    assert result['ratios']['train_time'] == pytest.approx(
        ours['train_s']['median'] / theirs['train_s']['median'])
    assert result['machine']['threads'] == 2

    json_path = benchmark.write_json(result, tmp_path / 'out.json')
    assert json.loads(json_path.read_text())['models'][benchmark.OURS]['params'] == ours['params']
    png_path = benchmark.draw_chart(result, tmp_path / 'out.png')
    assert png_path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    table = benchmark.format_table(result)
    assert all(name in table for name in result['models'])


@pytest.mark.parametrize(('changes', 'option', 'value'), [
    (dict(device='tpu'), '--device', "'tpu'"),
    (dict(amp=True), '--amp', 'True'),
    (dict(memory_format='nhwc'), '--memory-format', "'nhwc'"),
    (dict(depth=18), '--depth', '18'),
    (dict(depth=200), '--reference', "'ResNetV1d'"),
    (dict(batch=0), '--batch', '0'),
    (dict(size=(16, 16)), '--size', '(16, 16)'),
    (dict(frozen_stages=5), '--frozen-stages', '5'),
])
def test_invalid_settings_name_option_and_value(changes, option, value):
    with pytest.raises(ValueError, match='benchmark') as err:
        benchmark.validate_config(benchmark.BenchmarkConfig(**changes))
    assert option in str(err.value) and value in str(err.value)


def test_cuda_without_gpu_is_refused_by_the_cli(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert load_cli().main(['--device', 'cuda', '--out-dir', 'unused']) == 2
    message = capsys.readouterr().err
    assert "--device='cuda'" in message and 'CUDA is not available' in message


def test_detector_mode_rejects_a_missing_config(tmp_path):
    cfg = benchmark.DetectorBenchmarkConfig(ours=str(tmp_path / 'missing.py'))
    with pytest.raises(ValueError, match='--config') as err:
        benchmark.validate_detector_config(cfg)
    assert 'missing.py' in str(err.value)


@pytest.mark.parametrize('radix', [1, 2, 4])
def test_weighted_sum_gradcheck(radix):
    gen = torch.Generator().manual_seed(radix)
    splits = torch.randn(2, radix, 3, 4, 5, dtype=torch.double, generator=gen)
    attn = torch.rand(2, radix, 3, 1, 1, dtype=torch.double, generator=gen)
    assert torch.autograd.gradcheck(
        _WeightedSum.apply, (splits.requires_grad_(), attn.requires_grad_()))


def _pair(radix, groups):
    kwargs = dict(in_channels=8, channels=8, kernel_size=3, padding=1, groups=groups, radix=radix)
    reference = mmdet_backbones.resnest.SplitAttentionConv2d(**kwargs).double()
    ours = SplitAttentionConv2d(**kwargs).double()
    with torch.no_grad():
        for p in reference.parameters():
            p.uniform_(-0.5, 0.5)
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference, ours


@pytest.mark.parametrize('groups', [1, 2])
@pytest.mark.parametrize('radix', [1, 2, 4])
@pytest.mark.parametrize('channels_last', [False, True], ids=['nchw', 'nhwc'])
def test_split_attention_gradients_equal_mmdet(radix, groups, channels_last):
    reference, ours = _pair(radix, groups)
    x = torch.randn(3, 8, 6, 5, dtype=torch.double, generator=torch.Generator().manual_seed(0))
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    grads = []
    for model in (reference, ours):
        inp = x.clone().requires_grad_()
        out = model.train()(inp)
        weight = torch.linspace(-1, 1, out.numel(), dtype=torch.double).view_as(out)
        (out * weight).sum().backward()
        grads.append([out, inp.grad, *(p.grad for p in model.parameters())])
    for expected, actual in zip(*grads, strict=True):
        torch.testing.assert_close(actual, expected, rtol=1e-9, atol=1e-10)
    with torch.no_grad():  # the inference path (no autograd Function)
        torch.testing.assert_close(ours.eval()(x), reference.eval()(x), rtol=1e-9, atol=1e-10)


def test_traced_split_attention_uses_plain_ops():
    _, ours = _pair(2, 1)
    x = torch.randn(2, 8, 6, 6, dtype=torch.double, requires_grad=True)
    traced = torch.jit.trace(ours.eval(), x)
    assert 'PythonOp' not in str(traced.graph)  # an autograd Function would break ONNX export
    torch.testing.assert_close(traced(x), ours(x))
