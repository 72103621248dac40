"""Norm helpers: an eval-mode BatchNorm written in place, and the attention's pooled map when a
training batch holds a single sample.

Without autograd, an eval-mode BatchNorm on the CPU can write its output into its input's
buffer (:func:`batch_norm_in_place`): the same kernel, so the same bits, and one full-size
allocation fewer. On the CPU a fresh buffer of a few MiB costs page faults that take as long as
the normalisation itself (about 15 % of an S-50 inference is kernel time spent on them).

The split attention normalises a globally pooled ``(B, C, 1, 1)`` map. With one image per
process, BatchNorm in training mode sees one value per channel and PyTorch raises
``Expected more than 1 value per channel when training``. Here that case normalises with the
layer's running statistics (as in eval mode) and leaves them untouched; the affine weight and
bias still learn. A SyncBN that averages over several processes has more than one value and is
left alone, as are GroupNorm and any other norm. The fallback is announced once per process.
"""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as module_globals
from torch.nn.modules.batchnorm import _BatchNorm

from ..compat import is_graph_capture

_warned = False


def has_forward_hooks(module: nn.Module) -> bool:
    """Whether a forward (pre-)hook, its own or a global one, would see ``module`` run."""
    return bool(module._forward_hooks or module._forward_pre_hooks
                or getattr(module_globals, '_global_forward_hooks', None)
                or getattr(module_globals, '_global_forward_pre_hooks', None))


def can_norm_in_place(norm: nn.Module, x: torch.Tensor) -> bool:
    """Whether :func:`batch_norm_in_place` writes into ``x``: a plain eval-mode BatchNorm
    (running statistics, no forward hooks) on the CPU, without autograd, tracing or compiling.
    On CUDA ``norm(x)`` runs cuDNN, whose bits the native kernel need not match."""
    return (not torch.is_grad_enabled() and x.device.type == 'cpu' and not x.is_mkldnn
            and type(norm).forward is _BatchNorm.forward and not norm.training
            and norm.running_mean is not None and norm.running_var is not None
            and not has_forward_hooks(norm)
            and not is_graph_capture())


def batch_norm_in_place(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``norm(x)``, written into ``x`` where :func:`can_norm_in_place` allows, and then ``x``
    itself is returned. The caller must own ``x`` (a fresh convolution output, say)."""
    if not can_norm_in_place(norm, x):
        return norm(x)
    norm._check_input_dim(x)
    # F.batch_norm reaches this same kernel on the CPU; only its output buffer differs.
    stats = x.new_empty(0, dtype=norm.running_mean.dtype)
    torch.ops.aten.native_batch_norm.out(
        x, norm.weight, norm.bias, norm.running_mean, norm.running_var, False, 0.0, norm.eps,
        out=x, save_mean=stats, save_invstd=stats.clone())
    return x


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
    """Apply ``norm`` to ``x``, using the running statistics when the batch has one value per
    channel (see the module docstring); otherwise exactly ``norm(x)``."""
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
