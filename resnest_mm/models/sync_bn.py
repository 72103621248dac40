"""Synchronised BatchNorm that also runs on the CPU, over any process group (gloo included).

torch's ``nn.SyncBatchNorm`` refuses CPU tensors in a distributed run (``batch_norm_stats`` has
no CPU kernel), so CPU-distributed runs could only fall back to per-process BN. Here the batch
statistics are summed over the processes with differentiable all-reduces: autograd then
gives each process the gradient of the summed loss, as torch's SyncBN does on GPUs.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from mmengine.model import MMDistributedDataParallel
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..registry import MODEL_WRAPPERS, MODELS

# Norm config types that synchronise batch statistics over processes (mmcv's SyncBN, torch's
# SyncBatchNorm, ours).
SYNC_BN_TYPES = ('SyncBN', 'MMSyncBN', 'SyncBatchNorm', 'CPUSyncBN', 'resnest_mm.CPUSyncBN')


def replace_norm_types(node: Any, new_type: str, types: tuple[str, ...] = SYNC_BN_TYPES) -> int:
    """In a config (dicts, lists and tuples, nested), give every dict whose ``type`` is one of
    ``types`` the type ``new_type``, in place: the one norm-type rewriter of the package
    (SyncBN to BN for one process, to ``resnest_mm.CPUSyncBN`` for CPU processes).

    Returns:
        int: How many dicts were changed (those already of ``new_type`` are not counted).
    """
    count = 0
    if isinstance(node, dict):
        if node.get('type') in types and node['type'] != new_type:
            node['type'] = new_type
            count += 1
        for value in node.values():
            count += replace_norm_types(value, new_type, types)
    elif isinstance(node, (list, tuple)):
        for value in node:
            count += replace_norm_types(value, new_type, types)
    return count


class _AllReduceSum(torch.autograd.Function):
    """Sum of a tensor over the processes of a group; its gradient is summed the same way.

    ``torch.distributed.nn.functional.all_reduce`` does the same, but recent torch deprecates
    it with a FutureWarning at every call, and its successor is in a private module.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        tensor = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(tensor, group=group)
        return tensor

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _AllReduceSum.apply(grad, ctx.group), None


def all_reduce_sum(tensor: torch.Tensor, group) -> torch.Tensor:
    """Differentiable sum of ``tensor`` over ``group`` (a new tensor; the input is unchanged)."""
    return _AllReduceSum.apply(tensor, group)


