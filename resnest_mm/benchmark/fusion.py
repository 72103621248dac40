"""Inference time with and without BatchNorm folding (``tools/benchmark.py --fuse``)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..deploy import fuse_conv_bn
from ..models.resnest import ResNeSt
from .timing import time_interleaved
from .weights import randomize_


def benchmark_fusion(
    depth: int = 50, stem_channels: int = 64, base_channels: int = 64, batch: int = 1,
    size: tuple[int, int] = (224, 224), repeats: int = 7, warmup: int = 1,
) -> dict:
    """Inference time of a randomly initialised ResNeSt with and without BatchNorm folding.

    Timed with ``resnest_mm.benchmark.time_interleaved`` (runs taking turns; wall clock and
    process CPU time). Returns ``{'bn': summary, 'fused': summary, 'pairs': n,
    'max_abs_diff': d, 'speedup_wall': m, 'speedup_cpu': c}`` (speed-ups of the medians).
    """
    model = randomize_(ResNeSt(depth=depth, stem_channels=stem_channels,
                               base_channels=base_channels), 0).eval()
    fused = copy.deepcopy(model)
    pairs = fuse_conv_bn(fused)
    image = torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = max(float((a - b).abs().max()) for a, b in zip(fused(image), model(image),
                                                              strict=True))

    def step(m: nn.Module):
        with torch.no_grad():
            return m(image)

    timings = time_interleaved({'bn': lambda: step(model), 'fused': lambda: step(fused)},
                               repeats, warmup, 'cpu')
    return dict(
        timings, pairs=pairs, max_abs_diff=diff,
        speedup_wall=timings['bn']['median'] / timings['fused']['median'],
        speedup_cpu=timings['bn']['cpu']['median'] / timings['fused']['cpu']['median'])
