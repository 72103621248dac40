"""The torch APIs newer than torch 2.1, reached in one place.

resnest_mm supports torch 2.1 to 2.13. Every torch API that appeared after 2.1 is used through
this module, which takes the plain path on an older torch where the API only makes things
faster, and raises :class:`TorchTooOldError` (one line: the feature and the torch it needs)
where a feature cannot work without it.

| here | newer API | since |
| --- | --- | --- |
| :func:`is_compiling` | ``torch.compiler.is_compiling`` | 2.3 (``torch._dynamo`` before) |
| :func:`is_exporting` | ``torch.compiler.is_exporting`` | 2.6 |
| :func:`autocast_enabled` | ``torch.is_autocast_enabled(device_type)`` | 2.4 |
| :func:`cpu_fused_optimizers` | ``fused=True`` for CPU SGD/Adam/AdamW | 2.4 |
| :func:`allowed_globals` | ``torch.serialization.get_safe_globals`` and friends | 2.5 |
| :func:`event_span_ns` | ``KinetoEvent.start_ns`` and ``duration_ns`` (profiler) | 2.2 |
| :func:`torchscript_onnx_export` | ``torch.onnx.export(dynamo=False)`` | 2.5 |
| :func:`export_dim` | ``torch.export.Dim`` (dynamic shapes of ``torch.export``) | 2.2 |
| :func:`inference_compile_settings` | private: inductor's freezing, no duck shapes | checked |
| :func:`require` | any feature with a minimum torch | per feature |
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import re
from collections.abc import Iterable, Iterator

import torch


class TorchTooOldError(RuntimeError):
    """A feature needs a newer torch than the installed one."""


def torch_version(version: str | None = None) -> tuple[int, int]:
    """``(major, minor)`` of ``version`` (default: the installed torch), e.g. ``(2, 1)``."""
    match = re.match(r'(\d+)\.(\d+)', version or torch.__version__)
    if match is None:
        raise ValueError(f'cannot read a torch version from {version!r}')
    return int(match.group(1)), int(match.group(2))


def require(feature: str, minimum: str) -> None:
    """Raise :class:`TorchTooOldError` unless the installed torch is at least ``minimum``."""
    if torch_version() < torch_version(minimum):
        raise TorchTooOldError(
            f'{feature} needs torch >= {minimum}; this is torch {torch.__version__}. '
            f'Install a newer torch (resnest_mm supports 2.1 to 2.13) or leave {feature} off.')


# Resolved once: inside a compiled region dynamo must see a plain call of torch's function
# (a lookup with hasattr there breaks the graph and then answers False).
_compiler = getattr(torch, 'compiler', None)
_is_compiling = getattr(_compiler, 'is_compiling', None) or torch._utils.is_compiling  # < 2.3
_is_exporting = getattr(_compiler, 'is_exporting', None) or _is_compiling  # < 2.6


def is_compiling() -> bool:
    """Whether ``torch.compile`` (or ``torch.export``, which runs dynamo) traces the forward."""
    return _is_compiling()


def is_exporting() -> bool:
    """Whether ``torch.export`` traces the forward (before 2.6 it shows as compiling)."""
    return _is_exporting()


def is_graph_capture() -> bool:
    """Whether a tracer, ``torch.compile`` or ``torch.export`` (whose fake tensors have no
    data) is running the forward rather than eager PyTorch."""
    return torch.jit.is_tracing() or is_compiling() or is_exporting()


def autocast_enabled(device_type: str = 'cpu') -> bool:
    """``torch.is_autocast_enabled(device_type)``; before 2.4 the per-device functions."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no argument and means CUDA
        if device_type == 'cpu':
            return torch.is_autocast_cpu_enabled()
        return torch.is_autocast_enabled()


@functools.cache
def cpu_fused_optimizers() -> bool:
    """Whether this torch has fused CPU kernels for SGD, Adam and AdamW (torch >= 2.4)."""
    param = torch.nn.Parameter(torch.zeros(1))
    try:
        torch.optim.AdamW([param], fused=True)
    except RuntimeError:
        return False
    return True


