"""How ``torch.jit.script`` finds the scriptable copy of a module.

``torch.jit.script(model)`` first calls ``__prepare_scriptable__()`` on every submodule. The
mm-style modules (:class:`SplitAttentionConv2d`, :class:`ResNeStBottleneck`, :class:`ResNeSt`)
answer with :func:`scriptable_copy_of`, which calls the function that ``models/scriptable.py``
registered for the module's class (or its nearest registered base class). This module sits below
the model modules, so they never import the copies, which import them.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

Prepare = Callable[[nn.Module], nn.Module]
_PREPARE: dict[type, Prepare] = {}


def register_scriptable_copy(cls: type) -> Callable[[Prepare], Prepare]:
    """Decorator: the decorated function makes the scriptable copy of ``cls`` instances."""
    def register(prepare: Prepare) -> Prepare:
        _PREPARE[cls] = prepare
        return prepare
    return register


def scriptable_copy_of(module: nn.Module) -> nn.Module:
    """What ``module.__prepare_scriptable__()`` returns: its registered scriptable copy."""
    for cls in type(module).__mro__:
        if cls in _PREPARE:
            return _PREPARE[cls](module)
    raise RuntimeError(
        f'torch.jit.script: no scriptable copy is registered for {type(module).__name__}; '
        'import resnest_mm.models (which registers those of models/scriptable.py) first.')
