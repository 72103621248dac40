"""Deployment: ONNX and TorchScript export, BatchNorm folding, compiled inference (``--compile``).

- :mod:`.export`: :class:`SegmentorLogits` (a tensor-only segmentor), ONNX export and its check;
- :mod:`.scriptable_segmentor`: mmcv's and mmseg's head modules swapped for scriptable ones;
- :mod:`.fuse`: BatchNorm folded into the convolutions before it;
- :mod:`.compile`: inductor compilation for ``tools/test.py``, ``infer.py`` and ``benchmark.py``.
"""

from .compile import (
    CompileHook,
    CompileReport,
    CompileUnavailableError,
    add_compile_hook,
    cache_dir,
    check_compiler,
    compile_model,
    uncompile,
)
from .export import SegmentorLogits, check_onnx, export_onnx, output_names
from .fuse import fuse_conv_bn

__all__ = [
    'CompileHook', 'CompileReport', 'CompileUnavailableError', 'SegmentorLogits',
    'add_compile_hook', 'cache_dir', 'check_compiler', 'check_onnx', 'compile_model',
    'export_onnx', 'fuse_conv_bn', 'output_names', 'uncompile',
]