def has_safe_globals_api() -> bool:
    """Whether ``torch.serialization`` lets code read and set its allow-list (torch >= 2.5)."""
    serialization = torch.serialization
    return all(hasattr(serialization, name) for name in (
        'get_safe_globals', 'add_safe_globals', 'clear_safe_globals'))


@contextlib.contextmanager
def allowed_globals(entries: Iterable) -> Iterator[None]:
    """Within the block, ``torch.load(weights_only=True)`` also accepts ``entries``.

    Unlike ``torch.serialization.safe_globals``, blocks nest: leaving one restores exactly the
    allow-list found on entering it, so an inner block with the same entries (a backbone reading
    its pretrained file during a resumed run, say) does not take them from the outer one.
    Without the API (torch < 2.5) it does nothing; :func:`resnest_mm.pretrained.reading`
    reads such files with its own restricted unpickler there.
    """
    if not has_safe_globals_api():
        yield
        return
    serialization = torch.serialization
    before = list(serialization.get_safe_globals())
    serialization.add_safe_globals(list(entries))
    try:
        yield
    finally:
        serialization.clear_safe_globals()
        serialization.add_safe_globals(before)


def event_span_ns(event) -> tuple[int, int]:
    """``(start, duration)`` in nanoseconds of a ``torch.profiler`` Kineto event."""
    if hasattr(event, 'start_ns'):
        return event.start_ns(), event.duration_ns()
    return event.start_us() * 1000, event.duration_us() * 1000  # torch < 2.2


def torchscript_onnx_export(*args, **kwargs) -> None:
    """``torch.onnx.export`` with the TorchScript-based exporter, which torch >= 2.5 must be
    asked for (``dynamo=False``) and older ones use anyway."""
    if 'dynamo' in inspect.signature(torch.onnx.export).parameters:
        kwargs['dynamo'] = False
    torch.onnx.export(*args, **kwargs)


def export_dim(name: str, min: int, max: int):
    """``torch.export.Dim``: a dynamic dimension for ``torch.export.export`` (torch >= 2.2)."""
    require('torch.export with dynamic shapes', '2.2')
    return torch.export.Dim(name, min=min, max=max)


def inference_compile_settings(freezing: bool = True) -> contextlib.AbstractContextManager:
    """A context in which ``torch.compile`` traces and compiles as ``--compile`` needs it.

    Two private settings, named only here and patched only where this torch has them:

    - inductor's freezing (``torch._inductor.config.freezing``, with ``freezing``): the
      weights become constants of the compiled graph, which lets inductor fold BatchNorm into
      the convolutions and pre-pack the weights for oneDNN. It applies to graphs run without
      autograd; the weights must not change after the first call. Dynamo reads the same flag
      while tracing (to keep the parameters as constants guarded by identity, so that another
      module of the same class compiles anew), so it is patched around the calls that may
      compile: passed as a per-compile option it reaches inductor only, and freezes nothing.
    - no duck shapes (``torch.fx.experimental._config.use_duck_shape``): with them, a first
      image whose height equals its width gives both one symbol, and the first non-square
      image compiles again.

    Without them (an older torch) the compile is plain: unfrozen, or with duck shapes.
    """
    patches = []
    inductor = _inductor_config()
    if freezing and isinstance(getattr(inductor, 'freezing', None), bool):
        patches.append(inductor.patch(freezing=True))
    try:
        from torch.fx.experimental import _config as fx_config
    except ImportError:
        fx_config = None
    if isinstance(getattr(fx_config, 'use_duck_shape', None), bool):
        patches.append(fx_config.patch(use_duck_shape=False))
    stack = contextlib.ExitStack()
    for patch in patches:
        stack.enter_context(patch)
    return stack


def has_inductor_freezing() -> bool:
    """Whether :func:`inference_compile_settings` freezes with this torch."""
    return isinstance(getattr(_inductor_config(), 'freezing', None), bool)


def _inductor_config():
    try:
        from torch._inductor import config
    except ImportError:  # a torch built without inductor: torch.compile reports it
        return None
    return config
