"""Wall-clock and process CPU time of steps that take turns, and their summaries."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import torch


def sync(device: str) -> None:
    """Wait for the device's queued work (CUDA); nothing on the CPU."""
    if device == 'cuda':
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: str) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of one call."""
    sync(device)
    start, start_cpu = time.perf_counter(), time.process_time()
    fn()
    sync(device)
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
            seconds, cpu_seconds = timed(steps[name], device)
            wall[name].append(seconds)
            cpu[name].append(cpu_seconds)
    return {name: dict(summarize(wall[name]), cpu=summarize(cpu[name])) for name in steps}
