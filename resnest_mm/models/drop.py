"""Regularisers of the residual blocks: DropBlock and stochastic depth (DropPath).

Both are identities in eval mode and at probability 0. The official ResNeSt recipe (the
authors' gluon code, ``resnest.gluon.resnet`` / ``resnest.gluon.dropblock``) puts DropBlock with
``block_size=3`` in stages 3 and 4, after the first norm, after the split attention and after
the last norm of each block, and ramps its probability linearly up to 0.1 during training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def dropblock_gamma(drop_prob: float, block_size: int, height: int, width: int) -> float:
    """Seed rate that drops about ``drop_prob`` of a ``height x width`` map (Ghiasi et al. 2018).

    Seeds are drawn only where a whole ``block_size x block_size`` block fits.
    """
    valid = (height - block_size + 1) * (width - block_size + 1)
    return drop_prob * height * width / (block_size**2 * valid)


class DropBlock2d(nn.Module):
    """Drops contiguous ``block_size x block_size`` regions of each channel and rescales the rest.

    Masks are drawn per sample and channel. The kept activations are scaled by the inverse of the
    kept fraction, so the expected sum of the map is unchanged.

    Args:
        drop_prob (float): Fraction of activations to drop, in ``[0, 1)``. Change it during
            training with :func:`set_dropblock_prob` (or ``resnest_mm.DropBlockScheduleHook``).
        block_size (int): Side of the dropped squares (clipped to the map size). Default: 3.

    Shape:
        - Input: ``(B, C, H, W)``
        - Output: same as the input.
    """

    def __init__(self, drop_prob: float = 0.0, block_size: int = 3) -> None:
        super().__init__()
        self.drop_prob = float(drop_prob)
        self.block_size = block_size

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob}, block_size={self.block_size}'

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = self.keep_mask(x)
        return x * keep * (keep.numel() / keep.sum().clamp(min=1.0))

    def keep_mask(self, x: torch.Tensor) -> torch.Tensor:
        """Random ``{0, 1}`` mask shaped like ``x`` with zeros on the dropped blocks."""
        batch, channels, height, width = x.shape
        size = min(self.block_size, height, width)
        gamma = dropblock_gamma(self.drop_prob, size, height, width)
        # A seed marks the top-left corner of a block; padding by size-1 on every side and
        # max-pooling spreads it over the block and gives back an H x W map.
        seeds = torch.rand(batch, channels, height - size + 1, width - size + 1,
                           device=x.device, dtype=x.dtype) < gamma
        dropped = F.max_pool2d(F.pad(seeds.to(x.dtype), [size - 1] * 4), size, stride=1)
        return 1.0 - dropped


class DropPath(nn.Module):
    """Stochastic depth: zeroes the residual branch of a whole sample with ``drop_prob``.

    Kept samples are scaled by ``1 / (1 - drop_prob)``.

    Args:
        drop_prob (float): Probability of dropping a sample's branch, in ``[0, 1)``.

    Shape:
        - Input: ``(B, *)``
        - Output: same as the input.
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = float(drop_prob)

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob}'

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        keep_prob = 1.0 - self.drop_prob
        shape = [x.size(0)] + [1] * (x.dim() - 1)
        keep = torch.rand(shape, device=x.device, dtype=x.dtype) < keep_prob
        return x * keep.to(x.dtype) / keep_prob


def drop_path_rates(drop_path_rate: float, num_blocks: int) -> list[float]:
    """Linear stochastic-depth rule (as timm): 0 for the first block, ``drop_path_rate`` for the
    last one, evenly spaced in between."""
    if num_blocks == 1:
        return [0.0]
    return [drop_path_rate * i / (num_blocks - 1) for i in range(num_blocks)]


def set_dropblock_prob(model: nn.Module, drop_prob: float) -> int:
    """Set ``drop_prob`` of every :class:`DropBlock2d` in ``model``; returns how many were set."""
    if not 0.0 <= drop_prob < 1.0:
        raise ValueError(f'set_dropblock_prob: drop_prob={drop_prob!r} is invalid; expected a '
                         'float in [0, 1).')
    count = 0
    for module in model.modules():
        if isinstance(module, DropBlock2d):
            module.drop_prob = float(drop_prob)
            count += 1
    return count

