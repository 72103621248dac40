"""Speed, memory and size of resnest_mm's ResNeSt next to MMDetection's ResNeSt and ResNet.

:func:`run_benchmark` builds three backbones with the same settings: ours, MMDetection's own
``ResNeSt`` holding the same (randomised) weights, whose outputs are checked equal to ours before
anything is timed, and MMDetection's ``ResNetV1d`` (or ``ResNet``) of the same depth as the
FLOP-proportional reference. It times inference and one training step (forward and backward) of
the three interleaved in one process, after warm-up, and reports the median and spread of
several repeats, the peak memory of a training step, parameters and FLOPs (mmengine's
analysis tools) beside the published figures. :func:`run_detector_benchmark` does the same for
one Faster R-CNN training iteration and one inference, our config against MMDetection's.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` during the step. The CPU allocator
keeps no such counter, so on the CPU the peak is the high-water mark of the bytes allocated
during the step, summed in order from ``torch.profiler``'s allocation events (the quantity the
CUDA counter gives, without allocator caching). Beside it, "held": the bytes a training-mode
forward pass leaves allocated, i.e. its outputs plus everything autograd keeps for backward.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .models import ResNeSt

# From ../shared/reference/RESULTS.md (official ImageNet release).
PUBLISHED = {
    'resnest50_backbone_params_m': 25.43,
    'resnest50_with_fc_gmacs_224': 5.37,
    'resnest50_with_fc_params_m': 27.48,
}
# The targets (ours / MMDetection's ResNeSt) for CPU, 2 threads, S-50, batch 2, 512x512.
CPU_TARGETS = {'train_time': 0.85, 'inference_time': 0.9, 'train_peak_memory': 0.8}
MEMORY_FORMATS = {'contiguous': torch.contiguous_format, 'channels_last': torch.channels_last}
REFERENCES = ('ResNetV1d', 'ResNet', 'none')
MMDET_RESNEST_DEPTHS = (50, 101, 152, 200)
# Shallow variants for quick runs: MMDetection's own block classes, one or two per stage.
SHALLOW_STAGE_BLOCKS = {14: (1, 1, 1, 1), 26: (2, 2, 2, 2)}
DEPTHS = tuple(SHALLOW_STAGE_BLOCKS) + MMDET_RESNEST_DEPTHS
OURS, MMDET, REFERENCE = 'resnest_mm.ResNeSt', 'mmdet.ResNeSt', 'mmdet.{}'
CLASSIFIER_IN, IMAGENET_CLASSES = 2048, 1000


@dataclass
class RunSettings:
    """How the measurements run (shared by the backbone and the detector modes).

    Args:
        batch: Images per batch.
        size: Input height and width.
        device: ``'cpu'`` or ``'cuda'``.
        amp: float16 autocast (CUDA only); fp32 otherwise.
        memory_format: ``'contiguous'`` or ``'channels_last'`` (inputs and weights).
        threads: ``torch.set_num_threads`` value; None leaves it as it is.
        repeats: Timed repeats of each measurement (median and spread are reported).
        warmup: Untimed runs of each model before timing.
        seed: Seed of the random weights and input.
    """

    batch: int = 2
    size: tuple[int, int] = (512, 512)
    device: str = 'cpu'
    amp: bool = False
    memory_format: str = 'contiguous'
    threads: int | None = 2
    repeats: int = 5
    warmup: int = 1
    seed: int = 0


@dataclass
class BenchmarkConfig(RunSettings):
    """What to measure on the backbones; the :class:`RunSettings` and:

    Args:
        depth: ResNeSt depth: MMDetection's 50, 101, 152, 200, or 14 / 26 (its own bottlenecks,
            one / two per stage) for quick runs.
        stem_channels: Deep-stem width; None: 64 for depth 50, else 128 (the published nets).
        base_channels: Width of the first stage (64 as published; smaller for smoke runs).
        frozen_stages: As in the backbones; 1 is the detection recipe.
        reference: MMDetection ResNet class timed as the FLOP reference, or ``'none'``.
        flops_size: Square input size of the FLOP count compared with the published figure.
    """

    depth: int = 50
    stem_channels: int | None = None
    base_channels: int = 64
    frozen_stages: int = 1
    reference: str = 'ResNetV1d'
    flops_size: int | None = 224

    @property
    def resolved_stem_channels(self) -> int:
        if self.stem_channels is not None:
            return self.stem_channels
        return 64 if self.depth == 50 else 128


def _invalid(option: str, value, allowed: str) -> ValueError:
    return ValueError(f'benchmark: --{option.replace("_", "-")}={value!r} is invalid; {allowed}')


def validate_run_settings(cfg: RunSettings) -> None:
    """Raise ``ValueError`` naming the option, its value and what is allowed."""
    if cfg.device not in ('cpu', 'cuda'):
        raise _invalid('device', cfg.device, "allowed: 'cpu', 'cuda'")
    if cfg.device == 'cuda' and not torch.cuda.is_available():
        raise _invalid('device', cfg.device,
                       'CUDA is not available here (torch.cuda.is_available() is False); use cpu')
    if cfg.amp and cfg.device != 'cuda':
        raise _invalid('amp', cfg.amp, 'AMP (float16 autocast) is measured on --device cuda only; '
                       'the CPU runs fp32')
    if cfg.memory_format not in MEMORY_FORMATS:
        raise _invalid('memory_format', cfg.memory_format, f'allowed: {", ".join(MEMORY_FORMATS)}')
    positive = dict(batch=cfg.batch, repeats=cfg.repeats)
    if cfg.threads is not None:
        positive['threads'] = cfg.threads
    for name, value in positive.items():
        if not isinstance(value, int) or value < 1:
            raise _invalid(name, value, 'allowed: an integer >= 1')
    if not isinstance(cfg.warmup, int) or cfg.warmup < 0:
        raise _invalid('warmup', cfg.warmup, 'allowed: an integer >= 0')
    if len(cfg.size) != 2 or min(cfg.size) < 32:
        raise _invalid('size', cfg.size, 'allowed: height and width of at least 32 pixels')


def validate_config(cfg: BenchmarkConfig) -> None:
    """:func:`validate_run_settings`, then the backbone options."""
    validate_run_settings(cfg)
    if cfg.depth not in DEPTHS:
        raise _invalid('depth', cfg.depth, f'allowed: {DEPTHS} (MMDetection\'s ResNeSt depths '
                       'and two shallow variants of it)')
    if cfg.reference not in REFERENCES:
        raise _invalid('reference', cfg.reference, f'allowed: {", ".join(REFERENCES)}')
    if cfg.reference != 'none' and cfg.depth == 200:
        raise _invalid('reference', cfg.reference,
                       f'MMDetection\'s ResNet has no depth {cfg.depth}; use --reference none')
    if not isinstance(cfg.base_channels, int) or cfg.base_channels < 1:
        raise _invalid('base_channels', cfg.base_channels, 'allowed: an integer >= 1')
    if not -1 <= cfg.frozen_stages <= 4:
        raise _invalid('frozen_stages', cfg.frozen_stages, 'allowed: -1 to 4')
    if cfg.stem_channels is not None and (cfg.stem_channels < 2 or cfg.stem_channels % 2):
        raise _invalid('stem_channels', cfg.stem_channels, 'allowed: an even integer >= 2')


def randomize_(model: nn.Module, seed: int) -> nn.Module:
    """Give every convolution and norm random, well-scaled weights and statistics.

    Fresh models zero the last norm of each block (``zero_init_residual``), which would hide the
    split attention from the output comparison.
    """
    gen = torch.Generator().manual_seed(seed)

    def uniform_(t: torch.Tensor, low: float, high: float) -> None:
        t.copy_(torch.rand(t.shape, generator=gen) * (high - low) + low)

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                bound = (3 / module.weight[0].numel()) ** 0.5
                uniform_(module.weight, -bound, bound)
                if module.bias is not None:
                    uniform_(module.bias, -0.1, 0.1)
            elif isinstance(module, _BatchNorm):
                uniform_(module.weight, 0.5, 1.0)
                uniform_(module.bias, -0.1, 0.1)
                uniform_(module.running_mean, -0.1, 0.1)
                uniform_(module.running_var, 0.5, 1.5)
    return model


def _mmdet_class(cls: type, depth: int) -> type:
    """``cls``, or for a shallow depth a subclass with that many of its own bottlenecks."""
    if depth not in SHALLOW_STAGE_BLOCKS:
        return cls
    block = cls.arch_settings[50][0]
    settings = {**cls.arch_settings, depth: (block, SHALLOW_STAGE_BLOCKS[depth])}
    return type(f'{cls.__name__}{depth}', (cls,), {'arch_settings': settings})


def build_backbones(cfg: BenchmarkConfig) -> dict[str, nn.Module]:
    """Ours, MMDetection's ResNeSt with the same weights, and the ResNet reference (if any)."""
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
    if cfg.reference != 'none':
        reference = _mmdet_class(getattr(mmdet_backbones, cfg.reference), cfg.depth)(**common)
        models[REFERENCE.format(cfg.reference)] = randomize_(reference, cfg.seed)
    return models


