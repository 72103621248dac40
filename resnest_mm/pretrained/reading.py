"""Reading a checkpoint file safely: ``torch.load(weights_only=True)`` with clear refusals, and
safetensors files (the Hugging Face hub's ``model.safetensors``), which hold tensors only.

A file carrying arbitrary pickled objects is refused. The only non-tensor objects allowed are
those of an mmengine training checkpoint (numpy arrays and scalars, and the ``HistoryBuffer``
of its ``message_hub``).

torch < 2.5 has no way to add globals to its weights-only unpickler. There a file that torch
refuses only for those objects (an mmengine training checkpoint) is read again through
:class:`_RestrictedUnpickler`, which allows torch's tensor rebuilding and the same list and
nothing else; a torch-version limit is never reported as a damaged file.
"""

from __future__ import annotations

import importlib
import os
import pickle
import re
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

from ..compat import allowed_globals, has_safe_globals_api
from .errors import CheckpointNotFoundError, CorruptCheckpointError, UnsafeCheckpointError


def _restricted_getattr(obj: Any, name: str) -> Any:
    # mmengine pickles HistoryBuffer's statistics table as getattr(HistoryBuffer, 'mean'), ...
    if obj is HistoryBuffer and name in ('min', 'max', 'current', 'mean'):
        return getattr(obj, name)
    raise pickle.UnpicklingError(f'getattr({obj!r}, {name!r}) is not allowed')


def mmengine_safe_globals() -> list:
    """Allow-list for mmengine training checkpoints: numpy data and the message hub's buffers."""
    try:  # numpy 2; numpy 1.26 has a numpy._core without its submodules loaded
        multiarray = importlib.import_module('numpy._core.multiarray')
    except ImportError:
        multiarray = importlib.import_module('numpy.core.multiarray')
    allowed: list = [HistoryBuffer, np.ndarray, np.dtype, (_restricted_getattr, 'builtins.getattr')]
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        allowed += [getattr(dtypes, name) for name in dtypes.__all__]
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):  # numpy 1.x and 2.x files
        allowed += [(multiarray._reconstruct, f'{module}._reconstruct'),
                    (multiarray.scalar, f'{module}.scalar')]
    return allowed


def allow_mmengine_checkpoints() -> None:
    """Let every weights-only ``torch.load`` of this process read mmengine training checkpoints.

    ``import resnest_mm`` calls this, so that MMDetection's and MMSegmentation's own
    ``tools/train.py --resume`` (mmengine 0.10.7's plain ``torch.load``, weights-only by default
    since torch 2.6) work with ``custom_imports=dict(imports=['resnest_mm'])``. Only
    :func:`mmengine_safe_globals` is added: numpy data, ``HistoryBuffer`` and a ``getattr``
    restricted to its statistics. Does nothing on a torch without the allow-list (< 2.5).
    """
    if has_safe_globals_api():
        torch.serialization.add_safe_globals(mmengine_safe_globals())


SAFETENSORS_SUFFIX = '.safetensors'


