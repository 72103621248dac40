"""Fold BatchNorm layers into the convolutions before them, for inference.

``y = BN(conv(x))`` in eval mode is an affine map of ``conv(x)``, so the convolution can absorb
it: ``W' = W * gamma / sqrt(var + eps)`` and ``b' = beta + (b - mean) * gamma / sqrt(var + eps)``.
The BN is then replaced by ``nn.Identity``. Folded pairs in a ResNeSt: the stem's three
conv/BN pairs, every block's ``conv1/bn1`` and ``conv3/bn3``, the shortcut's
``downsample.1/downsample.2``, and in the split attention the grouped ``conv/bn0`` and
``fc1/bn1``. mmcv ``ConvModule`` (conv, then norm) in necks and heads is folded too.
Deformable convolutions and non-BN norms (GN, ...) are left as they are.
"""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils.fusion import fuse_conv_bn_eval

# (convolution attribute, attribute holding the name of the norm that follows it)
NAMED_PAIRS = (
    ('conv1', 'norm1_name'),  # ResNeStBottleneck
    ('conv3', 'norm3_name'),  # ResNeStBottleneck
    ('conv', 'norm0_name'),  # SplitAttentionConv2d
    ('fc1', 'norm1_name'),  # SplitAttentionConv2d
    ('conv', 'norm_name'),  # mmcv ConvModule with order ('conv', 'norm', 'act')
)


def _foldable(conv: nn.Module, norm: nn.Module) -> bool:
    return (type(conv) is nn.Conv2d and isinstance(norm, _BatchNorm)
            and norm.track_running_stats and norm.running_mean is not None)


def _fold_named_pairs(module: nn.Module) -> int:
    count = 0
    order = getattr(module, 'order', ('conv', 'norm'))
    for conv_attr, name_attr in NAMED_PAIRS:
        if name_attr == 'norm_name' and tuple(order[:2]) != ('conv', 'norm'):
            continue
        norm_name = getattr(module, name_attr, None)
        conv = getattr(module, conv_attr, None)
        if not isinstance(norm_name, str) or conv is None:
            continue
        norm = getattr(module, norm_name, None)
        if _foldable(conv, norm):
            setattr(module, conv_attr, fuse_conv_bn_eval(conv, norm))
            setattr(module, norm_name, nn.Identity())
            count += 1
    return count


def _fold_sequential(seq: nn.Sequential) -> int:
    count = 0
    names = list(seq._modules)
    for conv_name, norm_name in pairwise(names):
        conv, norm = seq._modules[conv_name], seq._modules[norm_name]
        if _foldable(conv, norm):
            seq._modules[conv_name] = fuse_conv_bn_eval(conv, norm)
            seq._modules[norm_name] = nn.Identity()
            count += 1
    return count


@torch.no_grad()
def fuse_conv_bn(model: nn.Module) -> int:
    """Fold every BatchNorm that directly follows a ``Conv2d`` into it, in place.

    The model is put in eval mode first (folding uses the running statistics); train it no
    further afterwards. Parameter names of the folded layers change (the BNs disappear), so
    load checkpoints before folding.

    Args:
        model (nn.Module): A ResNeSt backbone, or any model containing one.

    Returns:
        int: The number of folded conv/BN pairs.
    """
    model.eval()
    count = 0
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            count += _fold_sequential(module)
        count += _fold_named_pairs(module)
    return count
