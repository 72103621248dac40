"""``--compile``: inductor-compiled inference of the parts of a detector or segmentor that pay.

:func:`compile_model` replaces the ``forward`` of the model's heavy, shape-regular parts (the
backbone and neck; a segmentor's decode head) by a ``torch.compile`` of it with

- dynamic shapes (``dynamic=True``), so a run over images of many sizes compiles once;
- inductor's freezing (:func:`resnest_mm.compat.inference_compile_settings`): the weights
  become constants, BatchNorm folds into the convolutions and oneDNN gets pre-packed weights;
- inductor's caches in :func:`cache_dir` (``TORCHINDUCTOR_CACHE_DIR``, default
  ``~/.cache/resnest_mm/inductor``), so a second run of the same model starts faster.

Compiling happens at a part's first call (the weights must be loaded by then and must not
change afterwards). The parts keep their modules and state dict keys; :func:`uncompile` gives
the eager forwards back.

Failures, decided this way:

- a torch or machine that cannot compile at all (no C++ compiler, an unsupported Python, a
  broken toolchain) is found before anything runs by :func:`check_compiler`, and the tools stop
  with one line (:class:`CompileUnavailableError`), since the user asked for a compiled run;
- a part the compiler fails on at its first call runs eager from then on, with one warning
  naming the part and the error: the predictions stay right, only that part is not faster.

``tools/test.py --compile`` adds :class:`CompileHook` (``resnest_mm.CompileHook``) to the run.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from torch import nn

from ..compat import has_inductor_freezing, inference_compile_settings
from ..registry import HOOKS

CACHE_ENV = 'TORCHINDUCTOR_CACHE_DIR'
DEFAULT_CACHE_DIR = Path('~/.cache/resnest_mm/inductor')
# The parts compiled by default, where the model has them: the backbone and the neck run on
# the whole padded image with the same ops for every image; a segmentor's decode head too.
# RPN and RoI heads are left eager (see docs/benchmarks.md for what each part gains).
DEFAULT_PARTS = ('backbone', 'neck', 'decode_head')


class CompileUnavailableError(RuntimeError):
    """``torch.compile`` cannot run on this torch or machine."""


def cache_dir() -> Path:
    """Where inductor keeps its compiled kernels and graphs: ``$TORCHINDUCTOR_CACHE_DIR`` if
    set, else ``~/.cache/resnest_mm/inductor``, which this sets as ``$TORCHINDUCTOR_CACHE_DIR``
    (before the first compile) so that the cache outlives ``/tmp``."""
    if not os.environ.get(CACHE_ENV):
        os.environ[CACHE_ENV] = str(DEFAULT_CACHE_DIR.expanduser())
    path = Path(os.environ[CACHE_ENV])
    path.mkdir(parents=True, exist_ok=True)
    return path


def _one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f'{type(error).__name__}: {lines[0] if lines else "(no message)"}'[:300]


def check_compiler() -> None:
    """Compile and run a small function the way :func:`compile_model` compiles the parts.

    Raises:
        CompileUnavailableError: one line naming torch, the error and the way out.
    """
    cache_dir()

    def probe(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(x, w).relu().mean(dim=(2, 3))

    x = torch.arange(2 * 3 * 5 * 6, dtype=torch.float32).reshape(2, 3, 5, 6) / 100
    w = torch.linspace(-1, 1, 4 * 3 * 3 * 3).reshape(4, 3, 3, 3)
    try:
        compiled = torch.compile(probe, dynamic=True)
        with torch.no_grad(), inference_compile_settings():
            got = compiled(x, w)
    except Exception as error:
        raise CompileUnavailableError(
            f'--compile: torch.compile does not work with torch {torch.__version__} on this '
            f'machine ({_one_line(error)}); leave --compile off') from error
    finally:
        _reset_dynamo()
    if not torch.allclose(got, probe(x, w), rtol=1e-4, atol=1e-5):
        raise CompileUnavailableError(
            f'--compile: torch.compile gives wrong results with torch {torch.__version__} on '
            'this machine (a test convolution differs from eager); leave --compile off')


def _reset_dynamo() -> None:
    reset = getattr(getattr(torch, 'compiler', None), 'reset', None)
    (reset or torch._dynamo.reset)()


@dataclass
class CompiledPart:
    """One part's compiled forward, standing in for the eager one with the same arguments.

    Attributes:
        name: the attribute name of the part (``'backbone'``).
        module: the part.
        eager: its eager forward (a bound method).
        first_call_s: seconds of its first call, compiling included (None before it).
        freezing: whether it compiles with inductor's freezing.
        failed: the compile error in one line, if compiling failed (it then runs eager).
    """

    name: str
    module: nn.Module
    eager: Callable
    compiled: Callable = field(repr=False)
    freezing: bool = True
    first_call_s: float | None = None
    failed: str | None = None

    def __call__(self, *args, **kwargs):
        if self.failed is not None:
            return self.eager(*args, **kwargs)
        start = time.perf_counter()
        try:
            with inference_compile_settings(self.freezing):  # read while a call compiles
                out = self.compiled(*args, **kwargs)
        except Exception as error:
            self.failed = _one_line(error)
            warnings.warn(f'--compile: compiling {self.name} failed ({self.failed}); it runs '
                          'eager', RuntimeWarning, stacklevel=2)
            return self.eager(*args, **kwargs)
        if self.first_call_s is None:
            self.first_call_s = time.perf_counter() - start
        return out


@dataclass
class CompileReport:
    """The compiled parts of one model; :meth:`summary` is the line the tools print."""

    parts: list[CompiledPart]
    cache: Path
    dynamic: bool
    freezing: bool

    @property
    def compile_s(self) -> float:
        """Seconds of the parts' first calls so far (compiling and one run each)."""
        return sum(p.first_call_s or 0.0 for p in self.parts)

    def summary(self) -> str:
        """One line: the compile time per part and in all, the settings and the cache."""
        def state(part: CompiledPart) -> str:
            if part.failed:
                return f'{part.name} eager (failed)'
            if part.first_call_s is None:
                return f'{part.name} not called yet'
            return f'{part.name} {part.first_call_s:.1f} s'

        return (f'--compile: compiled in {self.compile_s:.1f} s (first calls: '
                f'{", ".join(state(p) for p in self.parts)}; dynamic shapes '
                f'{"on" if self.dynamic else "off"}, freezing '
                f'{"on" if self.freezing else "off"}; cache {self.cache})')


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if is_model_wrapper(model) else model


