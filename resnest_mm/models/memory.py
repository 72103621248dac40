"""The memory path: fewer full-size buffers in training and inference, same bits, one switch.

Model code calls :func:`recompute`, :func:`norm_act`, :func:`norm`, :func:`shortcut` and
:func:`weighted_sum`; with the path off (:func:`set_enabled`, or ``RESNEST_MM_MEMORY_PATH=0``
in the environment) they do what the plain forward does. On, and in eager PyTorch only:

- **Training** (``recompute``): a bottleneck holds for backward several maps that are cheap
  functions of maps it holds anyway: ``relu(bn(y))`` next to ``y`` (the stem's norms,
  ``norm1``, the split attention's ``bn0``), and the weighted sum next to its splits. Saved-tensor
  hooks keep a recipe instead and recompute the map, once, when backward first needs it. The
  recomputed maps have the same bits, so the gradients are bit-identical: a training BatchNorm
  is recomputed from the batch statistics its forward saved (the affine step, checked once per
  layout to round as the kernel did), else replayed. The weighted sum's backward writes its
  gradient into one buffer (:class:`WeightedSum`).
- **Inference** without autograd: an eval BatchNorm writes into its input's buffer and the
  weighted sum into the splits' sum (on the CPU a fresh buffer costs page faults that take as
  long as the normalisation).

Every use of torch internals is here, each used only on the torch versions where it was checked
(:data:`CHECKED_TORCH`) and where its self-check passes; otherwise the plain path runs:
``NativeBatchNormBackward0._saved_result1/2`` (the batch statistics), ``torch._C._autograd.
_top_saved_tensors_default_hooks`` (whose saved-tensor hooks are innermost),
``torch.nn.modules.module._global_forward_hooks`` and ``aten::native_batch_norm.out``.
"""

from __future__ import annotations

import contextlib
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn.modules import module as module_globals
from torch.nn.modules.batchnorm import _BatchNorm

from ..compat import is_graph_capture, torch_version

# The torch releases whose internals this module was checked against (issue 15's range).
CHECKED_TORCH = ((2, 1), (2, 13))
INTERNALS_CHECKED = CHECKED_TORCH[0] <= torch_version() <= CHECKED_TORCH[1]
# Whose saved-tensor hooks are innermost: torch 2.1 cannot tell, so there the recomputation
# stands aside (it might displace gradient checkpointing's hooks) and autograd keeps the maps.
HOOKS_VISIBLE = hasattr(torch._C._autograd, '_top_saved_tensors_default_hooks')

_enabled = os.environ.get('RESNEST_MM_MEMORY_PATH', '1') != '0'


def is_enabled() -> bool:
    """Whether the memory path is switched on (it also needs a checked torch to act)."""
    return _enabled


def set_enabled(enabled: bool) -> bool:
    """Switch the memory path on or off for the process; returns the previous setting."""
    global _enabled
    previous, _enabled = _enabled, bool(enabled)
    return previous


@contextlib.contextmanager
def switched(enabled: bool) -> Iterator[None]:
    """The memory path on or off within the ``with`` block."""
    previous = set_enabled(enabled)
    try:
        yield
    finally:
        set_enabled(previous)


def _active() -> bool:
    return _enabled and INTERNALS_CHECKED and not is_graph_capture()


def has_forward_hooks(module: nn.Module) -> bool:
    """Whether a forward (pre-)hook, its own or a global one, would see ``module`` run."""
    return bool(module._forward_hooks or module._forward_pre_hooks
                or getattr(module_globals, '_global_forward_hooks', True)
                or getattr(module_globals, '_global_forward_pre_hooks', True))


# --- inference: an eval BatchNorm written into its input -----------------------------------

_norm_out_checked: bool | None = None


def _norm_out_works() -> bool:
    """Self-check, once: ``native_batch_norm.out`` into its input gives ``F.batch_norm``'s bits."""
    global _norm_out_checked
    if _norm_out_checked is None:
        gen = torch.Generator().manual_seed(0)
        x, w, b, m = (torch.rand(s, generator=gen) for s in ((2, 8, 5, 3), 8, 8, 8))
        v = torch.rand(8, generator=gen) + 0.5
        expected = F.batch_norm(x, m, v, w, b, False, 0.0, 1e-5)
        try:
            _native_norm_into(x, w, b, m, v, 1e-5)
            _norm_out_checked = torch.equal(x, expected)
        except (RuntimeError, AttributeError, TypeError):
            _norm_out_checked = False
    return _norm_out_checked


