"""Hooks of the CPU mixed-precision and channels_last runs (``tools/train.py``/``test.py``)."""

from __future__ import annotations

import functools

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.structures import BaseDataElement

from ..registry import HOOKS
from .capability import warn_if_bf16_is_slow
from .fp32_ops import cast_ops_to_fp32


def _unwrap(model):
    return model.module if is_model_wrapper(model) else model


def _to_float(value):
    """bf16 tensors (in lists, dicts and mm data samples, nested) as fp32; the rest unchanged."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.dtype == torch.bfloat16 else value
    if isinstance(value, BaseDataElement):
        for key, field in list(value.items()):
            converted = _to_float(field)
            if converted is not field:
                setattr(value, key, converted)
        return value
    if isinstance(value, (list, tuple)):
        return type(value)(_to_float(v) for v in value)
    if isinstance(value, dict):
        return {k: _to_float(v) for k, v in value.items()}
    return value


def _float_outputs(step):
    @functools.wraps(step)
    def wrapper(*args, **kwargs):
        return _to_float(step(*args, **kwargs))

    wrapper._resnest_mm_float_outputs = True
    return wrapper


@HOOKS.register_module()
class CPUAmpHook(Hook):
    """Before the run: the mmcv ops without a bf16 CPU kernel are set to run in fp32 (see
    :mod:`resnest_mm.precision.fp32_ops`), the predictions of ``val_step``/``test_step`` come
    back in fp32 (mmdet's and mmseg's metrics turn them into numpy arrays, which have no
    bfloat16), and one warning is given where the CPU has no bf16 instructions. The autocast
    itself comes from ``CPUAmpOptimWrapper`` (training) and the loops' ``fp16=True`` (test;
    mmengine's autocast is bf16 on the CPU)."""

    priority = 'VERY_HIGH'

    def before_run(self, runner) -> None:
        cast_ops_to_fp32()
        warn_if_bf16_is_slow()
        model = _unwrap(runner.model)
        for name in ('val_step', 'test_step'):
            step = getattr(model, name)
            if not getattr(step, '_resnest_mm_float_outputs', False):
                setattr(model, name, _float_outputs(step))


def _inputs_to_channels_last(module, args, output):
    inputs = output.get('inputs') if isinstance(output, dict) else None
    if isinstance(inputs, torch.Tensor) and inputs.dim() == 4:
        output['inputs'] = inputs.contiguous(memory_format=torch.channels_last)
    return output


@HOOKS.register_module()
class ChannelsLastHook(Hook):
    """Before the run: the model's 4-d weights and the data preprocessor's output images go
    to ``torch.channels_last`` (the same values, stored NHWC), for training and testing."""

    priority = 'VERY_HIGH'

    def before_run(self, runner) -> None:
        model = _unwrap(runner.model)
        model.to(memory_format=torch.channels_last)
        preprocessor = getattr(model, 'data_preprocessor', None)
        if preprocessor is None:
            raise RuntimeError('ChannelsLastHook: the model has no data_preprocessor whose '
                               'output images could be put in channels_last')
        if not getattr(preprocessor, '_resnest_mm_channels_last', False):
            preprocessor.register_forward_hook(_inputs_to_channels_last)
            preprocessor._resnest_mm_channels_last = True
