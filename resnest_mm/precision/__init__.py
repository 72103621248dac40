"""Mixed precision and memory format on the CPU: bfloat16 autocast for training
(``resnest_mm.CPUAmpOptimWrapper``) and testing, the mmcv ops without a bf16 CPU kernel run in
fp32 (``resnest_mm.CPUAmpHook``), channels_last models and inputs (``resnest_mm.ChannelsLastHook``),
and what the CPU offers (:func:`cpu_isa`)."""

from .autocast import AMP_DTYPES, amp_dtype, autocast
from .capability import cpu_isa, has_bf16_instructions, onednn_version, warn_if_bf16_is_slow
from .fp32_ops import FP32_OPS, cast_ops_to_fp32, fp32_inputs, restore_ops
from .hooks import ChannelsLastHook, CPUAmpHook
from .optim_wrapper import CPUAmpOptimWrapper

__all__ = [
    'AMP_DTYPES', 'FP32_OPS', 'CPUAmpHook', 'CPUAmpOptimWrapper', 'ChannelsLastHook', 'amp_dtype',
    'autocast', 'cast_ops_to_fp32', 'cpu_isa', 'fp32_inputs', 'has_bf16_instructions',
    'onednn_version', 'restore_ops', 'warn_if_bf16_is_slow',
]