def _sync(device: str) -> None:
    if device == 'cuda':
        torch.cuda.synchronize()


def _autocast(cfg: BenchmarkConfig):
    if cfg.amp:
        return torch.autocast('cuda', dtype=torch.float16)
    return nullcontext()


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


def _timed(fn: Callable[[], object], device: str) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of one call."""
    _sync(device)
    start, start_cpu = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return time.perf_counter() - start, time.process_time() - start_cpu


def summarize(samples: Sequence[float]) -> dict:
    """Median, min, max and the relative spread ``(max - min) / median`` of timings (seconds)."""
    median = statistics.median(samples)
    return dict(median=median, min=min(samples), max=max(samples),
                spread=(max(samples) - min(samples)) / median if median else 0.0,
                runs=list(samples))


def time_interleaved(steps: dict[str, Callable[[], object]], repeats: int, warmup: int,
                     device: str) -> dict[str, dict]:
    """Time each step ``repeats`` times, taking turns (order rotated every round) after warm-up.

    Returns per step the wall-clock summary (see :func:`summarize`) with the process CPU-time
    summary under ``'cpu'``: on a shared machine the CPU time is far less disturbed by other
    processes than the wall clock (it still counts the threads' spin-waiting).
    """
    for step in steps.values():
        for _ in range(warmup):
            step()
    wall: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for i in range(repeats):
        for name in names[i % len(names):] + names[:i % len(names)]:
            seconds, cpu_seconds = _timed(steps[name], device)
            wall[name].append(seconds)
            cpu[name].append(cpu_seconds)
    return {name: dict(summarize(wall[name]), cpu=summarize(cpu[name])) for name in steps}


def allocated_bytes(fn: Callable[[], object], device: str) -> tuple[int, int]:
    """Peak and final bytes allocated while ``fn`` runs, above what was allocated before.

    The final count includes what ``fn`` returns (still referenced when it is measured): for a
    training-mode forward pass, the outputs and everything autograd holds for backward.
    """
    if device == 'cuda':
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        result = fn()
        torch.cuda.synchronize()
        final = torch.cuda.memory_allocated() - base
        del result
        return torch.cuda.max_memory_allocated() - base, final
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    del result
    cpu = torch.autograd.DeviceType.CPU
    events = sorted(
        (e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
        if e.name() == '[memory]' and e.device_type() == cpu)
    current = peak = 0
    for _, nbytes in events:
        current += nbytes
        peak = max(peak, current)
    return peak, current


def peak_memory_bytes(fn: Callable[[], object], device: str) -> int:
    """Peak of the bytes allocated while ``fn`` runs, above what was allocated before."""
    return allocated_bytes(fn, device)[0]


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

    On the CPU all three come from one profiler session (profiling is slow to start): an
    inference, then a training forward pass and its backward, told apart by
    ``record_function`` markers; each figure is relative to the bytes allocated when its phase
    began.
    """
    if cfg.device == 'cuda':
        return dict(
            inference_peak_bytes=peak_memory_bytes(
                lambda: inference_step(model, image, cfg), cfg.device),
            train_peak_bytes=peak_memory_bytes(
                lambda: training_step(model, image, cfg), cfg.device),
            held_bytes=held_for_backward_bytes(model, image, cfg))
    from torch.profiler import ProfilerActivity, profile, record_function

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        with record_function('benchmark:inference'):
            inference_step(model, image, cfg)
        model.train()
        model.zero_grad(set_to_none=True)
        with record_function('benchmark:forward'):
            outputs = model(image)
        with record_function('benchmark:backward'):
            _loss(outputs).backward()
        del outputs
    events = list(prof.profiler.kineto_results.events())
    phases = {e.name(): (e.start_ns(), e.start_ns() + e.duration_ns()) for e in events
              if e.name().startswith('benchmark:')}
    memory = sorted((e.start_ns(), e.nbytes()) for e in events
                    if e.name() == '[memory]' and e.device_type() == torch.autograd.DeviceType.CPU)

    def window(start: int, end: int) -> tuple[int, int]:
        """Peak and final allocated bytes within [start, end], relative to the level at start."""
        current = peak = 0
        for t, nbytes in memory:
            if start <= t <= end:
                current += nbytes
                peak = max(peak, current)
        return peak, current

    inference = phases['benchmark:inference']
    forward, backward = phases['benchmark:forward'], phases['benchmark:backward']
    return dict(
        inference_peak_bytes=window(*inference)[0],
        train_peak_bytes=window(forward[0], backward[1])[0],
        held_bytes=window(*forward)[1])


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, size: tuple[int, int], device: str) -> int:
    """Multiply-accumulates of one forward pass of a single image (mmengine's FlopAnalyzer)."""
    from mmengine.analysis import FlopAnalyzer

    model = copy.deepcopy(model)
    model.eval()
    image = torch.zeros(1, 3, *size, device=device)
    analyzer = FlopAnalyzer(model, (image,))
    analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return int(analyzer.total())


