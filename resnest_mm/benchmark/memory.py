"""Bytes allocated while a step runs: the peak and what is left at the end.

On CUDA ``torch.cuda.max_memory_allocated`` during the step. The CPU allocator keeps no such
counter, so on the CPU the peak is the high-water mark of the bytes allocated during the step,
summed in order from ``torch.profiler``'s allocation events (the quantity the CUDA counter
gives, without allocator caching).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..compat import event_span_ns

PHASE_PREFIX = 'benchmark:'


def _cpu_allocations(prof) -> list[tuple[int, int]]:
    """(time ns, bytes) of every CPU allocation (+) and free (-) a profiler recorded, in order."""
    cpu = torch.autograd.DeviceType.CPU
    return sorted((event_span_ns(e)[0], e.nbytes()) for e in prof.profiler.kineto_results.events()
                  if e.name() == '[memory]' and e.device_type() == cpu)


def _window(allocations: list[tuple[int, int]], start: int = 0,
            end: float = float('inf')) -> tuple[int, int]:
    """Peak and final allocated bytes within [start, end], relative to the level at start."""
    current = peak = 0
    for t, nbytes in allocations:
        if start <= t <= end:
            current += nbytes
            peak = max(peak, current)
    return peak, current


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
    return _window(_cpu_allocations(prof))


def peak_memory_bytes(fn: Callable[[], object], device: str) -> int:
    """Peak of the bytes allocated while ``fn`` runs, above what was allocated before."""
    return allocated_bytes(fn, device)[0]


def cpu_span_allocations(run: Callable[[Callable[[str], object]], None],
                         spans: dict[str, tuple[str, str]]) -> dict[str, tuple[int, int]]:
    """Peak and final bytes of spans of named phases, all from one CPU profiler session.

    ``run(phase)`` runs the phases, each inside ``with phase(name):``; ``spans`` maps a figure
    to the phases it runs from and to (``{'train': ('forward', 'backward')}``). Returns
    ``{figure: (peak, final)}``, each relative to the bytes allocated when its span began.
    Profiling is slow to start, hence one session for several figures.
    """
    from torch.profiler import ProfilerActivity, profile, record_function

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run(lambda name: record_function(PHASE_PREFIX + name))
    phases = {e.name()[len(PHASE_PREFIX):]: (event_span_ns(e)[0], sum(event_span_ns(e)))
              for e in prof.profiler.kineto_results.events()
              if e.name().startswith(PHASE_PREFIX)}
    allocations = _cpu_allocations(prof)
    return {name: _window(allocations, phases[first][0], phases[last][1])
            for name, (first, last) in spans.items()}
