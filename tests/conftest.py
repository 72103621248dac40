"""Shared fixtures and helpers. Tests make their own data and weights; nothing is downloaded."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

# Two cores: keep intra-op threads at two and make runs repeatable.
torch.set_num_threads(min(2, os.cpu_count() or 1))


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter and norm statistic a random, well-scaled value.

    Freshly built models have unit/zero norm parameters and zero/one running statistics, which
    hide wrongly mapped or misused norm layers. Scales keep activations of order one through deep
    stacks, so absolute tolerances stay meaningful.
    """
    gen = torch.Generator().manual_seed(seed)

    def rand(t: torch.Tensor) -> torch.Tensor:
        return torch.rand(t.shape, generator=gen, dtype=t.dtype)

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_((rand(module.weight) * 2 - 1) * (3 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_((rand(module.bias) - 0.5) * 0.2)
            elif isinstance(module, (_BatchNorm, nn.GroupNorm)):
                if module.weight is not None:
                    module.weight.copy_(0.5 + rand(module.weight) * 0.5)
                    module.bias.copy_((rand(module.bias) - 0.5) * 0.2)
                if isinstance(module, _BatchNorm) and module.running_mean is not None:
                    module.running_mean.copy_((rand(module.running_mean) - 0.5) * 0.2)
                    module.running_var.copy_(0.5 + rand(module.running_var))
    return model


def max_abs_diff(a, b) -> float:
    """Largest absolute difference between two tensors or two equal-length tuples of tensors."""
    if isinstance(a, torch.Tensor):
        a, b = (a,), (b,)
    assert len(a) == len(b), f'{len(a)} outputs vs {len(b)}'
    for x, y in zip(a, b, strict=True):
        assert x.shape == y.shape, f'shape {tuple(x.shape)} vs {tuple(y.shape)}'
    return max((x - y).abs().max().item() for x, y in zip(a, b, strict=True))



def official_stage_outputs(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """layer1..layer4 outputs of a model in the official ResNeSt layout (the authors' package)."""
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    outs = []
    for name in ('layer1', 'layer2', 'layer3', 'layer4'):
        x = getattr(model, name)(x)
        outs.append(x)
    return tuple(outs)


@pytest.fixture
def image() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
