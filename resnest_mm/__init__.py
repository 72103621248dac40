"""ResNeSt (Split-Attention Networks) for MMDetection 3.x and MMSegmentation 1.x.

``import resnest_mm`` (or ``custom_imports=dict(imports=['resnest_mm'])`` in a config)
registers ``resnest_mm.ResNeSt`` (and ``resnest_mm.DropBlockScheduleHook``, the CPU
mixed-precision wrapper and hooks of :mod:`resnest_mm.precision`); it imports
neither mmdet nor mmseg. It also lets weights-only ``torch.load`` read mmengine's training
checkpoints (:func:`resnest_mm.pretrained.allow_mmengine_checkpoints`), so that
``--resume`` of mm's own tools works on torch >= 2.6.
:func:`config_path` finds the configs shipped with it (inside an installed wheel, or in the
checkout).
"""

from . import precision  # noqa: F401  (registers CPUAmpOptimWrapper, CPUAmpHook, ChannelsLastHook)
from .engine import DropBlockScheduleHook
from .models import RadixSoftmax, ResNeSt, ResNeStBottleneck, SplitAttentionConv2d
from .package_files import config_path, tool_path
from .pretrained import allow_mmengine_checkpoints
from .registry import MODELS
from .version import __version__

allow_mmengine_checkpoints()

__all__ = [
    'MODELS', 'DropBlockScheduleHook', 'RadixSoftmax', 'ResNeSt', 'ResNeStBottleneck',
    'SplitAttentionConv2d', '__version__', 'config_path', 'tool_path',
]
