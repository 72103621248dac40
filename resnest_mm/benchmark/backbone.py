"""Backbone mode: ours, MMDetection's ResNeSt with the same weights, and a ResNet reference.

:func:`run_benchmark` builds the three with the same settings, checks that our outputs equal
MMDetection's before anything is timed, times inference and one training step (forward and
backward) of the three interleaved in one process, and measures the memory of each.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict

import torch
from torch import nn

from ..models import ResNeSt, memory
from ..precision import autocast, warn_if_bf16_is_slow
from .analysis import count_flops, count_params, published_comparison, ratios
from .compiled import COMPILED, compiled_copies, compiled_ratios, first_calls, max_abs_diff
from .machine import machine_info
from .memory import allocated_bytes, cpu_span_allocations, peak_memory_bytes
from .settings import (
    CPU_TARGETS,
    MEMORY_FORMATS,
    MMDET,
    OURS,
    OURS_PLAIN,
    REFERENCE,
    SHALLOW_STAGE_BLOCKS,
    BenchmarkConfig,
    RunSettings,
    validate_config,
)
from .timing import time_interleaved
from .weights import randomize_


def _mmdet_class(cls: type, depth: int) -> type:
    """``cls``, or for a shallow depth a subclass with that many of its own bottlenecks."""
    if depth not in SHALLOW_STAGE_BLOCKS:
        return cls
    block = cls.arch_settings[50][0]
    settings = {**cls.arch_settings, depth: (block, SHALLOW_STAGE_BLOCKS[depth])}
    return type(f'{cls.__name__}{depth}', (cls,), {'arch_settings': settings})


class MemoryPathOff(nn.Module):
    """``model`` run with the memory path switched off, for timing it beside the path on.

    Shape: that of ``model``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        with memory.switched(False):  # the backward follows what the forward set up
            return self.model(x)


def build_backbones(cfg: BenchmarkConfig) -> dict[str, nn.Module]:
    """Ours, MMDetection's ResNeSt with the same weights, ours with the memory path off (with
    ``cfg.memory_path_off``), and the ResNet reference (if any)."""
    from mmdet.models import backbones as mmdet_backbones

    common = dict(
        depth=cfg.depth, stem_channels=cfg.resolved_stem_channels,
        base_channels=cfg.base_channels, out_indices=(0, 1, 2, 3),
        frozen_stages=cfg.frozen_stages, norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False, style='pytorch')
    split_attention = dict(radix=2, reduction_factor=4, avg_down_stride=True)
    theirs = _mmdet_class(mmdet_backbones.ResNeSt, cfg.depth)(**common, **split_attention)
    randomize_(theirs, cfg.seed)
    ours = ResNeSt(**common, **split_attention)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    models = {OURS: ours, MMDET: theirs}
    if cfg.memory_path_off:
        models[OURS_PLAIN] = MemoryPathOff(copy.deepcopy(ours))
    if cfg.reference != 'none':
        reference = _mmdet_class(getattr(mmdet_backbones, cfg.reference), cfg.depth)(**common)
        models[REFERENCE.format(cfg.reference)] = randomize_(reference, cfg.seed)
    return models


def _autocast(cfg: RunSettings):
    return autocast(cfg.device, cfg.amp, cfg.amp_dtype)


def _loss(outputs) -> torch.Tensor:
    return sum(out.float().square().mean() for out in outputs)


def inference_step(model: nn.Module, image: torch.Tensor, cfg: BenchmarkConfig):
    """One forward pass in eval mode without autograd."""
    model.eval()
    with torch.no_grad(), _autocast(cfg):
        return model(image)


def training_step(model: nn.Module, image: torch.Tensor, cfg: BenchmarkConfig):
    """One forward and backward pass in train mode, gradients freed first (as optimisers do)."""
    model.train()
    model.zero_grad(set_to_none=True)
    with _autocast(cfg):
        outputs = model(image)
    _loss(outputs).backward()
    return outputs