def machine_info(device: str) -> dict:
    """CPU model, cores, load, torch version and threads (and the GPU name on CUDA)."""
    info = dict(cpu=_cpu_model(), cores=os.cpu_count(), torch=torch.__version__,
                threads=torch.get_num_threads(), python=platform.python_version())
    if hasattr(os, 'getloadavg'):
        info['load_average'] = [round(x, 2) for x in os.getloadavg()]
    if device == 'cuda':
        info['gpu'] = torch.cuda.get_device_name()
    return info


def _cpu_model() -> str:
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown'


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
    models = build_backbones(cfg)
    image = _prepare(models, cfg)
    parity = compare_outputs(models, image, cfg)

    steps: dict[str, Callable[[], object]] = {}
    for name, model in models.items():
        steps[f'{name}|inference'] = lambda m=model: inference_step(m, image, cfg)
        steps[f'{name}|train'] = lambda m=model: training_step(m, image, cfg)
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

    return dict(
        kind='backbone', config=asdict(cfg), machine=machine_info(cfg.device), parity=parity,
        models=results, ratios=_ratios(results), published=_published(results, cfg),
        targets=CPU_TARGETS)


def _ratios(results: dict[str, dict]) -> dict:
    ours, theirs = results[OURS], results[MMDET]
    ratios = dict(
        train_time=ours['train_s']['median'] / theirs['train_s']['median'],
        inference_time=ours['inference_s']['median'] / theirs['inference_s']['median'],
        train_cpu_time=ours['train_s']['cpu']['median'] / theirs['train_s']['cpu']['median'],
        inference_cpu_time=(ours['inference_s']['cpu']['median']
                            / theirs['inference_s']['cpu']['median']),
        train_peak_memory=ours['train_peak_bytes'] / theirs['train_peak_bytes'],
    )
    if ours.get('held_bytes') and theirs.get('held_bytes'):
        ratios['held_for_backward'] = ours['held_bytes'] / theirs['held_bytes']
    references = [name for name in results if name not in (OURS, MMDET)]
    for ref in references:
        resnet = results[ref]
        ratios[f'ours_over_{ref}_train_time'] = (
            ours['train_s']['median'] / resnet['train_s']['median'])
        ratios[f'ours_over_{ref}_inference_time'] = (
            ours['inference_s']['median'] / resnet['inference_s']['median'])
        if ours.get('flops_at_input') and resnet.get('flops_at_input'):
            ratios[f'ours_over_{ref}_flops'] = ours['flops_at_input'] / resnet['flops_at_input']
    return ratios


