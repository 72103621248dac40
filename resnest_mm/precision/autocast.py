"""The autocast of a device: bfloat16 on the CPU, float16 (or bfloat16) on CUDA."""

from __future__ import annotations

from contextlib import nullcontext

import torch

AMP_DTYPES = {'float16': torch.float16, 'bfloat16': torch.bfloat16}
DEFAULT_AMP_DTYPE = {'cpu': 'bfloat16', 'cuda': 'float16'}


def amp_dtype(device: str, dtype: str | None = None) -> torch.dtype:
    """The autocast dtype of ``device``: ``dtype`` if given, else bf16 on CPU, fp16 on CUDA.

    The CPU autocast runs bfloat16 only (no float16 kernels; bf16 needs no loss scaling).
    """
    name = dtype or DEFAULT_AMP_DTYPE[device]
    if name not in AMP_DTYPES:
        raise ValueError(f'amp dtype {name!r} is invalid; allowed: {", ".join(AMP_DTYPES)}')
    if device == 'cpu' and name != 'bfloat16':
        raise ValueError(f'amp dtype {name!r} is invalid on the CPU; allowed: bfloat16')
    return AMP_DTYPES[name]


def autocast(device: str, enabled: bool = True, dtype: str | None = None):
    """``torch.autocast`` of ``device`` in its AMP dtype, or a no-op when not ``enabled``."""
    if not enabled:
        return nullcontext()
    return torch.autocast(device, dtype=amp_dtype(device, dtype))