def load_safetensors_file(path: Path, map_location: Any = 'cpu') -> dict[str, torch.Tensor]:
    """A safetensors file as a bare state dict (read on the CPU, then moved to ``map_location``).

    Raises:
        CorruptCheckpointError: truncated, damaged or not a safetensors file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    try:
        state_dict = load_file(str(path), device='cpu')
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        reason = str(err).split('\n')[0][:200] or type(err).__name__
        raise CorruptCheckpointError(
            f'cannot read checkpoint {path}: the file is truncated, damaged or not a '
            f'safetensors file ({type(err).__name__}: {reason}). Download or convert it '
            'again.') from None
    if isinstance(map_location, (str, torch.device)) and torch.device(map_location).type != 'cpu':
        state_dict = {k: v.to(map_location) for k, v in state_dict.items()}
    return state_dict


def load_checkpoint_file(path: str | os.PathLike, map_location: Any = 'cpu') -> Any:
    """Read a checkpoint: a ``.safetensors`` file, or ``torch.load`` with ``weights_only=True``;
    failures become errors naming the file.

    Raises:
        UnsafeCheckpointError: the file pickles objects other than tensors, plain data, numpy
            data and mmengine's ``HistoryBuffer``.
        CorruptCheckpointError: truncated, damaged or not a torch file.
    """
    path = Path(path)
    if path.suffix == SAFETENSORS_SUFFIX:
        if not path.exists():
            raise CheckpointNotFoundError(f'checkpoint file {path} does not exist.')
        return load_safetensors_file(path, map_location)
    allowed = mmengine_safe_globals()
    try:
        with allowed_globals(allowed):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        detail = _refusal_detail(str(err))
        if detail is None:
            raise CorruptCheckpointError(_corrupt_message(path, err)) from None
        if not has_safe_globals_api():
            return _load_restricted(path, map_location)
        raise UnsafeCheckpointError(_unsafe_message(path, detail)) from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError, AttributeError) as err:
        if isinstance(err, FileNotFoundError):
            raise CheckpointNotFoundError(f'checkpoint file {path} does not exist.') from None
        raise CorruptCheckpointError(_corrupt_message(path, err)) from None


def _refusal_detail(message: str) -> str | None:
    """What the weights-only unpickler refused (a class or call), or None if it did not."""
    refused = re.search(r'GLOBAL (\S+) was not an allowed global', message)
    if refused:
        return refused.group(1)
    refused = re.search(r'Unsupported (?:class|global:) (?:GLOBAL )?(\S+)', message)  # torch < 2.5
    if refused:
        return refused.group(1)
    refused = re.search(r'Can only build .*? but got (\S+)|(getattr\(.*?\)) is not allowed',
                        message)
    if refused:
        return refused.group(1) or refused.group(2)
    return None


def _unsafe_message(path: Path, detail: str) -> str:
    return (f'refusing to load {path}: it holds pickled Python objects beyond tensors and plain '
            f'data ({detail}). Checkpoints are read with torch.load(weights_only=True) because '
            'unpickling arbitrary objects can run code. If you trust where the file came from, '
            're-save just its state dict with torch.save and load that.')


def _corrupt_message(path: Path, err: Exception) -> str:
    reason = str(err).split('\n')[0][:200] or type(err).__name__
    return (f'cannot read checkpoint {path}: the file is truncated, damaged or not a PyTorch '
            f'checkpoint ({type(err).__name__}: {reason}). Download or convert it again.')


# What a state dict or an mmengine checkpoint needs from torch and the standard library, for
# torch < 2.5 (storages are resolved by torch.load itself before ``find_class`` is asked).
_TORCH_REBUILD = {
    ('torch._utils', name) for name in (
        '_rebuild_tensor', '_rebuild_tensor_v2', '_rebuild_tensor_v3', '_rebuild_parameter',
        '_rebuild_parameter_with_state', '_rebuild_qtensor', '_rebuild_device_tensor_from_numpy')
} | {('torch._tensor', '_rebuild_from_type_v2'), ('torch', 'Size'), ('torch', 'device'),
     ('torch', 'Tensor'), ('torch.nn.parameter', 'Parameter'), ('collections', 'OrderedDict'),
     ('collections', 'Counter'), ('builtins', 'set'), ('builtins', 'bytearray'),
     ('builtins', 'complex'), ('_codecs', 'encode')}
_TORCH_CONSTANTS = (torch.dtype, torch.layout, torch.qscheme)


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds tensors, plain data and :func:`mmengine_safe_globals` only."""

    def find_class(self, module: str, name: str) -> Any:
        module = {'__builtin__': 'builtins'}.get(module, module)  # torch.save's protocol 2
        if (module, name) in _TORCH_REBUILD:
            return super().find_class(module, name)
        if module == 'torch' and isinstance(getattr(torch, name, None), _TORCH_CONSTANTS):
            return getattr(torch, name)
        for entry in mmengine_safe_globals():
            obj, qualname = entry if isinstance(entry, tuple) else (
                entry, f'{entry.__module__}.{entry.__qualname__}')
            if qualname == f'{module}.{name}':
                return obj
        raise pickle.UnpicklingError(f'GLOBAL {module}.{name} was not an allowed global')


_RESTRICTED_PICKLE = types.SimpleNamespace(
    __name__='resnest_mm_restricted_pickle', Unpickler=_RestrictedUnpickler,
    load=lambda file, **kw: _RestrictedUnpickler(file, **kw).load())


def _load_restricted(path: Path, map_location: Any) -> Any:
    """torch < 2.5: ``torch.load`` through :class:`_RestrictedUnpickler`."""
    try:
        return torch.load(path, map_location=map_location, weights_only=False,
                          pickle_module=_RESTRICTED_PICKLE)
    except pickle.UnpicklingError as err:
        detail = _refusal_detail(str(err))
        if detail is None:
            raise CorruptCheckpointError(_corrupt_message(path, err)) from None
        raise UnsafeCheckpointError(_unsafe_message(path, detail)) from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError, AttributeError) as err:
        raise CorruptCheckpointError(_corrupt_message(path, err)) from None
