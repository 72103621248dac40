"""Run the mmcv ops that have no bfloat16 CPU kernel in float32 under CPU autocast.

Each op's bf16 inputs are cast to float32 at that op, autocast is off inside it, and its
floating outputs go back to bf16; everything else stays as autocast makes it. Outside CPU
autocast the wrapped ops run unchanged, so fp32 runs are bit-identical with and without the
wrappers. :data:`FP32_OPS` lists the ops that were checked to fail under CPU bf16
(``tests/test_precision.py`` runs each).
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable, Iterable

import torch

from ..compat import autocast_enabled

# (module, function) of each op; the op's module class (RoIAlign, DeformConv2dPack, ...) and
# mmcv's batched_nms look the function up in that module at call time.
FP32_OPS = (
    ('mmcv.ops.roi_align', 'roi_align'),  # "ROIAlign_forward" not implemented for 'BFloat16'
    ('mmcv.ops.nms', 'nms'),  # expected scalar type Float but found BFloat16
    ('mmcv.ops.nms', 'soft_nms'),  # the same
    # runs with bf16 boxes, but shifts each class's boxes by class * (max coordinate + 1)
    # in bf16 first: at 6670 (5 RPN levels of a 1333-pixel image) bf16 steps 32 pixels
    ('mmcv.ops.nms', 'batched_nms'),
    ('mmcv.ops.deform_conv', 'deform_conv2d'),  # "deformable_im2col_cpu" not implemented
    ('mmcv.ops.modulated_deform_conv', 'modulated_deform_conv2d'),  # the same (DCNv2)
)
_MARK = '_resnest_mm_fp32_inputs'
REDUCED = (torch.bfloat16, torch.float16)


def _reduced_dtype(values) -> torch.dtype | None:
    """The first bf16/fp16 dtype among (nested) tensor arguments, if any."""
    for value in values:
        if isinstance(value, torch.Tensor) and value.dtype in REDUCED:
            return value.dtype
        if isinstance(value, (list, tuple)):
            found = _reduced_dtype(value)
            if found is not None:
                return found
    return None


def _cast(value, dtype: torch.dtype, only: tuple[torch.dtype, ...]):
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.dtype in only and value.device.type == 'cpu' else value
    if isinstance(value, (list, tuple)):
        return type(value)(_cast(v, dtype, only) for v in value)
    return value


def fp32_inputs(fn: Callable) -> Callable:
    """``fn``, which under CPU autocast runs in fp32 with autocast off: its bf16/fp16 inputs
    cast to fp32, its floating outputs cast back to the dtype of its first reduced input (so
    that e.g. mmdet's RoI extractor can put the RoI features into its bf16 buffer)."""
    if getattr(fn, _MARK, False):
        return fn

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if not autocast_enabled('cpu'):
            return fn(*args, **kwargs)
        dtype = _reduced_dtype([*args, *kwargs.values()])
        if dtype is None:
            return fn(*args, **kwargs)
        with torch.autocast('cpu', enabled=False):
            out = fn(*_cast(args, torch.float32, REDUCED),
                     **{k: _cast(v, torch.float32, REDUCED) for k, v in kwargs.items()})
        return _cast(out, dtype, (torch.float32,))

    setattr(wrapper, _MARK, True)
    return wrapper


def _owner(module: str, path: str):
    owner = importlib.import_module(module)
    *parents, name = path.split('.')
    for parent in parents:
        owner = getattr(owner, parent)
    return owner, name


def _rebind(old: Callable, new: Callable) -> None:
    """Point every module-level name bound to ``old`` at ``new`` (``from mmcv.ops import
    batched_nms`` in mmdet made such copies when it was imported)."""
    for module in list(sys.modules.values()):
        namespace = getattr(module, '__dict__', None)
        if not isinstance(namespace, dict):
            continue
        for name, value in list(namespace.items()):
            if value is old:
                namespace[name] = new


def cast_ops_to_fp32(ops: Iterable[tuple[str, str]] = FP32_OPS) -> list[str]:
    """Wrap each op with :func:`fp32_inputs` (once; calling again changes nothing).

    A function is replaced wherever a module holds it by name (its own module, where the ops'
    classes and mmcv's ``batched_nms`` look it up, ``mmcv.ops``, and the mmdet/mmseg modules
    that imported it). Returns the ops wrapped by this call.
    """
    wrapped = []
    for module, path in ops:
        owner, name = _owner(module, path)
        op = getattr(owner, name)
        if not getattr(op, _MARK, False):
            _rebind(op, fp32_inputs(op))
            wrapped.append(f'{module}.{path}')
    return wrapped


def restore_ops(ops: Iterable[tuple[str, str]] = FP32_OPS) -> None:
    """Undo :func:`cast_ops_to_fp32`."""
    for module, path in ops:
        owner, name = _owner(module, path)
        op = getattr(owner, name)
        if getattr(op, _MARK, False):
            _rebind(op, op.__wrapped__)
