"""ResNeSt (Split-Attention Networks) for MMDetection 3.x and MMSegmentation 1.x.

``import resnest_mm`` (or ``custom_imports=dict(imports=['resnest_mm'])`` in a config)
registers ``resnest_mm.ResNeSt`` (and ``resnest_mm.DropBlockScheduleHook``, the CPU
mixed-precision wrapper and hooks of :mod:`resnest_mm.precision`); it imports
neither mmdet nor mmseg.
"""

from . import precision  # noqa: F401  (registers CPUAmpOptimWrapper, CPUAmpHook, ChannelsLastHook)
from .hooks import DropBlockScheduleHook
from .models import RadixSoftmax, ResNeSt, ResNeStBottleneck, SplitAttentionConv2d
from .registry import MODELS
from .version import __version__

__all__ = [
    'MODELS', 'DropBlockScheduleHook', 'RadixSoftmax', 'ResNeSt', 'ResNeStBottleneck',
    'SplitAttentionConv2d', '__version__',
]
