"""Tensors saved for backward kept as recipes and rebuilt in backward, with the same bits.

A ResNeSt bottleneck in training holds, for backward, several full-size maps that are cheap
functions of maps it holds anyway: ``relu(bn(y))`` next to the norm's input ``y`` (after
``norm1`` and after the split attention's ``bn0``), and the attention-weighted sum next to its
splits and weights. A :class:`RecipeBook` is a pair of saved-tensor hooks: when autograd saves a
tensor whose storage has a recipe, it keeps the recipe instead, and rebuilds the tensor (once,
cached) when backward first needs it. Rebuilding gives the same bits, so gradients are
bit-identical to keeping the tensors: the weighted sum reruns its kernels on the same inputs, and
``relu(bn(y))`` is rebuilt from the batch statistics the forward pass computed (only the affine
step, checked once per layout to round as the BatchNorm kernel did, else a replay of the
BatchNorm).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..compat import is_compiling
from .norm import batch_norm_in_place


class Recipe:
    """How to rebuild one saved tensor; the rebuilt tensor is made once and cached."""

    def __init__(self, like: torch.Tensor, rebuild: Callable[[], torch.Tensor]) -> None:
        self.size, self.stride = like.size(), like.stride()
        self._rebuild = rebuild
        self._tensor: torch.Tensor | None = None

    def tensor(self) -> torch.Tensor:
        if self._tensor is None:
            with torch.no_grad():
                out = self._rebuild()
            if out.stride() != self.stride:  # e.g. channels_last input, contiguous kernel output
                out = torch.empty_strided(self.size, self.stride, dtype=out.dtype,
                                          device=out.device).copy_(out)
            self._tensor = out
        return self._tensor


class RecipeBook:
    """Saved-tensor hooks that replace registered tensors by their :class:`Recipe`.

    Open one with :func:`recipe_book`. Registered tensors are kept alive until the book closes,
    so that no other tensor can take their storage (and so be mistaken for them) meanwhile.
    """

    def __init__(self) -> None:
        self._recipes: dict[int, tuple[Recipe, torch.Tensor]] = {}

    def add(self, out: torch.Tensor, rebuild: Callable[[], torch.Tensor]) -> Recipe:
        """Save ``out`` (and views of it) as ``rebuild()`` from now on."""
        recipe = Recipe(out, rebuild)
        self._recipes[out.untyped_storage().data_ptr()] = (recipe, out)
        return recipe

    def add_norm_relu(self, norm: nn.Module, x: torch.Tensor, out: torch.Tensor) -> Recipe | None:
        """Register ``out = norm(x)``, to be turned into ``relu(out)`` in place, if that can be
        rebuilt exactly: a BatchNorm with local statistics (not a training SyncBN). A training
        BatchNorm is rebuilt from its saved batch statistics (:func:`_saved_batch_stats`)
        where that gives the same bits, else by replaying it (statistics recomputed)."""
        if not isinstance(norm, _BatchNorm) or (
                norm.training and isinstance(norm, nn.SyncBatchNorm)) or not out.requires_grad:
            return None
        batch_stats = norm.training or not norm.track_running_stats
        saved = _saved_batch_stats(norm, x, out) if batch_stats else None
        if saved is not None:
            def rebuild() -> torch.Tensor:  # the affine step only, from the batch statistics
                return _affine(norm, x, *saved).relu_()
        else:
            stats = (None, None) if batch_stats else (norm.running_mean, norm.running_var)

            def rebuild() -> torch.Tensor:
                # momentum 0: running statistics, if given, are read and not updated
                return F.batch_norm(x, *stats, norm.weight, norm.bias, batch_stats, 0.0,
                                    norm.eps).relu_()

        return self.add(out, rebuild)

    def add_function(self, out: torch.Tensor, fn: Callable[..., torch.Tensor],
                     *inputs: torch.Tensor) -> Recipe:
        """Save ``out = fn(*inputs)`` as a recipe. An input registered here is rebuilt from its
        own recipe rather than kept alive by this one."""
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


# (device, dtypes, shape, strides) -> whether _affine reproduces the BatchNorm there
_AFFINE_MATCHES: dict[tuple, bool] = {}


def _saved_batch_stats(norm: _BatchNorm, x: torch.Tensor,
                       out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The batch ``(mean, invstd)`` from which :func:`_affine` rebuilds ``out = norm(x)`` bit
    for bit: the forward pass computed them and autograd keeps them anyway. None where they
    are not at hand or the rounding differs: the check runs on the first tensor of each layout
    (dtypes, shape, strides), against ``out`` itself.

    The CPU kernel computes ``alpha`` and ``beta`` so and applies them with one fused
    multiply-add per element (torch 2.13, AVX2); another build or device (cuDNN) may not, and
    there backward replays the BatchNorm instead.
    """
    node = out.grad_fn
    if type(node).__name__ != 'NativeBatchNormBackward0':
        return None
    mean, invstd = node._saved_result1, node._saved_result2
    if mean.shape != (x.size(1),) or invstd.shape != (x.size(1),):
        return None
    key = (x.device, x.dtype, out.dtype, mean.dtype, tuple(x.shape), x.stride(), out.stride())
    matches = _AFFINE_MATCHES.get(key)
    if matches is None:
        with torch.no_grad():
            matches = _AFFINE_MATCHES[key] = torch.equal(_affine(norm, x, mean, invstd), out)
    return (mean, invstd) if matches else None


