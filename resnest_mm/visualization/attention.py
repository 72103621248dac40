"""Pictures of what a ResNeSt sees: per stage, the feature map and the split-attention weights.

Forward hooks on each stage and on the :class:`RadixSoftmax` of the stage's last block collect
the stage output ``(C, H, W)`` and the attention weights ``(radix, C)`` (softmax over the
radix splits of each channel, or the sigmoid gate when ``radix == 1``). mmengine's
``Visualizer.draw_featmap`` turns them into images: the channel-mean feature map over the
input image, and the weights as a ``radix x C`` heat map (one row per split).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import mmcv
import numpy as np
import torch
from mmengine.visualization import Visualizer

from ..models.resnest import ResNeSt
from ..models.split_attention import RadixSoftmax

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


@dataclass
class StageActivations:
    """What one stage produced for one image."""

    name: str
    features: torch.Tensor  # (C, H, W)
    attention: torch.Tensor  # (radix, C) of the stage's last block
    titles: list[str] = field(default_factory=list)


@torch.no_grad()
def collect_stage_activations(backbone: ResNeSt, image: torch.Tensor) -> list[StageActivations]:
    """Run ``backbone`` (eval mode) on a normalised ``(1, 3, H, W)`` image and collect, for each
    stage, its output and the attention weights of its last block."""
    features: dict[str, torch.Tensor] = {}
    attention: dict[str, torch.Tensor] = {}
    handles = []
    for name in backbone.res_layers:
        stage = getattr(backbone, name)
        softmaxes = [m for m in stage[-1].modules() if isinstance(m, RadixSoftmax)]
        handles.append(stage.register_forward_hook(
            lambda _m, _i, out, name=name: features.__setitem__(name, out[0])))
        handles.append(softmaxes[-1].register_forward_hook(
            lambda _m, _i, out, name=name: attention.__setitem__(name, out[0])))
    was_training = backbone.training
    try:
        backbone.eval()
        backbone(image)
    finally:
        backbone.train(was_training)
        for handle in handles:
            handle.remove()
    return [StageActivations(name, features[name], attention[name])
            for name in backbone.res_layers]


def to_input_tensor(image_rgb: np.ndarray, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """``(H, W, 3)`` uint8 RGB image to a normalised ``(1, 3, H, W)`` float tensor."""
    x = torch.from_numpy(np.ascontiguousarray(image_rgb)).float().permute(2, 0, 1)
    mean = torch.tensor(mean).view(3, 1, 1)
    std = torch.tensor(std).view(3, 1, 1)
    return ((x - mean) / std).unsqueeze(0)


def draw_attention(
    backbone: ResNeSt, image_rgb: np.ndarray, out_file: str | Path | None = None,
    panel_size: int = 256, mean=IMAGENET_MEAN, std=IMAGENET_STD,
) -> tuple[np.ndarray, list[str]]:
    """Draw per stage the feature map (over the image) and the split-attention weights.

    Args:
        backbone (ResNeSt): The model (its mode is restored afterwards).
        image_rgb (np.ndarray): ``(H, W, 3)`` uint8 RGB image.
        out_file (str | Path | None): Where to write the PNG. Default: None (no file).
        panel_size (int): Side of each square panel in pixels. Default: 256.
        mean, std: Normalisation of the input, RGB order. Default: ImageNet's.

    Returns:
        tuple[np.ndarray, list[str]]: The RGB canvas, ``(num_stages * panel_size,
        2 * panel_size, 3)``, and the panel titles in row-major order.
    """
    stages = collect_stage_activations(backbone, to_input_tensor(image_rgb, mean, std))
    shown = mmcv.imresize(image_rgb, (panel_size, panel_size))
    visualizer = Visualizer(name='resnest_mm_attention')
    rows, titles = [], []
    for stage in stages:
        feature = Visualizer.draw_featmap(
            stage.features, shown, channel_reduction='squeeze_mean',
            resize_shape=(panel_size, panel_size))
        weights = Visualizer.draw_featmap(
            stage.attention[None].float(), None, channel_reduction=None, topk=0,
            resize_shape=(panel_size, panel_size), alpha=1.0)
        rows.append(np.concatenate([feature, weights], axis=1))
        titles += [f'{stage.name} features {tuple(stage.features.shape)}',
                   f'{stage.name} attention {tuple(stage.attention.shape)}']
    canvas = np.ascontiguousarray(np.concatenate(rows, axis=0))
    visualizer.set_image(canvas)
    positions = np.array([[col * panel_size + 4, row * panel_size + 4]
                          for row in range(len(stages)) for col in range(2)])
    visualizer.draw_texts(titles, positions, colors='white', font_sizes=8,
                          bboxes=dict(facecolor='black', alpha=0.6, pad=1, edgecolor='none'))
    drawn = visualizer.get_image()
    if out_file is not None:
        Path(out_file).parent.mkdir(parents=True, exist_ok=True)
        mmcv.imwrite(mmcv.rgb2bgr(drawn), str(out_file))
    return drawn, titles
