"""What ``torch.jit.script`` compiles in place of the mm-style modules.

``torch.jit.script(model)`` first calls ``model.__prepare_scriptable__()`` on every submodule.
ResNeSt, its bottleneck and its split attention answer (through ``scripting.py``, where the
``prepare_*`` functions at the end of this module are registered) with a shallow copy of
themselves whose class is one of the classes below: same submodules under the same names (so
the scripted module has the same ``state_dict`` keys and shares the parameters, as scripting
always does), with forwards TorchScript accepts. The eager modules reach their norms through
properties that look a name up (``getattr(self, self.norm1_name)``), which TorchScript rejects;
here each norm is reached through ``hasattr`` on the names mmcv gives norms (``bn``, ``gn``,
``in``, ``ln`` plus the index), which TorchScript resolves while compiling. Scripted models do
not check their input, do not checkpoint gradients, and return the stage outputs as a list.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .resnest import ResNeSt, ResNeStBottleneck
from .scripting import register_scriptable_copy
from .split_attention import SplitAttentionConv2d, weighted_sum

SCRIPTABLE_NORM_ABBRS = ('bn', 'gn', 'in', 'ln')


def scriptable_copy(module: nn.Module, cls: type, norm_names: tuple[str, ...] = ()) -> nn.Module:
    """A shallow copy of ``module`` as an instance of ``cls`` with its own child dict, so that
    TorchScript's preparation, which swaps children in place, leaves ``module`` unchanged."""
    for attr in norm_names:
        name = getattr(module, attr)
        if name.rstrip('0123456789') not in SCRIPTABLE_NORM_ABBRS:
            raise ValueError(
                f'torch.jit.script: {type(module).__name__}.{attr}={name!r} is invalid; '
                f'norm_cfg must give norm layers named {SCRIPTABLE_NORM_ABBRS} plus an index '
                '(BN, GN, IN or LN) for the backbone to be scripted.')
    scriptable = copy.copy(module)
    scriptable._modules = dict(module._modules)
    scriptable.__class__ = cls
    return scriptable


class IndexedNorms:
    """``_norm0``/``_norm1``/``_norm3``: the module's norm named ``bn``, ``gn``, ``in`` or ``ln``
    plus that index, found by ``hasattr`` (resolved while compiling; a method a module never
    calls is never compiled)."""

    def _norm0(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, 'bn0'):
            return self.bn0(x)
        if hasattr(self, 'gn0'):
            return self.gn0(x)
        if hasattr(self, 'in0'):
            return self.in0(x)
        return self.ln0(x)

    def _norm1(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, 'bn1'):
            return self.bn1(x)
        if hasattr(self, 'gn1'):
            return self.gn1(x)
        if hasattr(self, 'in1'):
            return self.in1(x)
        return self.ln1(x)

    def _norm3(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, 'bn3'):
            return self.bn3(x)
        if hasattr(self, 'gn3'):
            return self.gn3(x)
        if hasattr(self, 'in3'):
            return self.in3(x)
        return self.ln3(x)


class ScriptableSplitAttention(IndexedNorms, SplitAttentionConv2d):
    """:class:`SplitAttentionConv2d` as TorchScript compiles it (see the module docstring)."""

    __jit_unused_properties__ = ['norm0', 'norm1']

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        splits = self._splits(self.relu(self._norm0(self.conv(x))))
        return weighted_sum(splits, self._attention_weights(splits))

    def attention(self, fused: torch.Tensor) -> torch.Tensor:
        gap = self._norm1(self.fc1(F.adaptive_avg_pool2d(fused, 1)))
        return self.rsoftmax(self.fc2(self.relu(gap)))


class ScriptableBottleneck(IndexedNorms, ResNeStBottleneck):
    """:class:`ResNeStBottleneck` as TorchScript compiles it: no gradient checkpointing and
    no rebuilt tensors (``recipe_book`` is Python)."""

    __jit_unused_properties__ = ['norm1', 'norm3', 'is_init']  # is_init: mmengine's BaseModule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._norm1(self.conv1(x))
        if self.dropblock1 is not None:
            out = self.dropblock1(out)
        out = self._split_attention(self.relu(out))
        out = self._norm3(self.conv3(out))
        return self.relu(self._add_shortcut(out, x))


class ScriptableResNeSt(nn.Module):
    """The forward of :class:`ResNeSt` as TorchScript compiles it: a list of stage outputs.

    Not a subclass: ``ResNeSt`` builds its stages in mmengine's ``Sequential``, whose
    properties TorchScript cannot compile; the copy's stages are plain ``nn.Sequential``.
    """

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.stem(x))
        outs: list[torch.Tensor] = []
        x = self.layer1(x)
        if 0 in self.out_indices:
            outs.append(x)
        if hasattr(self, 'layer2'):
            x = self.layer2(x)
            if 1 in self.out_indices:
                outs.append(x)
        if hasattr(self, 'layer3'):
            x = self.layer3(x)
            if 2 in self.out_indices:
                outs.append(x)
        if hasattr(self, 'layer4'):
            x = self.layer4(x)
            if 3 in self.out_indices:
                outs.append(x)
        return outs


@register_scriptable_copy(SplitAttentionConv2d)
def prepare_split_attention(module: SplitAttentionConv2d) -> nn.Module:
    """``SplitAttentionConv2d.__prepare_scriptable__``."""
    return scriptable_copy(module, ScriptableSplitAttention, ('norm0_name', 'norm1_name'))


@register_scriptable_copy(ResNeStBottleneck)
def prepare_bottleneck(block: nn.Module) -> nn.Module:
    """``ResNeStBottleneck.__prepare_scriptable__``."""
    return scriptable_copy(block, ScriptableBottleneck, ('norm1_name', 'norm3_name'))


@register_scriptable_copy(ResNeSt)
def prepare_backbone(backbone: nn.Module) -> nn.Module:
    """``ResNeSt.__prepare_scriptable__``."""
    if any(isinstance(m, nn.SyncBatchNorm) for m in backbone.modules()):
        raise ValueError(
            'torch.jit.script: the backbone has SyncBatchNorm layers (norm_cfg type SyncBN or '
            'resnest_mm.CPUSyncBN), which TorchScript cannot compile; script '
            'mmengine.model.revert_sync_batchnorm(model) instead (BatchNorm, same state_dict).')
    scriptable = scriptable_copy(backbone, ScriptableResNeSt)
    scriptable.out_indices = list(backbone.out_indices)
    for name in backbone.res_layers:
        scriptable._modules[name] = nn.Sequential(*backbone._modules[name])
    return scriptable