def _published(results: dict[str, dict], cfg: BenchmarkConfig) -> dict:
    """Our params/MACs beside the published ResNeSt-50 figures (only comparable for S-50)."""
    comparable = (cfg.depth == 50 and cfg.resolved_stem_channels == 64
                  and cfg.base_channels == 64 and cfg.flops_size == 224)
    ours = results[OURS]
    fc_params = CLASSIFIER_IN * IMAGENET_CLASSES + IMAGENET_CLASSES
    entry = dict(comparable=comparable, **PUBLISHED,
                 ours_backbone_params_m=ours['params'] / 1e6,
                 ours_with_fc_params_m=(ours['params'] + fc_params) / 1e6)
    if 'flops_at_flops_size' in ours:
        entry['ours_with_fc_gmacs_at_flops_size'] = (
            ours['flops_at_flops_size'] + CLASSIFIER_IN * IMAGENET_CLASSES) / 1e9
    return entry


# --------------------------------------------------------------------------- detector mode


@dataclass
class DetectorBenchmarkConfig(RunSettings):
    """One Faster R-CNN training iteration and one inference: our config vs MMDetection's; the
    :class:`RunSettings` (3 repeats by default: an iteration takes seconds) and:

    Args:
        ours: Our config file.
        theirs: MMDetection's config (``mmdet::`` prefix allowed).
        boxes: Ground-truth boxes per synthetic image.
    """

    repeats: int = 3
    ours: str = 'configs/faster_rcnn_resnest50_fpn.py'
    theirs: str = 'mmdet::resnest/faster-rcnn_s50_fpn_syncbn-backbone+head_ms-range-1x_coco.py'
    boxes: int = 3


