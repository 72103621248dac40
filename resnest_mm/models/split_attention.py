"""Split attention: the convolution at the heart of ResNeSt (Zhang et al., 2020).

A grouped 3x3 convolution produces ``radix`` feature-map splits per cardinal group. Their sum
is pooled globally, squeezed through two 1x1 convolutions and turned into one attention weight
per split and channel (softmax across the splits, or a sigmoid gate when ``radix == 1``). The
output is the attention-weighted sum of the splits.

Parameter names follow the official release and MMDetection/MMSegmentation (``conv``, ``bn0``,
``fc1``, ``bn1``, ``fc2``), so their checkpoints load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from mmcv.cnn import build_conv_layer, build_norm_layer
from torch import nn
from torch.autograd.function import once_differentiable

from ..compat import is_compiling, is_graph_capture
from .norm import has_forward_hooks, norm_single_sample
from .recompute import norm_relu, rebuild_in_backward, recipe_book
from .scripting import scriptable_copy_of


def attention_channels(in_channels: int, radix: int, reduction_factor: int) -> int:
    """Width of the attention bottleneck, as published: ``max(C * radix // r, 32)``."""
    return max(in_channels * radix // reduction_factor, 32)


class RadixSoftmax(nn.Module):
    """Normalises attention logits across the radix splits of each cardinal group.

    Args:
        radix (int): Number of splits per cardinal group. With 1, a sigmoid gate is used.
        groups (int): Cardinality (number of cardinal groups).

    Shape:
        - Input: ``(B, groups * radix * C, 1, 1)``, the grouped ``fc2`` output, ordered
          (group, radix, channel).
        - Output: ``(B, radix, groups * C)``, ordered as the convolution's splits
          (radix, group, channel).
    """

    def __init__(self, radix: int, groups: int) -> None:
        super().__init__()
        self.radix = radix
        self.groups = groups

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        batch = logits.size(0)
        if self.radix == 1:
            return torch.sigmoid(logits).view(batch, 1, -1)
        logits = logits.view(batch, self.groups, self.radix, -1).transpose(1, 2)
        return F.softmax(logits, dim=1).reshape(batch, self.radix, -1)


class _WeightedSum(torch.autograd.Function):
    """``sum_r attn[:, r] * splits[:, r]`` with a lean backward.

    It saves only its inputs (``splits`` is kept for the ReLU's backward anyway) and writes the
    gradient of ``splits`` into one buffer, where autograd's multiply-then-sum would allocate
    full-size temporaries for each product and each gradient. Not twice differentiable.
    """

    @staticmethod
    def forward(ctx, splits: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(splits, attn)
        return _weighted_sum_no_grad(splits, attn)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        splits, attn = ctx.saved_tensors
        grad_splits = torch.empty_like(splits)
        grad_attn = torch.empty_like(attn) if ctx.needs_input_grad[1] else None
        for r in range(splits.size(1)):
            buffer = grad_splits[:, r]
            if grad_attn is not None:
                torch.mul(grad, splits[:, r], out=buffer)
                grad_attn[:, r] = buffer.sum(dim=(-2, -1), keepdim=True)
            torch.mul(grad, attn[:, r], out=buffer)
        return grad_splits, grad_attn


def _weighted_sum_no_grad(splits: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
    # Products rounded one by one and summed in radix order: the same bits as
    # ``(splits * attn).sum(dim=1)`` without its (B, R, C, H, W) temporary. (addcmul's fused
    # multiply-add rounds differently, which training-mode BatchNorm over tiny maps amplifies.)
    out = splits[:, 0] * attn[:, 0]
    for r in range(1, splits.size(1)):
        out += splits[:, r] * attn[:, r]
    return out


@torch.jit.unused
def _weighted_sum_into(out: torch.Tensor, splits: torch.Tensor,
                       attn: torch.Tensor) -> torch.Tensor:
    """:func:`_weighted_sum_no_grad` written into ``out`` (the splits' sum, no longer needed),
    each product into its split: no allocation, the same roundings in the same order. The
    result has ``out``'s strides, those of MMDetection's ``torch.sum(attens * splits, dim=1)``."""
    torch.mul(splits[:, 0], attn[:, 0], out=out)
    for r in range(1, splits.size(1)):
        out += splits[:, r].mul_(attn[:, r])
    return out


@torch.jit.unused
def _weighted_sum_eager(splits: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
    if torch.jit.is_tracing() or is_compiling():
        # Plain ops export to ONNX and compile without graph breaks.
        return (splits * attn).sum(dim=1)
    if torch.is_grad_enabled() and (splits.requires_grad or attn.requires_grad):
        return _WeightedSum.apply(splits, attn)
    return _weighted_sum_no_grad(splits, attn)


def weighted_sum(splits: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
    """Attention-weighted sum of the radix splits.

    Args:
        splits (Tensor): ``(B, radix, C, H, W)``.
        attn (Tensor): ``(B, radix, C, 1, 1)``.

    Returns:
        Tensor: ``(B, C, H, W)``, ``sum_r attn[:, r] * splits[:, r]``.
    """
    if torch.jit.is_scripting():
        return (splits * attn).sum(dim=1)
    return _weighted_sum_eager(splits, attn)


class SplitAttentionConv2d(nn.Module):
    """Split-attention convolution.

    Args:
        in_channels (int): Channels of the input.
        channels (int): Channels of the output (of each split).
        kernel_size, stride, padding, dilation: As for :class:`torch.nn.Conv2d`.
        groups (int): Cardinality. Default: 1.
        radix (int): Splits per cardinal group; 1 turns the softmax into a sigmoid gate.
            Default: 2.
        reduction_factor (int): Squeeze ratio of the attention bottleneck. Default: 4.
        conv_cfg (dict | None): Config of the split convolution (e.g. a DCN). Default: None.
        norm_cfg (dict): Config of the two norm layers. Default: ``dict(type='BN')``.

    Shape:
        - Input: ``(B, in_channels, H, W)``
        - Output: ``(B, channels, H', W')`` with ``H', W'`` given by the convolution.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        dilation: int = 1,
        groups: int = 1,
        radix: int = 2,
        reduction_factor: int = 4,
        conv_cfg: dict | None = None,
        norm_cfg: dict = dict(type='BN'),
    ) -> None:
        super().__init__()
        inter_channels = attention_channels(in_channels, radix, reduction_factor)
        self.radix = radix
        self.groups = groups
        self.channels = channels
        self.conv = build_conv_layer(
            conv_cfg, in_channels, channels * radix, kernel_size, stride=stride,
            padding=padding, dilation=dilation, groups=groups * radix, bias=False)
        self.norm0_name, norm0 = build_norm_layer(norm_cfg, channels * radix, postfix=0)
        self.add_module(self.norm0_name, norm0)
        self.relu = nn.ReLU(inplace=True)
        self.fc1 = nn.Conv2d(channels, inter_channels, 1, groups=groups)
        self.norm1_name, norm1 = build_norm_layer(norm_cfg, inter_channels, postfix=1)
        self.add_module(self.norm1_name, norm1)
        self.fc2 = nn.Conv2d(inter_channels, channels * radix, 1, groups=groups)
        self.rsoftmax = RadixSoftmax(radix, groups)

    @property
    def norm0(self) -> nn.Module:
        return getattr(self, self.norm0_name)

    @property
    def norm1(self) -> nn.Module:
        return getattr(self, self.norm1_name)

    def __prepare_scriptable__(self) -> nn.Module:
        return scriptable_copy_of(self)  # models/scriptable.py

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In training, backward rebuilds relu(norm0(.)) and the weighted sum (recompute.py).
        with recipe_book() as book:
            splits = self._splits(norm_relu(self.norm0, self.relu, self.conv(x), book))
            fused = splits.sum(dim=1)
            attn = self._per_split(self.attention(fused))
            if self._may_overwrite_splits():
                return _weighted_sum_into(fused, splits, attn)
            out = weighted_sum(splits, attn)
            rebuild_in_backward(book, out, _weighted_sum_no_grad, splits, attn)
            return out

    @torch.jit.unused
    def _may_overwrite_splits(self) -> bool:
        """Without autograd nothing but this forward sees the splits and their sum, unless a
        forward hook on the layers that make them is watching."""
        return (not torch.is_grad_enabled() and not is_graph_capture()
                and not any(has_forward_hooks(m) for m in (self.conv, self.norm0, self.relu)))

    def _splits(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, radix * C, H, W)`` -> the splits ``(B, radix, C, H, W)`` (a view)."""
        batch, _, height, width = x.shape
        return x.view(batch, self.radix, self.channels, height, width)

    def _attention_weights(self, splits: torch.Tensor) -> torch.Tensor:
        """The splits ``(B, radix, C, H, W)`` -> one weight each ``(B, radix, C, 1, 1)``."""
        return self._per_split(self.attention(splits.sum(dim=1)))

    def _per_split(self, attn: torch.Tensor) -> torch.Tensor:
        """``(B, radix, channels)`` -> ``(B, radix, C, 1, 1)``."""
        return attn.view(attn.size(0), self.radix, self.channels, 1, 1)

    def attention(self, fused: torch.Tensor) -> torch.Tensor:
        """Attention weights ``(B, radix, channels)`` from the fused splits ``(B, C, H, W)``."""
        gap = self.fc1(F.adaptive_avg_pool2d(fused, 1))
        if self.training and gap.size(0) == 1:
            gap = self._norm_single_sample(gap)
        else:
            gap = self.norm1(gap)
        return self.rsoftmax(self.fc2(self.relu(gap)))

    @torch.jit.unused
    def _norm_single_sample(self, gap):  # untyped: TorchScript reads string annotations badly
        # A training BatchNorm cannot normalise one value per channel; see models/norm.py.
        return norm_single_sample(self.norm1, gap)
