"""Random, well-scaled weights, so that compared models compute something non-trivial."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def randomize_(model: nn.Module, seed: int) -> nn.Module:
    """Give every convolution and norm random, well-scaled weights and statistics.

    Fresh models zero the last norm of each block (``zero_init_residual``), which would hide the
    split attention from the output comparison.
    """
    gen = torch.Generator().manual_seed(seed)

    def uniform_(t: torch.Tensor, low: float, high: float) -> None:
        t.copy_(torch.rand(t.shape, generator=gen) * (high - low) + low)

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                bound = (3 / module.weight[0].numel()) ** 0.5
                uniform_(module.weight, -bound, bound)
                if module.bias is not None:
                    uniform_(module.bias, -0.1, 0.1)
            elif isinstance(module, _BatchNorm):
                uniform_(module.weight, 0.5, 1.0)
                uniform_(module.bias, -0.1, 0.1)
                uniform_(module.running_mean, -0.1, 0.1)
                uniform_(module.running_var, 0.5, 1.5)
    return model
