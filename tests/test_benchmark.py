"""The benchmark tool (correctness only; speed is measured with the tool, not asserted here) and
the lean split-attention weighted sum it motivated."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import torch
from helpers import load_tool
from mmdet.models import backbones as mmdet_backbones

from resnest_mm import benchmark
from resnest_mm.models.memory import WeightedSum as _WeightedSum
from resnest_mm.models.split_attention import SplitAttentionConv2d

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(depth=14, batch=2, size=(32, 32), stem_channels=8, base_channels=4, repeats=1,
            warmup=0, flops_size=None)


def load_cli():
    return load_tool('benchmark')


def test_smoke_run_measures_three_models_and_writes_json_and_png(tmp_path):
    result = benchmark.run_benchmark(benchmark.BenchmarkConfig(**TINY))

    parity = result['parity']
    assert parity['eval_max_abs_diff'] <= 1e-5 * max(parity['eval_output_scale'], 1.0)
    assert parity['train_max_abs_diff'] <= 1e-5 * max(parity['train_output_scale'], 1.0)
    assert list(result['models']) == [
        benchmark.OURS, benchmark.MMDET, benchmark.REFERENCE.format('ResNetV1d')]
    for entry in result['models'].values():
        for key in ('inference_s', 'train_s'):
            assert len(entry[key]['runs']) == len(entry[key]['cpu']['runs']) == 1
        assert entry['train_peak_bytes'] > entry['held_bytes'] > 0
        assert entry['flops_at_input'] > 0 and entry['params'] > 0
    ours, theirs = result['models'][benchmark.OURS], result['models'][benchmark.MMDET]
    assert ours['params'] == theirs['params']
    assert ours['flops_at_input'] == pytest.approx(theirs['flops_at_input'], rel=0.02)
    assert result['machine']['threads'] == 2

    json_path = benchmark.write_json(result, tmp_path / 'out.json')
    assert json.loads(json_path.read_text())['models'][benchmark.OURS]['params'] == ours['params']
    png_path = benchmark.draw_chart(result, tmp_path / 'out.png')
    assert png_path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    table = benchmark.format_table(result)
    assert all(name in table for name in result['models'])
    # issue 13's fp32 targets, recorded with the result and printed beside each ratio
    assert result['targets'] == benchmark.CPU_TARGETS == dict(
        train_time=1.0, inference_time=1.0, train_peak_memory=0.73)
    for key, target in benchmark.CPU_TARGETS.items():
        assert f"{key}: {result['ratios'][key]:.3f}  (target <= {target})" in table


def test_outputs_that_differ_stop_the_benchmark_before_timing():
    cfg = benchmark.BenchmarkConfig(**TINY)
    models = benchmark.build_backbones(cfg)
    image = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    parity = benchmark.compare_outputs(models, image, cfg)
    assert parity['eval_max_abs_diff'] <= 1e-5 * max(parity['eval_output_scale'], 1.0)
    with torch.no_grad():  # one weight of the last stage 1 % off
        models[benchmark.OURS].layer4[0].conv3.weight.mul_(1.01)
    with pytest.raises(RuntimeError, match='outputs differ in eval mode'):
        benchmark.compare_outputs(models, image, cfg)


def test_interleaved_timing_measures_each_step_and_takes_turns():
    calls = []

    def sleeper(name, seconds):
        def step():
            calls.append(name)
            time.sleep(seconds)
        return step

    def busy():  # burns CPU time, which sleeping does not
        calls.append('busy')
        end = time.process_time() + 0.03
        while time.process_time() < end:
            pass

    steps = {'long': sleeper('long', 0.06), 'short': sleeper('short', 0.01), 'busy': busy}
    timings = benchmark.time_interleaved(steps, repeats=3, warmup=1, device='cpu')
    assert calls[:3] == ['long', 'short', 'busy']  # warm-up, untimed
    assert calls[3:] == ['long', 'short', 'busy', 'short', 'busy', 'long',
                         'busy', 'long', 'short']  # the order rotates every round
    assert [len(timings[name]['runs']) for name in steps] == [3, 3, 3]
    assert min(timings['long']['runs']) >= 0.06 > max(timings['short']['runs'])
    assert timings['short']['median'] >= 0.01
    assert timings['busy']['cpu']['min'] >= 0.03 > timings['long']['cpu']['max']
    long = timings['long']
    assert long['min'] <= long['median'] <= long['max'] and long['median'] in long['runs']


def test_ratios_show_a_slower_and_larger_backbone(monkeypatch):
    build = benchmark.backbone.build_backbones

    def ballast(module, args):  # ours sleeps 0.5 s and takes 16 MiB more in every forward
        time.sleep(0.5)
        module.ballast = torch.ones(2**22)

    def slowed(cfg):
        models = build(cfg)
        models[benchmark.OURS].register_forward_pre_hook(ballast)
        return models

    monkeypatch.setattr(benchmark.backbone, 'build_backbones', slowed)
    threads = torch.get_num_threads()
    try:  # one thread: less disturbed by the other processes on a shared machine
        result = benchmark.run_benchmark(
            benchmark.BenchmarkConfig(**dict(TINY, repeats=3, threads=1)))
    finally:
        torch.set_num_threads(threads)
    ours, theirs = result['models'][benchmark.OURS], result['models'][benchmark.MMDET]
    for step in ('train', 'inference'):
        assert ours[f'{step}_s']['min'] >= 0.5
        assert result['ratios'][f'{step}_time'] > 1.0
        assert result['ratios'][f'ours_over_mmdet.ResNetV1d_{step}_time'] > 1.0
    assert ours['train_peak_bytes'] >= 2**24 > theirs['train_peak_bytes']
    assert result['ratios']['train_peak_memory'] > 1.0


def test_cpu_amp_run_records_the_dtype_the_isa_and_onednn():
    cfg = benchmark.BenchmarkConfig(**dict(TINY, amp=True, memory_format='channels_last',
                                           reference='none'))
    result = benchmark.run_benchmark(cfg)
    assert result['config']['amp_dtype'] == 'bfloat16'
    parity = result['parity']  # under the same autocast ours equals mmdet's
    assert parity['eval_max_abs_diff'] == parity['train_max_abs_diff'] == 0
    machine = result['machine']
    assert machine['isa']['capability'] == torch.backends.cpu.get_cpu_capability()
    assert re.fullmatch(r'\d+\.\d+\.\d+', machine['onednn'])  # e.g. 3.12.0
    table = benchmark.format_table(result)
    assert f"({machine['isa']['capability']}, AVX512-BF16" in table


@pytest.mark.parametrize(('changes', 'option', 'value'), [
    (dict(device='tpu'), '--device', "'tpu'"),
    (dict(amp=True, amp_dtype='float16'), '--amp-dtype', "'float16'"),
    (dict(amp=True, amp_dtype='fp8'), '--amp-dtype', "'fp8'"),
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


def test_memory_path_off_is_timed_beside_ours_and_allocates_what_mmdet_allocates(tmp_path):
    """``--memory-path-off``: ours with the memory path off is a fourth model in the same
    interleaved run. Off, its training step allocates byte for byte what MMDetection's ResNeSt
    allocates; on, autograd holds less where the recomputation acts (torch >= 2.2) and
    inference peaks lower (eval BatchNorm written in place)."""
    from resnest_mm.models import memory

    cli = load_cli()
    args = ['--depth', '14', '--size', '64', '--stem-channels', '8', '--base-channels', '8',
            '--repeats', '1', '--warmup', '0', '--flops-size', '0', '--reference', 'none',
            '--memory-path-off', '--out-dir', str(tmp_path), '--name', 'off']
    assert cli.main(args) == 0
    result = json.loads((tmp_path / 'off.json').read_text())
    assert list(result['models']) == [benchmark.OURS, benchmark.MMDET, benchmark.OURS_PLAIN]
    assert result['config']['memory_path_off'] is True
    ours, theirs, plain = (result['models'][name] for name in result['models'])
    for key in ('train_peak_bytes', 'held_bytes'):
        assert plain[key] == theirs[key], key
    ratios = result['ratios']
    assert ratios['memory_path_on_vs_off_held_for_backward'] == (
        ours['held_bytes'] / plain['held_bytes'])
    if memory.HOOKS_VISIBLE:
        assert ratios['memory_path_on_vs_off_held_for_backward'] < 0.9
    else:  # torch 2.1: training recomputes nothing
        assert ratios['memory_path_on_vs_off_held_for_backward'] == 1.0
    assert ratios['memory_path_on_vs_off_inference_peak_memory'] < 1.0
    assert memory.is_enabled()  # the switch is back where it was