def _native_norm_into(x, weight, bias, mean, var, eps) -> None:
    stats = x.new_empty(0, dtype=mean.dtype)
    torch.ops.aten.native_batch_norm.out(x, weight, bias, mean, var, False, 0.0, eps, out=x,
                                         save_mean=stats, save_invstd=stats.clone())


def can_norm_in_place(norm: nn.Module, x: torch.Tensor) -> bool:
    """Whether :func:`norm` writes into ``x``: the path on, a plain eval-mode BatchNorm (running
    statistics, no forward hooks) on the CPU, without autograd. On CUDA ``norm(x)`` runs
    cuDNN, whose bits the native kernel need not match."""
    return (not torch.is_grad_enabled() and _active() and x.device.type == 'cpu'
            and not x.is_mkldnn and type(norm).forward is _BatchNorm.forward
            and not norm.training and norm.running_mean is not None
            and norm.running_var is not None and not has_forward_hooks(norm)
            and _norm_out_works())


def norm(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``norm(x)``, written into ``x`` where :func:`can_norm_in_place` allows. The caller must
    own ``x`` (a fresh convolution output)."""
    if not can_norm_in_place(norm, x):
        return norm(x)
    norm._check_input_dim(x)
    _native_norm_into(x, norm.weight, norm.bias, norm.running_mean, norm.running_var, norm.eps)
    return x


def shortcut(downsample: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``downsample(x)`` (pool, conv, norm) with its closing norm written in place where
    :func:`norm` allows and the norm's input is a buffer of its own, not the block's input."""
    if (not _active() or torch.is_grad_enabled() or not isinstance(downsample, nn.Sequential)
            or len(downsample) < 2 or has_forward_hooks(downsample)):
        return downsample(x)
    out = x
    for layer in downsample[:-1]:
        out = layer(out)
    last = downsample[-1]
    if not can_norm_in_place(last, out) or (
            out.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()):
        return last(out)
    return norm(last, out)


# --- the weighted sum ------------------------------------------------------------------------

def _sum_of_products(splits: torch.Tensor, attn: torch.Tensor,
                     out: torch.Tensor | None = None) -> torch.Tensor:
    """``sum_r splits[:, r] * attn[:, r]``, each product rounded and added in radix order: the
    bits of ``(splits * attn).sum(dim=1)`` without its ``(B, R, C, H, W)`` temporary. Given
    ``out`` (the splits' sum, which the caller owns and no longer needs), each product goes into
    its split and the sum into ``out``: no allocation, and ``out``'s strides (those of
    MMDetection's result). (addcmul's fused multiply-add would round differently.)"""
    if out is None:
        out = splits[:, 0] * attn[:, 0]
        for r in range(1, splits.size(1)):
            out += splits[:, r] * attn[:, r]
        return out
    torch.mul(splits[:, 0], attn[:, 0], out=out)
    for r in range(1, splits.size(1)):
        out += splits[:, r].mul_(attn[:, r])
    return out


class WeightedSum(torch.autograd.Function):
    """``sum_r attn[:, r] * splits[:, r]`` with a lean backward.

    It saves only its inputs (``splits`` is kept for the ReLU's backward anyway) and writes the
    gradient of ``splits`` into one buffer, where autograd's multiply-then-sum would allocate
    full-size temporaries for each product and each gradient. Not twice differentiable.
    """

    @staticmethod
    def forward(ctx, splits: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(splits, attn)
        return _sum_of_products(splits, attn)

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


def weighted_sum(splits: torch.Tensor, attn: torch.Tensor, fused: torch.Tensor,
                 producers: tuple[nn.Module, ...] = ()) -> torch.Tensor:
    """The split attention's ``(splits * attn).sum(dim=1)``, same bits. With autograd: the
    lean :class:`WeightedSum`, recomputed in backward under :func:`recompute`. Without: into
    ``fused`` (the splits' sum), unless a forward hook on the ``producers`` of the splits may
    hold them."""
    if not _active():
        return (splits * attn).sum(dim=1)
    if torch.is_grad_enabled() and (splits.requires_grad or attn.requires_grad):
        out = WeightedSum.apply(splits, attn)
        hooks = _our_hooks()
        if hooks is not None:
            hooks.add_function(out, _sum_of_products, splits, attn)
        return out
    if torch.is_grad_enabled() or any(has_forward_hooks(m) for m in producers):
        return _sum_of_products(splits, attn)
    return _sum_of_products(splits, attn, out=fused)


# --- training: maps recomputed in backward ---------------------------------------------------

class Recomputed:
    """How to recompute one saved tensor; it is recomputed once and cached."""

    def __init__(self, like: torch.Tensor, compute: Callable[[], torch.Tensor]) -> None:
        self.size, self.stride = like.size(), like.stride()
        self._compute = compute
        self._tensor: torch.Tensor | None = None

    def tensor(self) -> torch.Tensor:
        if self._tensor is None:
            with torch.no_grad():
                out = self._compute()
            if out.stride() != self.stride:  # e.g. channels_last input, contiguous kernel output
                out = torch.empty_strided(self.size, self.stride, dtype=out.dtype,
                                          device=out.device).copy_(out)
            self._tensor = out
        return self._tensor


class RecomputeHooks:
    """Saved-tensor hooks that save registered tensors as :class:`Recomputed` recipes.

    Open them with :func:`recompute`. Registered tensors are kept alive until the hooks close,
    so that no other tensor can take their storage (and so be mistaken for them) meanwhile.
    """

    def __init__(self) -> None:
        self._recipes: dict[int, tuple[Recomputed, torch.Tensor]] = {}

    def add(self, out: torch.Tensor, compute: Callable[[], torch.Tensor]) -> Recomputed:
        """Save ``out`` (and views of it) as ``compute()`` from now on."""
        recipe = Recomputed(out, compute)
        self._recipes[out.untyped_storage().data_ptr()] = (recipe, out)
        return recipe

    def add_norm_relu(self, norm: nn.Module, x: torch.Tensor,
                      out: torch.Tensor) -> Recomputed | None:
        """Register ``out = norm(x)``, to be turned into ``relu(out)`` in place, where that can
        be recomputed exactly: a BatchNorm with local statistics (not a training SyncBN). A
        training BatchNorm is recomputed from its saved batch statistics
        (:func:`_saved_batch_stats`) where that gives the same bits, else replayed."""
        if not isinstance(norm, _BatchNorm) or (
                norm.training and isinstance(norm, nn.SyncBatchNorm)) or not out.requires_grad:
            return None
        batch_stats = norm.training or not norm.track_running_stats
        saved = _saved_batch_stats(norm, x, out) if batch_stats else None
        if saved is not None:
            def compute() -> torch.Tensor:  # the affine step only, from the batch statistics
                return _affine(norm, x, *saved).relu_()
        else:
            stats = (None, None) if batch_stats else (norm.running_mean, norm.running_var)

            def compute() -> torch.Tensor:
                # momentum 0: running statistics, if given, are read and not updated
                return F.batch_norm(x, *stats, norm.weight, norm.bias, batch_stats, 0.0,
                                    norm.eps).relu_()

        return self.add(out, compute)

    def add_function(self, out: torch.Tensor, fn: Callable[..., torch.Tensor],
                     *inputs: torch.Tensor) -> Recomputed:
        """Save ``out = fn(*inputs)``. An input registered here is recomputed from its own
        recipe rather than kept alive by this one."""
        sources = [self._source(tensor) for tensor in inputs]
        return self.add(out, lambda: fn(*(source() for source in sources)))

    def _source(self, tensor: torch.Tensor) -> Callable[[], torch.Tensor]:
        entry = self._recipes.get(tensor.untyped_storage().data_ptr())
        if entry is None:
            return lambda: tensor
        recipe, size, stride = entry[0], tensor.size(), tensor.stride()
        offset = tensor.storage_offset()
        return lambda: recipe.tensor().as_strided(size, stride, offset)

    def close(self) -> None:
        self._recipes.clear()

    def pack(self, tensor: torch.Tensor):
        entry = self._recipes.get(tensor.untyped_storage().data_ptr())
        if entry is None:
            return tensor
        return entry[0], tensor.size(), tensor.stride(), tensor.storage_offset()

    @staticmethod
    def unpack(packed) -> torch.Tensor:
        if isinstance(packed, torch.Tensor):
            return packed
        recipe, size, stride, offset = packed
        return recipe.tensor().as_strided(size, stride, offset)


def _affine(norm: _BatchNorm, x: torch.Tensor, mean: torch.Tensor,
            invstd: torch.Tensor) -> torch.Tensor:
    """``norm``'s output from its batch statistics: ``x * alpha + beta`` with
    ``alpha = invstd * weight`` and ``beta = bias - mean * alpha``, each rounded once (fused
    multiply-adds), into a buffer of ``x``'s dtype and strides."""
    weight = norm.weight.detach() if norm.weight is not None else torch.ones_like(invstd)
    bias = norm.bias.detach() if norm.bias is not None else torch.zeros_like(mean)
    alpha = invstd * weight
    beta = torch.addcmul(bias, mean, alpha, value=-1)
    view = (1, -1) + (1,) * (x.dim() - 2)
    return torch.addcmul(beta.view(view), x, alpha.view(view), out=torch.empty_like(x))


# (device, dtypes, shape, strides) -> whether _affine reproduces the BatchNorm there; the most
# recently used AFFINE_CACHE_SIZE layouts (training on random input sizes meets new ones).
AFFINE_CACHE_SIZE = 256
_AFFINE_MATCHES: OrderedDict[tuple, bool] = OrderedDict()


def _saved_batch_stats(norm: _BatchNorm, x: torch.Tensor,
                       out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The batch ``(mean, invstd)`` from which :func:`_affine` recomputes ``out = norm(x)`` bit
    for bit: the forward computed them and autograd keeps them anyway. None where they are not
    at hand or the rounding differs: the check runs on the first tensor of each layout, against
    ``out`` itself. (The CPU kernel computes ``alpha`` and ``beta`` so and applies them with one
    fused multiply-add per element; another build or device may not, and there backward
    replays the BatchNorm instead.)"""
    node = out.grad_fn
    if type(node).__name__ != 'NativeBatchNormBackward0':
        return None
    mean = getattr(node, '_saved_result1', None)
    invstd = getattr(node, '_saved_result2', None)
    if not isinstance(mean, torch.Tensor) or not isinstance(invstd, torch.Tensor) or (
            mean.shape != (x.size(1),) or invstd.shape != (x.size(1),)):
        return None
    key = (x.device, x.dtype, out.dtype, mean.dtype, tuple(x.shape), x.stride(), out.stride())
    matches = _AFFINE_MATCHES.get(key)
    if matches is None:
        with torch.no_grad():
            matches = torch.equal(_affine(norm, x, mean, invstd), out)
        _AFFINE_MATCHES[key] = matches
        if len(_AFFINE_MATCHES) > AFFINE_CACHE_SIZE:
            _AFFINE_MATCHES.popitem(last=False)
    else:
        _AFFINE_MATCHES.move_to_end(key)
    return (mean, invstd) if matches else None


_FOREIGN_HOOKS = (None, None)


def _innermost_hooks():
    """The innermost saved-tensor hooks ``(pack, unpack)``, or None when none are set."""
    top = getattr(torch._C._autograd, '_top_saved_tensors_default_hooks', None)
    if top is None:  # this torch cannot tell: assume somebody else's hooks
        return _FOREIGN_HOOKS
    return top(False)


def _our_hooks() -> RecomputeHooks | None:
    """The :class:`RecomputeHooks` in charge of saved tensors now, if they are ours."""
    hooks = _innermost_hooks()
    owner = getattr(hooks[0], '__self__', None) if hooks is not None else None
    return owner if isinstance(owner, RecomputeHooks) else None


def recompute() -> contextlib.AbstractContextManager[RecomputeHooks | None]:
    """Within the block, maps registered by :func:`norm_act` and :func:`weighted_sum` are
    recomputed in backward rather than kept; yields the hooks, or None where they stand aside:
    the path off, no autograd, tracing or compiling, or other saved-tensor hooks in charge
    (gradient checkpointing, offloading). Blocks nest and share the hooks of the outer one."""
    if not torch.is_grad_enabled() or not _active():
        return contextlib.nullcontext()  # a plain context: compilers trace it (torch 2.1 too)
    return _recompute_block()


@contextlib.contextmanager
def _recompute_block() -> Iterator[RecomputeHooks | None]:
    hooks = _innermost_hooks()
    if hooks is not None:
        owner = getattr(hooks[0], '__self__', None)
        yield owner if isinstance(owner, RecomputeHooks) else None
        return
    ours = RecomputeHooks()
    try:
        with torch.autograd.graph.saved_tensors_hooks(ours.pack, ours.unpack):
            yield ours
    finally:
        ours.close()


def norm_act(norm_layer: nn.Module, act: nn.Module, x: torch.Tensor,
             drop: nn.Module | None = None) -> torch.Tensor:
    """``act(drop(norm_layer(x)))``. Within :func:`recompute` and without ``drop``, backward
    recomputes the result from ``x`` rather than keeping it; without autograd an eval
    BatchNorm writes into ``x``, which must be the caller's own (a convolution output)."""
    out = norm(norm_layer, x)
    if drop is not None:
        return act(drop(out))
    hooks = _our_hooks() if out.requires_grad and _active() else None
    if hooks is not None and type(act) is nn.ReLU:
        hooks.add_norm_relu(norm_layer, x, out)
    return act(out)