def compile_model(model: nn.Module, parts: Iterable[str] | None = None, dynamic: bool = True,
                  freezing: bool = True) -> CompileReport:
    """Compile the inference forward of ``model``'s parts in place (lazily, at first call).

    Args:
        model: a detector or segmentor (or a wrapper of one), in eval mode with its weights.
        parts: attribute names of the parts; None: those of :data:`DEFAULT_PARTS` it has.
            A dotted name (``'roi_head.bbox_head'``) reaches a nested part; ``'.'`` is the
            model itself (a backbone on its own).
        dynamic: dynamic shapes (one compile for all image sizes).
        freezing: inductor's freezing (weights as constants); inference without autograd only.

    Returns:
        The :class:`CompileReport`; its parts fill in their compile times as they are called.

    Raises:
        ValueError: a named part that the model does not have.
    """
    model = _unwrap(model)
    while parts is None and not any(_get(model, n) is not None for n in DEFAULT_PARTS) and \
            isinstance(getattr(model, 'module', None), nn.Module):
        model = model.module  # a test-time-augmentation model wraps the detector
    names = list(parts) if parts is not None else [
        name for name in DEFAULT_PARTS if _get(model, name) is not None]
    if not names:
        raise ValueError(f'--compile: the model ({type(model).__name__}) has none of the '
                         f'parts {", ".join(DEFAULT_PARTS)}')
    freezing = freezing and has_inductor_freezing()
    report = CompileReport([], cache_dir(), dynamic, freezing)
    for name in names:
        module = _get(model, name)
        if not isinstance(module, nn.Module):
            raise ValueError(f'--compile: the model ({type(model).__name__}) has no part '
                             f'{name!r}')
        if isinstance(module.__dict__.get('forward'), CompiledPart):
            report.parts.append(module.__dict__['forward'])  # compiled already
            continue
        eager = module.forward
        part = CompiledPart(name, module, eager, torch.compile(eager, dynamic=dynamic),
                            freezing)
        module.forward = part
        report.parts.append(part)
    return report


def uncompile(model: nn.Module) -> int:
    """Give every compiled part of ``model`` its eager forward back; returns how many."""
    count = 0
    for module in _unwrap(model).modules():
        if isinstance(module.__dict__.get('forward'), CompiledPart):
            del module.forward
            count += 1
    return count


def _get(model: nn.Module, dotted: str):
    if dotted == '.':  # the model itself
        return model
    for attr in dotted.split('.'):
        model = getattr(model, attr, None)
        if model is None:
            return None
    return model


@HOOKS.register_module()
class CompileHook(Hook):
    """Compile the model's parts (:func:`compile_model`) once its weights are loaded, before
    the test loop, and log the compile time after the first test batch.

    Args:
        parts, dynamic, freezing: as :func:`compile_model`.
    """

    priority = 'LOW'  # after the hooks that change the model (channels_last, autocast casts)

    def __init__(self, parts: list[str] | None = None, dynamic: bool = True,
                 freezing: bool = True) -> None:
        self.parts, self.dynamic, self.freezing = parts, dynamic, freezing
        self.report: CompileReport | None = None

    def before_test(self, runner) -> None:
        self.report = compile_model(runner.model, self.parts, self.dynamic, self.freezing)

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if batch_idx == 0 and self.report is not None:
            print_log(self.report.summary(), logger='current')


def add_compile_hook(cfg, parts: list[str] | None = None) -> None:
    """Add :class:`CompileHook` to a test config's ``custom_hooks`` (once)."""
    hooks = list(cfg.get('custom_hooks') or [])
    if all(hook.get('type') != 'resnest_mm.CompileHook' for hook in hooks):
        hook = dict(type='resnest_mm.CompileHook')
        if parts is not None:
            hook['parts'] = list(parts)
        cfg.custom_hooks = [*hooks, hook]
