"""A DeepLabV3 segmentor in the form ``torch.jit.script`` compiles.

MMSegmentation's modules are not scriptable as they are: mmcv's ``ConvModule`` walks a tuple of
layer names and reaches its norm through a name-lookup property, the decode head carries its
losses and sampler, and the segmentor its data preprocessor. :func:`scriptable_segmentor_logits`
builds, for ``SegmentorLogits.__prepare_scriptable__``, a copy made of the inference parts only:
the backbone (which TorchScript compiles as it is) and an ``ASPPHead`` whose
``ConvModule`` s and ``ASPPModule`` are swapped for the forwards below. Copies are shallow and
share the parameters, and ``state_dict`` keys stay those of the original minus the training-only
parts (auxiliary head, losses).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

_HEAD_PARTS = ('image_pool', 'aspp_modules', 'bottleneck', 'dropout', 'conv_seg')


def scriptable_copy(module: nn.Module, cls: type) -> nn.Module:
    """A shallow copy of ``module`` as an instance of ``cls`` with its own child dict, so that
    TorchScript's preparation, which swaps children in place, leaves ``module`` unchanged."""
    scriptable = copy.copy(module)
    scriptable._modules = dict(module._modules)
    scriptable.__class__ = cls
    return scriptable


class ScriptableConvModule(nn.Module):
    """mmcv's ``ConvModule`` (order conv, norm, activation; BN or GN) as TorchScript compiles
    it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if hasattr(self, 'bn'):
            x = self.bn(x)
        elif hasattr(self, 'gn'):
            x = self.gn(x)
        if hasattr(self, 'activate'):
            x = self.activate(x)
        return x


class ScriptableASPPHead(nn.Module):
    """The inference forward of MMSegmentation's ``ASPPHead`` (DeepLabV3).

    Shape:
        - Input: the backbone's list of stage outputs; ``in_index`` picks one ``(B, C, H, W)``.
        - Output: ``(B, num_classes, H, W)`` logits.
    """

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        x = inputs[self.in_index]
        outs = [F.interpolate(self.image_pool(x), size=x.shape[2:], mode='bilinear',
                              align_corners=self.align_corners)]
        for branch in self.aspp_modules:
            outs.append(branch(x))
        feats = self.bottleneck(torch.cat(outs, dim=1))
        if self.dropout is not None:
            feats = self.dropout(feats)
        return self.conv_seg(feats)


class ScriptableSegmentorLogits(nn.Module):
    """``SegmentorLogits`` of a DeepLabV3 as TorchScript compiles it (same input and output)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.segmentor.decode_head(self.segmentor.backbone(x))
        return F.interpolate(logits, size=x.shape[2:], mode='bilinear',
                             align_corners=self.align_corners)


def _unsupported(what: str, value, allowed: str) -> ValueError:
    return ValueError(f'torch.jit.script of a segmentor: {what}={value!r} is not supported; '
                      f'{allowed}.')


def _conv_module(module: nn.Module) -> nn.Module:
    if tuple(module.order) != ('conv', 'norm', 'act') or module.with_explicit_padding:
        raise _unsupported('ConvModule.order', module.order,
                           "expected ('conv', 'norm', 'act') without explicit padding")
    if module.with_norm and module.norm_name not in ('bn', 'gn'):
        raise _unsupported('ConvModule norm', module.norm_name, 'expected BN or GN')
    return scriptable_copy(module, ScriptableConvModule)


def _with_scriptable_children(module: nn.Module) -> nn.Module:
    """``module`` with every ``ConvModule`` below it replaced by a scriptable copy."""
    from mmcv.cnn import ConvModule

    if isinstance(module, ConvModule):
        return _conv_module(module)
    scriptable = scriptable_copy(module, type(module))
    for name, child in module.named_children():
        scriptable._modules[name] = _with_scriptable_children(child)
    return scriptable


def _aspp_head(head: nn.Module) -> nn.Module:
    from mmseg.models.decode_heads import ASPPHead

    if type(head) is not ASPPHead:
        raise _unsupported('decode_head', type(head).__name__, 'expected ASPPHead (DeepLabV3)')
    if head.input_transform is not None:
        raise _unsupported('decode_head.input_transform', head.input_transform, 'expected None')
    scriptable = scriptable_copy(head, ScriptableASPPHead)
    scriptable._modules = {name: m for name, m in head._modules.items() if name in _HEAD_PARTS}
    scriptable._modules['image_pool'] = _with_scriptable_children(head.image_pool)
    scriptable._modules['bottleneck'] = _conv_module(head.bottleneck)
    scriptable._modules['aspp_modules'] = nn.ModuleList(
        [_conv_module(branch) for branch in head.aspp_modules])
    return scriptable


def scriptable_segmentor_logits(logits: nn.Module) -> nn.Module:
    """``SegmentorLogits.__prepare_scriptable__``: see the module docstring."""
    segmentor = logits.segmentor
    if any(isinstance(m, nn.SyncBatchNorm) for m in segmentor.modules()):
        raise ValueError(
            'torch.jit.script: the segmentor has SyncBatchNorm layers, which TorchScript cannot '
            'compile; script SegmentorLogits(mmengine.model.revert_sync_batchnorm(segmentor)).')
    if getattr(segmentor, 'with_neck', False):
        raise _unsupported('neck', type(segmentor.neck).__name__, 'expected none (DeepLabV3)')
    parts = nn.Module()
    parts.backbone = segmentor.backbone
    parts.decode_head = _aspp_head(segmentor.decode_head)
    scriptable = scriptable_copy(logits, ScriptableSegmentorLogits)
    scriptable._modules = {'segmentor': parts}
    return scriptable
