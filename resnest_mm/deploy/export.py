"""Export of ResNeSt backbones and MMSegmentation segmentors: TorchScript and ONNX.

- ``torch.jit.trace``, ``torch.jit.script``, ``torch.export.export`` and
  ``torch.compile(fullgraph=True)`` work on the backbone as it is (one forward; scripted, it
  returns a list); :class:`SegmentorLogits` of a DeepLabV3 traces, compiles and scripts
  (:mod:`.scriptable_segmentor` swaps mmcv's and mmseg's head modules, not ours).
- ONNX (opset >= 17) goes through the TorchScript-based exporter (``dynamo=False``), with
  dynamic batch, height and width; :func:`check_onnx` compares onnxruntime with PyTorch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..compat import torchscript_onnx_export
from .scriptable_segmentor import scriptable_segmentor_logits


class SegmentorLogits(nn.Module):
    """Tensor-only front of an MMSegmentation ``EncoderDecoder`` for export.

    Runs backbone, neck and decode head and resizes the logits to the input size, as
    ``EncoderDecoder.encode_decode`` does (no data preprocessor: feed normalised images).

    Shape:
        - Input: ``(B, 3, H, W)``
        - Output: ``(B, num_classes, H, W)`` logits.
    """

    def __init__(self, segmentor: nn.Module) -> None:
        super().__init__()
        self.segmentor = segmentor
        self.align_corners = bool(segmentor.decode_head.align_corners)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.segmentor.decode_head(self.segmentor.extract_feat(x))
        return F.interpolate(logits, size=x.shape[2:], mode='bilinear',
                             align_corners=self.align_corners)

    def __prepare_scriptable__(self) -> nn.Module:
        # torch.jit.script(SegmentorLogits(deeplabv3)): see deploy/scriptable_segmentor.py
        return scriptable_segmentor_logits(self)


def output_names(model: nn.Module, example: torch.Tensor) -> list[str]:
    """``out0, out1, ...``: one name per output of ``model(example)``."""
    with torch.no_grad():
        outs = model(example)
    count = len(outs) if isinstance(outs, (tuple, list)) else 1
    return [f'out{i}' for i in range(count)]


def export_onnx(
    model: nn.Module, path: str | Path, example: torch.Tensor, opset: int = 17,
    dynamic: bool = True,
) -> Path:
    """Export ``model`` (eval mode) to ONNX with the TorchScript-based exporter.

    Args:
        model (nn.Module): A backbone, :class:`SegmentorLogits` or any tensor-in module.
        path (str | Path): Output ``.onnx`` file (parent folders are created).
        example (Tensor): An input ``(B, C, H, W)`` used for tracing.
        opset (int): ONNX opset, at least 17. Default: 17.
        dynamic (bool): Make batch, height and width dynamic. Default: True.

    Returns:
        Path: ``path``.
    """
    if opset < 17:
        raise ValueError(f'export_onnx: opset={opset} is invalid; expected 17 or newer.')
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    outputs = output_names(model, example)
    axes = {'input': {0: 'batch', 2: 'height', 3: 'width'}} if dynamic else None
    if dynamic:
        axes.update({name: {0: 'batch', 2: f'{name}_height', 3: f'{name}_width'}
                     for name in outputs})
    with torch.no_grad():
        torchscript_onnx_export(
            model, (example,), str(path), input_names=['input'], output_names=outputs,
            opset_version=opset, dynamic_axes=axes)
    return path


def check_onnx(
    path: str | Path, model: nn.Module, inputs: Sequence[torch.Tensor]
) -> list[float]:
    """Run the ONNX file with onnxruntime (CPU) and PyTorch on each input.

    Returns:
        list[float]: The largest absolute difference over all outputs, one per input.
    """
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(str(path))
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    model = model.eval()
    diffs = []
    for x in inputs:
        with torch.no_grad():
            expected = model(x)
        if isinstance(expected, torch.Tensor):
            expected = [expected]
        actual = session.run(None, {'input': x.numpy()})
        if len(actual) != len(expected):
            raise RuntimeError(f'check_onnx: {path} gives {len(actual)} outputs, PyTorch '
                               f'{len(expected)}.')
        diffs.append(max(float(np.abs(a - e.numpy()).max())
                         for a, e in zip(actual, expected, strict=True)))
    return diffs
