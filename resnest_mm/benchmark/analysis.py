"""Parameters, FLOPs and the ratios of the measured figures (ours over the others)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from .settings import MMDET, OURS, OURS_PLAIN, BenchmarkConfig

# From ../shared/reference/RESULTS.md (official ImageNet release).
PUBLISHED = {
    'resnest50_backbone_params_m': 25.43,
    'resnest50_with_fc_gmacs_224': 5.37,
    'resnest50_with_fc_params_m': 27.48,
}
CLASSIFIER_IN, IMAGENET_CLASSES = 2048, 1000


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


def _figures_over(ours: dict, other: dict, steps: list[str], prefix: str = '') -> dict:
    """Time, CPU time and memory of ``ours`` over ``other``, keys ``prefix + figure``."""
    out = {}
    for step in steps:
        out[f'{prefix}{step}_time'] = ours[f'{step}_s']['median'] / other[f'{step}_s']['median']
    for step in steps:
        out[f'{prefix}{step}_cpu_time'] = (ours[f'{step}_s']['cpu']['median']
                                           / other[f'{step}_s']['cpu']['median'])
    if 'train_peak_bytes' in ours:
        out[f'{prefix}train_peak_memory'] = ours['train_peak_bytes'] / other['train_peak_bytes']
    if ours.get('held_bytes') and other.get('held_bytes'):
        out[f'{prefix}held_for_backward'] = ours['held_bytes'] / other['held_bytes']
    return out


def ratios(results: dict[str, dict]) -> dict:
    """Ours over MMDetection's ResNeSt (time, CPU time, memory), over ours with the memory
    path off (keys ``memory_path_on_vs_off_*``, when measured), and over each reference."""
    ours, theirs = results[OURS], results[MMDET]
    steps = [step for step in ('train', 'inference') if f'{step}_s' in ours]  # inference-only
    out = _figures_over(ours, theirs, steps)
    if OURS_PLAIN in results:
        plain = results[OURS_PLAIN]
        out.update(_figures_over(ours, plain, steps, 'memory_path_on_vs_off_'))
        if plain.get('inference_peak_bytes'):
            out['memory_path_on_vs_off_inference_peak_memory'] = (
                ours['inference_peak_bytes'] / plain['inference_peak_bytes'])
    for ref in (name for name in results if name not in (OURS, MMDET, OURS_PLAIN)):
        resnet = results[ref]
        for step in steps:
            out[f'ours_over_{ref}_{step}_time'] = (
                ours[f'{step}_s']['median'] / resnet[f'{step}_s']['median'])
        if ours.get('flops_at_input') and resnet.get('flops_at_input'):
            out[f'ours_over_{ref}_flops'] = ours['flops_at_input'] / resnet['flops_at_input']
    return out


def published_comparison(results: dict[str, dict], cfg: BenchmarkConfig) -> dict:
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