def compare_outputs(models: dict[str, nn.Module], image: torch.Tensor,
                    cfg: BenchmarkConfig) -> dict:
    """Max abs difference of ours vs MMDetection's ResNeSt, eval and train mode; raises if unequal.

    Tolerance: 1e-5 of the largest output magnitude in fp32 (1e-2 under AMP).
    """
    result = {}
    rel_tol = 1e-2 if cfg.amp else 1e-5
    for mode in ('eval', 'train'):
        outs = {}
        for name in (OURS, MMDET):
            model = models[name]
            model.train(mode == 'train')  # mmdet's ResNet.train returns None
            with torch.no_grad(), _autocast(cfg):
                outs[name] = [o.float() for o in model(image)]
        diff = max((a - b).abs().max().item() for a, b in zip(*outs.values(), strict=True))
        scale = max(o.abs().max().item() for o in outs[MMDET])
        result[f'{mode}_max_abs_diff'] = diff
        result[f'{mode}_output_scale'] = scale
        if not diff <= rel_tol * max(scale, 1.0):
            raise RuntimeError(
                f'benchmark: {OURS} and {MMDET} outputs differ in {mode} mode by {diff:.3g} '
                f'(largest output {scale:.3g}, tolerance {rel_tol:g} of it); timing stopped')
    result['equal'] = True
    return result


def held_for_backward_bytes(model: nn.Module, image: torch.Tensor, cfg: BenchmarkConfig) -> int:
    """Bytes a training-mode forward pass leaves allocated: its outputs and what autograd
    keeps for backward (temporaries are freed by then)."""
    model.train()
    model.zero_grad(set_to_none=True)

    def forward():
        with _autocast(cfg):
            return model(image)

    return allocated_bytes(forward, cfg.device)[1]


def backbone_memory(model: nn.Module, image: torch.Tensor, cfg: BenchmarkConfig) -> dict:
    """``inference_peak_bytes``, ``train_peak_bytes`` and ``held_bytes`` of one model.

    On the CPU all three come from one profiler session: an inference, then a training forward
    pass and its backward; each figure is relative to the bytes allocated when it began.
    """
    if cfg.device == 'cuda':
        return dict(
            inference_peak_bytes=peak_memory_bytes(
                lambda: inference_step(model, image, cfg), cfg.device),
            train_peak_bytes=peak_memory_bytes(
                lambda: training_step(model, image, cfg), cfg.device),
            held_bytes=held_for_backward_bytes(model, image, cfg))

    def run(phase):
        with phase('inference'):
            inference_step(model, image, cfg)
        model.train()
        model.zero_grad(set_to_none=True)
        with phase('forward'), _autocast(cfg):
            outputs = model(image)
        with phase('backward'):
            _loss(outputs).backward()

    figures = cpu_span_allocations(run, dict(
        inference=('inference', 'inference'), train=('forward', 'backward'),
        forward=('forward', 'forward')))
    return dict(inference_peak_bytes=figures['inference'][0],
                train_peak_bytes=figures['train'][0], held_bytes=figures['forward'][1])


def _prepare(models: dict[str, nn.Module], cfg: BenchmarkConfig) -> torch.Tensor:
    fmt = MEMORY_FORMATS[cfg.memory_format]
    for model in models.values():
        model.to(device=cfg.device, memory_format=fmt)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    image = torch.randn(cfg.batch, 3, *cfg.size, generator=gen)
    return image.to(device=cfg.device, memory_format=fmt)


