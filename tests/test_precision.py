"""CPU mixed precision (bf16 autocast) and channels_last: resnest_mm/precision and the tools."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import pytest
import torch
from helpers import load_tool, randomize_
from mmcv import ops
from mmdet.models import backbones as mmdet_backbones
from tiny import DEEPLABV3, FASTER_RCNN, tiny_detection_options, tiny_segmentation_options

from resnest_mm import ResNeSt, compat, precision
from resnest_mm.apis import (
    build_runner,
    build_test_config,
    build_train_config,
    mmengine_checkpoint_globals,
    prepare_run,
)
from resnest_mm.datasets import make_ade20k, make_coco
from resnest_mm.precision import capability


def bf16_autocast():
    return torch.autocast('cpu', dtype=torch.bfloat16)

SMALL = dict(depth=50, stem_channels=16, base_channels=8, frozen_stages=-1,
             out_indices=(0, 1, 2, 3), radix=2, reduction_factor=4, avg_down_stride=True,
             norm_eval=False)


def _cpuinfo_flags() -> set[str]:
    for line in Path('/proc/cpuinfo').read_text().splitlines():
        if line.startswith('flags'):
            return set(line.split(':', 1)[1].split())
    return set()


def test_slow_bf16_warning_follows_the_cpu_flags(monkeypatch):
    flags = _cpuinfo_flags()
    native = bool({'avx512_bf16', 'amx_bf16'} & flags)
    assert precision.has_bf16_instructions() == native
    monkeypatch.setattr(capability, '_warned', False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        capability.warn_if_bf16_is_slow()
        capability.warn_if_bf16_is_slow()
    slow = [w for w in caught if 'will be slow' in str(w.message)]
    assert len(slow) == (0 if native else 1)  # once per process, only without bf16 instructions


def _pair():
    theirs = randomize_(mmdet_backbones.ResNeSt(**SMALL))
    ours = ResNeSt(**SMALL)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours, theirs


def _step(model, x, amp: bool):
    model.train()
    model.zero_grad(set_to_none=True)
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=amp):
        outs = model(x)
    weights = [torch.linspace(-1, 1, out.numel()).view_as(out) for out in outs]
    sum((out.float() * w).sum() for out, w in zip(outs, weights, strict=True)).backward()
    return [o.float() for o in outs], [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize('channels_last', [False, True], ids=['nchw', 'nhwc'])
def test_bf16_outputs_near_fp32_and_equal_to_mmdet_under_the_same_autocast(channels_last):
    ours, theirs = _pair()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    if channels_last:
        ours, theirs = (m.to(memory_format=torch.channels_last) for m in (ours, theirs))
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():  # eval mode: train-mode BN over batch 2 amplifies any rounding
        fp32 = ours.eval()(x)
        theirs.eval()
        with bf16_autocast():
            bf16, mmdet_bf16 = ours(x), theirs(x)
    for low, high, reference in zip(bf16, fp32, mmdet_bf16, strict=True):
        assert low.dtype == torch.bfloat16
        error = (low.float() - high).abs().max() / high.abs().max()
        assert 0 < error <= 0.03  # bf16 keeps 8 significant bits; 16 blocks deep
        assert torch.equal(low, reference)
    ours_outs, ours_grads = _step(ours, x, amp=True)  # training: outputs and all gradients
    theirs_outs, theirs_grads = _step(theirs, x, amp=True)
    for a, b in zip(ours_outs + ours_grads, theirs_outs + theirs_grads, strict=True):
        assert torch.equal(a, b)


def test_recipes_are_bit_exact_under_bf16():
    model, _ = _pair()
    twin = copy.deepcopy(model)
    x = torch.randn(2, 3, 48, 40, generator=torch.Generator().manual_seed(2))
    lean = _step(model, x, amp=True)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):  # keep everything
        kept = _step(twin, x, amp=True)
    for a, b in zip(lean[0] + lean[1], kept[0] + kept[1], strict=True):
        assert torch.equal(a, b)


def _roi_align(feats):
    rois = torch.tensor([[0, 1.0, 2.0, 20.0, 25.0], [1, 4.0, 4.0, 30.0, 16.0]])
    return ops.RoIAlign((7, 7), 1.0, 2)(feats, rois)


def _boxes(n=40, seed=0):
    gen = torch.Generator().manual_seed(seed)
    corner = torch.rand(n, 2, generator=gen) * 1000
    boxes = torch.cat([corner, corner + 20 + torch.rand(n, 2, generator=gen) * 200], dim=1)
    return boxes, torch.rand(n, generator=gen)


def _deform_conv(cls):
    torch.manual_seed(0)
    conv = cls(8, 8, 3, padding=1)
    with torch.no_grad():  # a non-zero offset, so the deformable path is exercised
        conv.conv_offset.weight.normal_(0, 0.1)
    return conv


OPS = {
    'roi_align': lambda x: _roi_align(x),
    'nms': lambda boxes, scores: ops.nms(boxes, scores, 0.5)[0],
    'soft_nms': lambda boxes, scores: ops.soft_nms(boxes, scores, 0.5)[0],
    'batched_nms': lambda boxes, scores: ops.batched_nms(
        boxes, scores, torch.arange(len(boxes)) % 5, dict(type='nms', iou_threshold=0.5))[0],
    'deform_conv2d': lambda x: _deform_conv(ops.DeformConv2dPack)(x),
    'modulated_deform_conv2d': lambda x: _deform_conv(ops.ModulatedDeformConv2dPack)(x),
}


def _inputs(name):
    if name.endswith('nms'):
        return _boxes()
    return (torch.randn(2, 8, 32, 32, generator=torch.Generator().manual_seed(1)),)


@pytest.mark.parametrize('name', list(OPS))
def test_each_listed_op_fails_under_bf16_and_runs_in_fp32_with_the_wrappers(name):
    op, inputs = OPS[name], _inputs(name)
    low = [t.bfloat16() for t in inputs]
    expected = op(*[t.float() for t in low])  # fp32 on the bf16-rounded inputs
    with bf16_autocast(), pytest.raises((RuntimeError, NotImplementedError),
                                      match=r'BFloat16|Float but found'):
        op(*low)
    fp32 = op(*inputs)
    precision.cast_ops_to_fp32()
    try:
        assert op(*inputs).equal(fp32)  # outside autocast the wrappers change nothing
        with bf16_autocast():
            out = op(*low)
    finally:
        precision.restore_ops()
    assert out.dtype == torch.bfloat16  # back in the caller's dtype
    if 'deform' in name:  # its offset convolution is an ordinary one: bf16 under autocast
        assert (out.float() - expected).abs().max() <= 0.02 * expected.abs().max()
    else:
        torch.testing.assert_close(out, expected.bfloat16(), rtol=0, atol=0)


def test_channels_last_and_amp_reach_the_config_and_the_cli(tmp_path):
    train_cfg = build_train_config(FASTER_RCNN, work_dir=str(tmp_path), amp=True,
                                   channels_last=True)
    assert train_cfg.optim_wrapper.type == 'resnest_mm.CPUAmpOptimWrapper'
    assert 'loss_scale' not in train_cfg.optim_wrapper
    hooks = [hook['type'] for hook in train_cfg.custom_hooks]
    assert hooks.count('resnest_mm.CPUAmpHook') == hooks.count('resnest_mm.ChannelsLastHook') == 1
    checkpoint = tmp_path / 'model.pth'
    checkpoint.write_bytes(b'')
    test_cfg = build_test_config(DEEPLABV3, str(checkpoint), amp=True, channels_last=True)
    assert test_cfg.test_cfg.fp16 is True
    assert {h['type'] for h in test_cfg.custom_hooks} >= {
        'resnest_mm.CPUAmpHook', 'resnest_mm.ChannelsLastHook'}
    for tool in ('train', 'test'):
        module = load_tool(tool)
        argv = [str(FASTER_RCNN)] + ([str(checkpoint)] if tool == 'test' else [])
        args = module.parse_args([*argv, '--amp', '--channels-last'])
        assert args.amp and args.channels_last


def _run(cfg, mode: str):
    """Run ``cfg``; record the dtype and memory format of what the backbone gets and gives."""
    prepare_run(cfg, mode)
    runner = build_runner(cfg)
    seen = []

    def record(module, args, outputs):
        seen.append((args[0].is_contiguous(memory_format=torch.channels_last),
                     module.stem[0].weight.is_contiguous(memory_format=torch.channels_last),
                     outputs[-1].dtype, compat.autocast_enabled('cpu')))

    runner.model.backbone.register_forward_hook(record)
    with mmengine_checkpoint_globals():
        result = runner.train() if mode == 'train' else runner.test()
    return runner, result, seen


@pytest.mark.parametrize('task', ['detector', 'segmentor'])
def test_tiny_model_trains_and_tests_with_cpu_amp_and_channels_last(task, tmp_path):
    if task == 'detector':
        config = FASTER_RCNN
        root = make_coco(tmp_path / 'data', num_train=2, num_val=2, height=64, width=64)
        options = tiny_detection_options(f'{root}/', max_iters=2)
    else:
        config = DEEPLABV3
        root = make_ade20k(tmp_path / 'data', num_train=2, num_val=2, height=64, width=64)
        options = tiny_segmentation_options(f'{root}/', max_iters=2)
    work_dir = str(tmp_path / 'work')
    train = build_train_config(config, work_dir=work_dir, amp=True, channels_last=True,
                               cfg_options=options)
    runner, _, seen = _run(train, 'train')
    assert type(runner.optim_wrapper).__name__ == 'CPUAmpOptimWrapper'
    training = [s for s in seen if s[3]]  # the validation after training runs fp32
    assert len(training) == 2 and all(s == (True, True, torch.bfloat16, True) for s in training)
    assert all(torch.isfinite(p).all() for p in runner.model.parameters())
    checkpoint = sorted((tmp_path / 'work').glob('iter_*.pth'))[-1]
    test = build_test_config(config, str(checkpoint), work_dir=work_dir, amp=True,
                             channels_last=True, cfg_options=options)
    _, metrics, seen = _run(test, 'test')
    assert seen and all(s == (True, True, torch.bfloat16, True) for s in seen)
    key = 'coco/bbox_mAP' if task == 'detector' else 'mIoU'
    assert key in metrics and metrics[key] >= 0
