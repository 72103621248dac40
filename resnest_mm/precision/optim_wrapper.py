"""``resnest_mm.CPUAmpOptimWrapper``: mixed-precision training on the CPU (bfloat16 autocast).

mmengine's ``AmpOptimWrapper`` refuses CPUs (it asserts a CUDA, NPU, MLU or MUSA device) and
scales the loss, which float16 needs and bfloat16, with float32's exponent range, does not.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from mmengine.optim import OptimWrapper

from ..registry import OPTIM_WRAPPERS
from .autocast import amp_dtype


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(OptimWrapper):
    """mmengine's ``OptimWrapper`` whose forward runs under CPU bfloat16 autocast.

    Args:
        dtype (str): the autocast dtype; only ``'bfloat16'`` on the CPU.
        **kwargs: ``OptimWrapper``'s (``optimizer``, ``accumulative_counts``, ``clip_grad``).
    """

    def __init__(self, dtype: str = 'bfloat16', **kwargs) -> None:
        self.cast_dtype = amp_dtype('cpu', dtype)
        super().__init__(**kwargs)

    @contextmanager
    def optim_context(self, model):
        with super().optim_context(model), torch.autocast('cpu', dtype=self.cast_dtype):
            yield
