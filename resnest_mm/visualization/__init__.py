"""Pictures of a ResNeSt: feature maps and split-attention weights (``tools/vis_attention.py``)."""

from .attention import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    StageActivations,
    collect_stage_activations,
    draw_attention,
    to_input_tensor,
)

__all__ = [
    'IMAGENET_MEAN', 'IMAGENET_STD', 'StageActivations', 'collect_stage_activations',
    'draw_attention', 'to_input_tensor',
]
