"""``--compile``: the compiled inference of ours and of MMDetection's / MMSegmentation's model,
timed interleaved with the eager ones, as :mod:`resnest_mm.deploy.compile` compiles them.

Each compiled model is a copy of an eager one (the same weights), compiled the same way for
both codebases; its first call (compiling included) is timed apart, its outputs are checked
against the eager copy's before timing, and the ratios go to the result's ``ratios``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

from .settings import MMDET, OURS

COMPILED = '{} compiled'


def compiled_copies(models: dict[str, nn.Module], parts: Sequence[str] | None,
                    names: Sequence[str] = (OURS, MMDET)) -> dict[str, tuple[nn.Module, object]]:
    """``{'<name> compiled': (copy, report)}`` for each of ``names``: a deep copy in eval mode
    with ``parts`` compiled (None: the default parts; ``['.']``: the whole module's forward)."""
    from ..deploy import check_compiler, compile_model

    check_compiler()
    out = {}
    for name in names:
        model = copy.deepcopy(models[name])
        model.eval()  # mmdet's ResNet.train returns None
        report = compile_model(model, None if parts is None else list(parts))
        out[COMPILED.format(name)] = (model, report)
    return out


def first_calls(steps: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Seconds of one call of each step (for a compiled one: compiling and a run)."""
    seconds = {}
    for name, step in steps.items():
        start = time.perf_counter()
        step()
        seconds[name] = time.perf_counter() - start
    return seconds


def max_abs_diff(a, b) -> float:
    """Largest absolute difference between two (nested lists/tuples of) tensors."""
    if isinstance(a, torch.Tensor):
        return (a.float() - b.float()).abs().max().item() if a.numel() else 0.0
    return max((max_abs_diff(x, y) for x, y in zip(a, b, strict=True)), default=0.0)


def compiled_ratios(timings: dict[str, dict], names: Sequence[str] = (OURS, MMDET),
                    prefix: str = '') -> dict[str, float]:
    """Ours compiled over MMDetection's eager and over its compiled, and compiled over eager
    for each; ``prefix`` names the model kind (``'detector_'``, ``'segmentor_'``)."""
    ours, theirs = names

    def median(name: str) -> float:
        return timings[name]['median']

    ours_c, theirs_c = COMPILED.format(ours), COMPILED.format(theirs)
    codebase = theirs.split('.')[0]
    pairs = {
        f'compiled_{prefix}inference_vs_{codebase}_eager': (ours_c, theirs),
        f'compiled_{prefix}inference_vs_{codebase}_compiled': (ours_c, theirs_c),
        f'compiled_{prefix}inference_vs_eager_ours': (ours_c, ours),
        f'compiled_{prefix}inference_vs_eager_{codebase}': (theirs_c, theirs),
    }
    out = {key: median(a) / median(b) for key, (a, b) in pairs.items()}
    # Process CPU time: far less disturbed than the wall clock on a shared machine.
    out.update({key.replace('inference_vs', 'inference_cpu_vs'):
                timings[a]['cpu']['median'] / timings[b]['cpu']['median']
                for key, (a, b) in pairs.items() if 'cpu' in timings[a]})
    return out


def time_parts(model: nn.Module, run: Callable[[], object], parts: Sequence[str],
               repeats: int, device: str = 'cpu') -> dict[str, dict]:
    """What compiling each part gains: its eager and compiled forward timed interleaved on the
    inputs it gets in ``run()`` (one eager inference of ``model``).

    Returns per part: ``eager_s`` and ``compiled_s`` (summaries), ``ratio`` (compiled over
    eager, medians), ``first_call_s`` and ``max_abs_diff``.
    """
    from ..deploy import compile_model, uncompile
    from ..deploy.compile import _get
    from .timing import time_interleaved

    captured = {}
    handles = []
    for name in parts:
        module = _get(model, name)
        if module is None:
            raise ValueError(f'benchmark: the model has no part {name!r}')
        handles.append(module.register_forward_pre_hook(
            lambda _, args, kwargs, name=name: captured.setdefault(name, (args, kwargs)),
            with_kwargs=True))
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    out = {}
    for name in parts:
        args, kwargs = captured[name]
        module = _get(model, name)
        eager = copy.deepcopy(module)
        eager.eval()
        compiled = copy.deepcopy(module)
        compiled.eval()
        report = compile_model(compiled, ['.'])

        def call(m: nn.Module, args=args, kwargs=kwargs):
            with torch.no_grad():
                return m(*args, **kwargs)

        first = first_calls({name: lambda m=compiled: call(m)})[name]
        if report.parts[0].failed:
            raise RuntimeError(f'benchmark: compiling {name} failed: {report.parts[0].failed}')
        diff = max_abs_diff(call(compiled), call(eager))
        timings = time_interleaved({'eager': lambda m=eager: call(m),
                                    'compiled': lambda m=compiled: call(m)}, repeats, 1, device)
        out[name] = dict(eager_s=timings['eager'], compiled_s=timings['compiled'],
                         ratio=timings['compiled']['median'] / timings['eager']['median'],
                         first_call_s=first, max_abs_diff=diff)
        uncompile(compiled)
    return out