def validate_detector_config(cfg: DetectorBenchmarkConfig) -> None:
    """:func:`validate_run_settings`, then the config file and ``boxes``."""
    validate_run_settings(cfg)
    if not Path(cfg.ours).is_file():
        raise _invalid('config', cfg.ours, 'no such config file')
    if cfg.boxes < 1:
        raise _invalid('boxes', cfg.boxes, 'allowed: an integer >= 1')


def _load_config(path: str):
    """Load a config; ``mmdet::x.py`` goes through ``_base_`` inheritance, which resolves it."""
    from mmengine.config import Config

    if '::' not in path:
        return Config.fromfile(path)
    import tempfile

    with tempfile.NamedTemporaryFile('w', suffix='.py', delete=False) as f:
        f.write(f'_base_ = {path!r}\n')
    try:
        return Config.fromfile(f.name)
    finally:
        os.unlink(f.name)


def _replace_sync_bn(node):
    """SyncBN -> BN everywhere in a config (single process, CPU) and no pretrained download."""
    if isinstance(node, dict):
        if node.get('type') == 'SyncBN':
            node['type'] = 'BN'
        for key, value in list(node.items()):
            if key == 'init_cfg' and isinstance(value, dict) and value.get('type') == 'Pretrained':
                node[key] = None
            else:
                _replace_sync_bn(value)
    elif isinstance(node, list):
        for value in node:
            _replace_sync_bn(value)


def build_detectors(cfg: DetectorBenchmarkConfig) -> dict[str, nn.Module]:
    """Both detectors (SyncBN as BN, no download), MMDetection's random weights copied to ours."""
    import mmdet.models  # noqa: F401  (registers the detector parts)
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmengine.registry import init_default_scope

    init_default_scope('mmdet')
    import resnest_mm  # noqa: F401

    models = {}
    for name, path in ((OURS, cfg.ours), (MMDET, cfg.theirs)):
        model_cfg = copy.deepcopy(_load_config(path).model)  # a ConfigDict: mmdet reads attributes
        _replace_sync_bn(model_cfg)
        model_cfg['backbone']['init_cfg'] = None
        models[name] = MMDET_MODELS.build(model_cfg)
    randomize_(models[MMDET], cfg.seed)
    models[OURS].load_state_dict(models[MMDET].state_dict(), strict=True)
    return models