def run_benchmark(cfg: BenchmarkConfig) -> dict:
    """Measure the backbones as ``cfg`` says and return a JSON-serialisable result.

    Returns:
        dict with ``config``, ``machine``, ``parity`` (output comparison), ``models`` (per
        model: params, FLOPs, ``inference_s`` and ``train_s`` summaries, ``train_peak_bytes``,
        ``inference_peak_bytes``, ``held_bytes``), ``ratios`` (ours / MMDetection's ResNeSt
        and ResNeSt / ResNet), ``published`` and ``targets``.
    """
    validate_config(cfg)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    if cfg.amp and cfg.device == 'cpu':
        warn_if_bf16_is_slow()
    models = build_backbones(cfg)
    image = _prepare(models, cfg)
    parity = compare_outputs(models, image, cfg)

    steps: dict[str, Callable[[], object]] = {}
    for name, model in models.items():
        steps[f'{name}|inference'] = lambda m=model: inference_step(m, image, cfg)
        steps[f'{name}|train'] = lambda m=model: training_step(m, image, cfg)
    compiled = {}
    if cfg.compile:
        compiled = _add_compiled_steps(models, image, cfg, steps)
    timings = time_interleaved(steps, cfg.repeats, cfg.warmup, cfg.device)

    results: dict[str, dict] = {}
    for name, model in models.items():
        entry = dict(
            params=count_params(model),
            inference_s=timings[f'{name}|inference'],
            train_s=timings[f'{name}|train'],
            **backbone_memory(model, image, cfg),
        )
        if cfg.flops_size:
            entry['flops_at_flops_size'] = count_flops(
                model, (cfg.flops_size, cfg.flops_size), cfg.device)
        entry['flops_at_input'] = count_flops(model, cfg.size, cfg.device)
        results[name] = entry

    all_ratios = ratios(results)
    if compiled:
        for name, entry in compiled.items():
            entry['inference_s'] = timings[f'{name}|inference']
            if f'{name}|train' in timings:
                entry['train_s'] = timings[f'{name}|train']
                all_ratios['compiled_train_vs_eager_ours'] = (
                    entry['train_s']['median'] / timings[f'{OURS}|train']['median'])
        all_ratios.update(compiled_ratios(
            {name: timings[f'{name}|inference'] for name in [*models, *compiled]}))
    return dict(
        kind='backbone', config=asdict(cfg), machine=machine_info(cfg.device), parity=parity,
        models=results, compiled=compiled, ratios=all_ratios,
        published=published_comparison(results, cfg),
        targets={**CPU_TARGETS, **(COMPILED_TARGETS if compiled else {})})


# Issue 23's target for the compiled backbone (S-50, 2x512x512, CPU, 2 threads).
COMPILED_TARGETS = {'compiled_inference_vs_mmdet_eager': 0.75}


def _add_compiled_steps(models: dict[str, nn.Module], image: torch.Tensor,
                        cfg: BenchmarkConfig, steps: dict) -> dict[str, dict]:
    """Compile copies of ours and MMDetection's ResNeSt, call each once (compiling; timed),
    check their outputs against the eager ones and add their inference to ``steps``."""
    copies = compiled_copies(models, ['.'])
    new_steps = {name: (lambda m=model: inference_step(m, image, cfg))
                 for name, (model, _) in copies.items()}
    first = first_calls(new_steps)
    entries = {}
    for (name, (_, report)), eager in zip(copies.items(), (OURS, MMDET), strict=True):
        diff = max_abs_diff(new_steps[name](), inference_step(models[eager], image, cfg))
        scale = max(o.abs().max().item() for o in inference_step(models[eager], image, cfg))
        if not diff <= 1e-4 * max(scale, 1.0):
            raise RuntimeError(f'benchmark: {name} differs from eager by {diff:.3g} (largest '
                               f'output {scale:.3g}); timing stopped')
        if report.parts[0].failed:
            raise RuntimeError(f'benchmark: compiling {name} failed: {report.parts[0].failed}')
        entries[name] = dict(first_call_s=first[name], max_abs_diff_vs_eager=diff,
                             output_scale=scale, dynamic=report.dynamic,
                             freezing=report.freezing, cache_dir=str(report.cache))
        steps[f'{name}|inference'] = new_steps[name]
    if cfg.compile_train:
        from ..deploy import compile_model

        name = COMPILED.format(OURS)
        model = copy.deepcopy(models[OURS])
        compile_model(model, ['.'], dynamic=False, freezing=False)
        step = lambda m=model: training_step(m, image, cfg)  # noqa: E731
        entries[name]['train_first_call_s'] = first_calls({name: step})[name]
        steps[f'{name}|train'] = step
    return entries
