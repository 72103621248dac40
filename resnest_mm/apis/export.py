"""ONNX export of an mm config's backbone or segmentor, checked against PyTorch
(``tools/export_onnx.py``)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import torch

from ..deploy import SegmentorLogits, check_onnx, export_onnx, fuse_conv_bn
from .build import build_from_config


def export_config(
    config: str | Path, out: str | Path, checkpoint: str | None = None, part: str = 'backbone',
    shapes: Sequence[Sequence[int]] = ((1, 3, 256, 256), (2, 3, 320, 192)), opset: int = 17,
    fuse: bool = False,
) -> list[float]:
    """Export the backbone or the whole segmentor of an mm config to ONNX and check it.

    Args:
        config: mm config file (an mmdet/mmseg model whose backbone is ResNeSt, or a
            backbone-only config ``model = dict(type='resnest_mm.ResNeSt', ...)``).
        out: The ``.onnx`` file to write.
        checkpoint: Weights to load first. Default: None (random initialisation).
        part: ``'backbone'`` (stage outputs ``out0..``) or ``'model'`` (an MMSegmentation
            ``EncoderDecoder``: logits at the input size; detectors export their backbone).
        shapes: Input shapes ``(B, C, H, W)``; the first one is traced, all are checked.
        opset: ONNX opset (>= 17). fuse: fold BatchNorm into convolutions first.

    Returns:
        list[float]: onnxruntime vs PyTorch max absolute difference, one per shape; with
        ``fuse``, PyTorch is the model before folding.
    """
    model = build_from_config(config, checkpoint, part)
    if part == 'model':
        if not (hasattr(model, 'decode_head') and hasattr(model, 'extract_feat')):
            raise ValueError(
                f"part='model' needs an MMSegmentation EncoderDecoder, but {config} builds "
                f"{type(model).__name__}; use part='backbone' for detectors.")
        model = SegmentorLogits(model).eval()
    reference = model
    if fuse:
        model = copy.deepcopy(model)
        fuse_conv_bn(model)
    generator = torch.Generator().manual_seed(0)
    inputs = [torch.randn(tuple(shape), generator=generator) for shape in shapes]
    export_onnx(model, out, inputs[0], opset=opset)
    return check_onnx(out, reference, inputs)