def synthetic_detection_batch(cfg: DetectorBenchmarkConfig, num_classes: int) -> dict:
    """Random images with random boxes and labels, as a data loader would give them."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    gen = torch.Generator().manual_seed(cfg.seed)
    height, width = cfg.size
    inputs, samples = [], []
    for _ in range(cfg.batch):
        inputs.append((torch.rand(3, height, width, generator=gen) * 255).to(torch.uint8))
        corner = torch.rand(cfg.boxes, 2, generator=gen) * torch.tensor([width, height]) * 0.6
        extent = (torch.rand(cfg.boxes, 2, generator=gen) * 0.3 + 0.1) * torch.tensor(
            [width, height])
        sample = DetDataSample(metainfo=dict(
            img_shape=(height, width), ori_shape=(height, width), pad_shape=(height, width),
            scale_factor=(1.0, 1.0), batch_input_shape=(height, width)))
        sample.gt_instances = InstanceData(
            bboxes=torch.cat([corner, corner + extent], dim=1),
            labels=torch.randint(num_classes, (cfg.boxes,), generator=gen))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def _detector_steps(model: nn.Module, batch: dict, cfg: DetectorBenchmarkConfig):
    fmt = MEMORY_FORMATS[cfg.memory_format]
    data = model.data_preprocessor(copy.deepcopy(batch), training=True)
    inputs = data['inputs'].to(memory_format=fmt)
    samples = data['data_samples']
    autocast = (lambda: torch.autocast('cuda', dtype=torch.float16)) if cfg.amp else nullcontext

    def train():
        model.train()
        model.zero_grad(set_to_none=True)
        torch.manual_seed(cfg.seed)  # the same RoI sampling for both detectors
        with autocast():
            losses = model(inputs, samples, mode='loss')
        loss, _ = model.parse_losses(losses)
        loss.backward()
        return loss

    def predict():
        model.eval()
        with torch.no_grad(), autocast():
            return model(inputs, samples, mode='predict')

    return train, predict, inputs


def run_detector_benchmark(cfg: DetectorBenchmarkConfig) -> dict:
    """Time one Faster R-CNN training iteration and one inference for both configs.

    Equality is checked first: the backbone features (eval mode) and the training loss for the
    same RoI sampling seed.
    """
    validate_detector_config(cfg)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    models = build_detectors(cfg)
    fmt = MEMORY_FORMATS[cfg.memory_format]
    steps: dict[str, Callable[[], object]] = {}
    losses, feats = {}, {}
    for name, model in models.items():
        model.to(device=cfg.device, memory_format=fmt)
        num_classes = model.roi_head.bbox_head.num_classes
        batch = synthetic_detection_batch(cfg, num_classes)
        train, predict, inputs = _detector_steps(model, batch, cfg)
        model.eval()
        with torch.no_grad():
            feats[name] = model.extract_feat(inputs)
        losses[name] = train().item()
        steps[f'{name}|train'], steps[f'{name}|inference'] = train, predict
    feat_diff = max((a - b).abs().max().item()
                    for a, b in zip(feats[OURS], feats[MMDET], strict=True))
    scale = max(f.abs().max().item() for f in feats[MMDET])
    tol = 1e-2 if cfg.amp else 1e-5
    loss_diff = abs(losses[OURS] - losses[MMDET])
    if not (feat_diff <= tol * max(scale, 1.0) and loss_diff <= tol * max(abs(losses[MMDET]), 1)):
        raise RuntimeError(
            f'benchmark: detectors differ (features by {feat_diff:.3g} of {scale:.3g}, '
            f'losses {losses[OURS]:.6g} vs {losses[MMDET]:.6g}); timing stopped')
    timings = time_interleaved(steps, cfg.repeats, cfg.warmup, cfg.device)
    results = {}
    for name, model in models.items():
        results[name] = dict(
            params=count_params(model),
            inference_s=timings[f'{name}|inference'], train_s=timings[f'{name}|train'],
            train_peak_bytes=peak_memory_bytes(steps[f'{name}|train'], cfg.device),
            inference_peak_bytes=peak_memory_bytes(steps[f'{name}|inference'], cfg.device))
    parity = dict(feature_max_abs_diff=feat_diff, feature_scale=scale, loss_ours=losses[OURS],
                  loss_mmdet=losses[MMDET], equal=True)
    return dict(kind='detector', config=asdict(cfg), machine=machine_info(cfg.device),
                parity=parity, models=results, ratios=_ratios(results))


# --------------------------------------------------------------------------- reporting


def format_table(result: dict) -> str:
    """A plain-text table of the result: one row per model, then the ratios."""
    header = ['model', 'inference ms (min-max)', 'train ms (min-max)', 'inference CPU ms',
              'train CPU ms', 'train peak MiB', 'held MiB', 'params M', 'GMACs']
    rows = [header]

    def ms(stats: dict) -> str:
        return (f"{stats['median'] * 1e3:.0f} "
                f"({stats['min'] * 1e3:.0f}-{stats['max'] * 1e3:.0f})")

    for name, entry in result['models'].items():
        inf, train = entry['inference_s'], entry['train_s']
        flops = entry.get('flops_at_input')
        rows.append([
            name, ms(inf), ms(train), ms(inf['cpu']), ms(train['cpu']),
            f"{entry['train_peak_bytes'] / 2**20:.0f}",
            f"{entry['held_bytes'] / 2**20:.0f}" if 'held_bytes' in entry else '-',
            f"{entry['params'] / 1e6:.2f}",
            f'{flops / 1e9:.2f}' if flops else '-',
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ['  '.join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
             for row in rows]
    lines.insert(1, '  '.join('-' * w for w in widths))
    lines.append('')
    for key, value in result['ratios'].items():
        target = result.get('targets', {}).get(key)
        suffix = f'  (target <= {target})' if target else ''
        lines.append(f'{key}: {value:.3f}{suffix}')
    published = result.get('published')
    if published:
        lines.append(
            f"params: ours {published['ours_backbone_params_m']:.2f} M backbone "
            f"(published S-50 {published['resnest50_backbone_params_m']} M)")
        if 'ours_with_fc_gmacs_at_flops_size' in published:
            lines.append(
                f"GMACs with fc at {result['config']['flops_size']}: ours "
                f"{published['ours_with_fc_gmacs_at_flops_size']:.2f} "
                f"(published S-50 {published['resnest50_with_fc_gmacs_224']})"
                + ('' if published['comparable'] else '  [settings differ from S-50]'))
    parity = result['parity']
    lines.append('outputs equal before timing: ' + ', '.join(
        f'{k}={v:.3g}' for k, v in parity.items() if isinstance(v, float)))
    return '\n'.join(lines)


def write_json(result: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str))
    return path


def draw_chart(result: dict, path: str | Path) -> Path:
    """Bar chart (PNG): inference time, training time and peak training memory per model."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    names = list(result['models'])
    panels = [
        ('inference (ms)', [result['models'][n]['inference_s'] for n in names], 1e3),
        ('training step (ms)', [result['models'][n]['train_s'] for n in names], 1e3),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    colors = ['tab:green', 'tab:orange', 'tab:gray', 'tab:blue'][:len(names)]
    for ax, (title, stats, scale) in zip(axes[:2], panels, strict=True):
        medians = [s['median'] * scale for s in stats]
        errors = [[(s['median'] - s['min']) * scale for s in stats],
                  [(s['max'] - s['median']) * scale for s in stats]]
        ax.bar(range(len(names)), medians, yerr=errors, capsize=4, color=colors)
        ax.set_title(f'{title}, median (min-max)')
    memory = [result['models'][n]['train_peak_bytes'] / 2**20 for n in names]
    axes[2].bar(range(len(names)), memory, color=colors)
    axes[2].set_title('peak training memory (MiB)')
    for ax in axes:
        ax.set_xticks(range(len(names)), [n.replace('.', '.\n', 1) for n in names], fontsize=8)
    c = result['config']
    fig.suptitle(f"{result['kind']}: batch {c['batch']}, {c['size'][0]}x{c['size'][1]}, "
                 f"{c['device']}{' AMP' if c['amp'] else ' fp32'}, {c['memory_format']}, "
                 f"{result['machine']['threads']} threads")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