@MODELS.register_module('CPUSyncBN')
class CPUSyncBatchNorm(nn.SyncBatchNorm):
    """SyncBatchNorm whose statistics are also synchronised for CPU tensors.

    In a training forward on the CPU within an initialised process group of more than one
    process, mean and variance are taken over the inputs of all its processes, in two passes
    (sum and count give the mean, then the summed squared deviations give the biased variance),
    and the running statistics are updated as :class:`torch.nn.BatchNorm2d` would update them
    from the whole global batch. Every process must call it, also with an empty batch. Other
    devices use torch's own SyncBN; eval mode, a single process or no process group behave
    exactly as BatchNorm. Being a ``nn.SyncBatchNorm``, it keeps BN's ``state_dict`` keys, mmcv
    names it ``bn`` and mmengine's revert/convert helpers treat it as SyncBN.

    Use it with ``norm_cfg=dict(type='resnest_mm.CPUSyncBN')``. torch's DDP refuses any
    SyncBatchNorm in a CPU model: wrap it in :class:`CPUSyncBNDistributedDataParallel`.

    Args:
        num_features (int): Channels ``C`` of the input.
        eps (float): Added to the variance for stability. Default: 1e-5.
        momentum (float | None): Weight of the batch statistics in the running ones; None for
            a cumulative average. Default: 0.1.
        affine (bool): Learn a per-channel weight and bias. Default: True.
        track_running_stats (bool): Keep running statistics for eval mode. Default: True.
        process_group (ProcessGroup | None): Processes whose statistics are combined; None for
            all of them. Default: None.

    Shape:
        - Input: ``(B, C, *)``
        - Output: same as the input.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if input.device.type != 'cpu':
            return super().forward(input)
        group = self._sync_group()
        if group is None:
            return _BatchNorm.forward(self, input)  # torch's SyncBN would refuse the CPU here
        return self._forward_synced(input, group)

    def _sync_group(self):
        """The process group to synchronise over, or None when the statistics stay local."""
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return None
        group = self.process_group if self.process_group is not None else dist.group.WORLD
        return group if dist.get_world_size(group) > 1 else None

    def _forward_synced(self, x: torch.Tensor, group) -> torch.Tensor:
        self._check_input_dim(x)
        self._check_non_zero_input_channels(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        # Half-precision sums over a whole global batch lose too many digits.
        xs = x.to(torch.promote_types(x.dtype, torch.float32))
        local_count = xs.new_tensor([x.numel() // x.size(1)])
        totals = all_reduce_sum(torch.cat([xs.sum(dims), local_count]), group)
        count = int(totals[-1].item())
        if count == 1:
            raise ValueError('Expected more than 1 value per channel when training, '
                             f'got input size {x.size()}')
        mean = totals[:-1] / max(count, 1)
        centered = xs - mean.view(shape)
        var = all_reduce_sum(centered.square().sum(dims), group) / max(count, 1)
        out = centered * torch.rsqrt(var + self.eps).view(shape)
        if self.weight is not None:
            out = out * self.weight.view(shape)
        if self.bias is not None:  # recent torch can learn a weight without a bias
            out = out + self.bias.view(shape)
        self._update_running_stats(mean.detach(), var.detach(), count)
        return out.to(x.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
        """Running mean and unbiased running variance, updated as BatchNorm does."""
        if not self.track_running_stats:
            return
        self.num_batches_tracked.add_(1)
        if count == 0:  # as BatchNorm with an empty batch: counted, statistics unchanged
            return
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = var * (count / (count - 1))
        self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
        self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var.dtype), alpha=factor)


def convert_to_cpu_sync_bn(module: nn.Module, process_group=None) -> nn.Module:
    """Replace every BatchNorm of ``module`` (not already a SyncBN) by a
    :class:`CPUSyncBatchNorm` holding the same parameters, statistics and modes.

    The CPU counterpart of ``nn.SyncBatchNorm.convert_sync_batchnorm`` (what mmengine's
    ``cfg.sync_bn='torch'`` runs); returns ``module``, or its replacement if it is a BatchNorm.
    """
    if isinstance(module, _BatchNorm) and not isinstance(module, nn.SyncBatchNorm):
        converted = CPUSyncBatchNorm(module.num_features, module.eps, module.momentum,
                                     module.affine, module.track_running_stats, process_group)
        if module.affine:
            with torch.no_grad():
                converted.weight = module.weight
                converted.bias = module.bias
        converted.running_mean = module.running_mean
        converted.running_var = module.running_var
        converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        module._modules[name] = convert_to_cpu_sync_bn(child, process_group)
    return module


@MODEL_WRAPPERS.register_module()
class CPUSyncBNDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's DDP wrapper, accepting :class:`CPUSyncBatchNorm` layers in a CPU model.

    torch's DDP raises ``SyncBatchNorm layers only work with GPU modules`` for a CPU model with
    any SyncBatchNorm; here only torch's own SyncBN layers are refused. Select it with
    ``model_wrapper_cfg=dict(type='CPUSyncBNDistributedDataParallel', device_ids=None)``.

    Args:
        module (nn.Module): The model.
        convert_sync_bn (bool): Turn the model's BatchNorms into :class:`CPUSyncBatchNorm`
            first (:func:`convert_to_cpu_sync_bn`), as mmengine's ``cfg.sync_bn`` does with
            torch's SyncBN on GPUs. Default: False.
        **kwargs: ``MMDistributedDataParallel``'s.
    """

    def __init__(self, module: nn.Module, convert_sync_bn: bool = False, **kwargs) -> None:
        if convert_sync_bn:
            module = convert_to_cpu_sync_bn(module)
        super().__init__(module=module, **kwargs)

    def _passing_sync_batchnorm_handle(self, module: nn.Module) -> None:
        for layer in module.modules():
            if isinstance(layer, nn.SyncBatchNorm) and not isinstance(layer, CPUSyncBatchNorm):
                super()._passing_sync_batchnorm_handle(layer)