_UNKNOWN_HOOKS = (None, None)


def _innermost_hooks():
    """The innermost saved-tensor hooks ``(pack, unpack)``, or None when none are set."""
    top = getattr(torch._C._autograd, '_top_saved_tensors_default_hooks', None)
    if top is None:  # this torch cannot tell: assume somebody else's hooks
        return _UNKNOWN_HOOKS
    return top(False)


@contextmanager
def recipe_book() -> Iterator[RecipeBook | None]:
    """The active :class:`RecipeBook`, or a new one for the ``with`` block, or None.

    None (autograd keeps everything itself) without autograd, while tracing or compiling, or
    when other saved-tensor hooks are in charge (gradient checkpointing, offloading). A book
    opened by an enclosing block is shared: a bottleneck and its split attention register
    into one.
    """
    if (not torch.is_grad_enabled() or torch.jit.is_tracing()
            or is_compiling()):
        yield None
        return
    hooks = _innermost_hooks()
    if hooks is not None:
        owner = getattr(hooks[0], '__self__', None)
        yield owner if isinstance(owner, RecipeBook) else None
        return
    book = RecipeBook()
    try:
        with torch.autograd.graph.saved_tensors_hooks(book.pack, book.unpack):
            yield book
    finally:
        book.close()


def norm_relu(norm: nn.Module, relu: nn.Module, x: torch.Tensor, book: RecipeBook | None,
              drop: nn.Module | None = None) -> torch.Tensor:
    """``relu(drop(norm(x)))``; with a ``book`` and no ``drop``, backward rebuilds the result
    from ``x`` rather than keeping it (:meth:`RecipeBook.add_norm_relu`). ``x`` must be the
    caller's own (a convolution output): without autograd an eval-mode BatchNorm writes into it
    (:func:`~.norm.batch_norm_in_place`)."""
    out = batch_norm_in_place(norm, x)
    if drop is not None:
        return relu(drop(out))
    if book is not None:
        book.add_norm_relu(norm, x, out)
    return relu(out)


def rebuild_in_backward(book: RecipeBook | None, out: torch.Tensor,
                        fn: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> None:
    """With a ``book``, backward rebuilds ``out = fn(*inputs)`` rather than keeping it
    (:meth:`RecipeBook.add_function`); without one, nothing happens."""
    if book is not None:
        book.add_function(out, fn, *inputs)
