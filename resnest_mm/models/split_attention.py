"""Split attention: the convolution at the heart of ResNeSt (Zhang et al., 2020).

A grouped 3x3 convolution produces ``radix`` feature-map splits per cardinal group. Their sum
is pooled globally, squeezed through two 1x1 convolutions and turned into one attention weight
per split and channel (softmax across the splits, or a sigmoid gate when ``radix == 1``). The
output is the attention-weighted sum of the splits.

Parameter names follow the official release and MMDetection/MMSegmentation (``conv``, ``bn0``,
``fc1``, ``bn1``, ``fc2``), so their checkpoints load unchanged.
"""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist
import torch.nn.functional as F
from mmcv.cnn import build_conv_layer, build_norm_layer
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from . import memory

# The names mmcv gives norm layers (plus an index) that TorchScript can reach: it cannot look a
# name up at run time, so ``ScriptedNorms`` resolves ``hasattr`` on these while compiling.
SCRIPTABLE_NORM_ABBRS = ('bn', 'gn', 'in', 'ln')


def attention_channels(in_channels: int, radix: int, reduction_factor: int) -> int:
    """Width of the attention bottleneck, as published: ``max(C * radix // r, 32)``."""
    return max(in_channels * radix // reduction_factor, 32)


def weighted_sum(splits: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
    """Attention-weighted sum of the radix splits.

    Args:
        splits (Tensor): ``(B, radix, C, H, W)``.
        attn (Tensor): ``(B, radix, C, 1, 1)``.

    Returns:
        Tensor: ``(B, C, H, W)``, ``sum_r attn[:, r] * splits[:, r]``.
    """
    return (splits * attn).sum(dim=1)


class ScriptedNorms:
    """The norm layers ``{bn,gn,in,ln}{0,1,3}`` as TorchScript reaches them (eager code uses
    the ``norm0``/``norm1``/``norm3`` properties, which look the mmcv name up)."""

    def _scripted_norm0(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, 'bn0'):
            return self.bn0(x)
        if hasattr(self, 'gn0'):
            return self.gn0(x)
        if hasattr(self, 'in0'):
            return self.in0(x)
        return self.ln0(x)

    def _scripted_norm1(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, 'bn1'):
            return self.bn1(x)
        if hasattr(self, 'gn1'):
            return self.gn1(x)
        if hasattr(self, 'in1'):
            return self.in1(x)
        return self.ln1(x)

    def _scripted_norm3(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, 'bn3'):
            return self.bn3(x)
        if hasattr(self, 'gn3'):
            return self.gn3(x)
        if hasattr(self, 'in3'):
            return self.in3(x)
        return self.ln3(x)


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


class SplitAttentionConv2d(ScriptedNorms, nn.Module):
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

    __jit_unused_properties__ = ['norm0', 'norm1']

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # grouped convolution, BN, ReLU: radix splits per cardinal group
        x = self.conv(x)
        if torch.jit.is_scripting():
            x = self.relu(self._scripted_norm0(x))
        else:
            x = memory.norm_act(self.norm0, self.relu, x)
        batch, _, height, width = x.shape
        splits = x.view(batch, self.radix, self.channels, height, width)
        # their sum -> one attention weight per split and channel -> weighted sum
        fused = splits.sum(dim=1)
        attn = self.attention(fused).view(batch, self.radix, self.channels, 1, 1)
        if torch.jit.is_scripting():
            return weighted_sum(splits, attn)
        return memory.weighted_sum(splits, attn, fused, (self.conv, self.norm0, self.relu))

    def attention(self, fused: torch.Tensor) -> torch.Tensor:
        """Attention weights ``(B, radix, channels)`` from the fused splits ``(B, C, H, W)``:
        global average pool, fc1, BN, ReLU, fc2, r-softmax."""
        gap = self.fc1(F.adaptive_avg_pool2d(fused, 1))
        if torch.jit.is_scripting():
            gap = self._scripted_norm1(gap)
        else:
            gap = norm_single_sample(self.norm1, gap)
        return self.rsoftmax(self.fc2(self.relu(gap)))


_warned = False


def _synced_over_processes(norm: nn.Module) -> bool:
    """Whether ``norm`` is a SyncBN that gathers statistics from more than one process."""
    if not (dist.is_available() and dist.is_initialized()):
        return False
    if isinstance(norm, nn.SyncBatchNorm):
        group = norm.process_group if norm.process_group is not None else dist.group.WORLD
        return dist.get_world_size(group) > 1
    return getattr(norm, 'group_size', 1) > 1  # mmcv's MMSyncBN


def needs_running_stats(norm: nn.Module, x: torch.Tensor) -> bool:
    """True when a training BatchNorm would see a single value per channel in ``x``."""
    return (isinstance(norm, _BatchNorm) and norm.training and norm.running_mean is not None
            and x.numel() == x.size(1) and not _synced_over_processes(norm))


def norm_single_sample(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``norm(x)``, but with the running statistics (not updated) where a training BatchNorm
    would see one value per channel: the pooled map of a one-image batch, on which PyTorch
    raises ``Expected more than 1 value per channel when training``. The affine weight and bias
    still learn. A SyncBN averaging over several processes, GN and other norms are left alone.
    Announced once per process."""
    if not needs_running_stats(norm, x):
        return norm(x)
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(
            'ResNeSt split attention: a training batch of one sample gives its BatchNorm a '
            'single value per channel; normalising that pooled map with the running statistics '
            '(not updated) instead. Use 2+ images per process, SyncBN over several processes or '
            'GN to train these statistics.', UserWarning, stacklevel=2)
    return F.batch_norm(x, norm.running_mean, norm.running_var, norm.weight, norm.bias,
                        training=False, momentum=0.0, eps=norm.eps)
