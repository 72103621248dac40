"""Random, well-scaled weights, so that compared models compute something non-trivial."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every convolution and norm random, well-scaled weights and statistics, in place.

    Fresh models have unit/zero norm parameters and zero/one running statistics (and zero the
    last norm of each block, ``zero_init_residual``), which would hide wrongly mapped or
    misused norm layers and the split attention from a comparison. The scales keep activations
    of order one through deep stacks, so absolute tolerances stay meaningful. The one
    randomiser of the tests and the benchmark.
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
