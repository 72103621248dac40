"""Converting a checkpoint to the OpenMMLab (or official) backbone layout, saved with its hash."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from mmengine.utils import ProgressBar
from safetensors.torch import save_file

from .files import resolve_checkpoint, sha256_of
from .layouts import BackboneWeights, to_openmmlab
from .reading import SAFETENSORS_SUFFIX, load_checkpoint_file
from .renaming import to_official

BN_STATS = ('running_mean', 'running_var', 'num_batches_tracked')


@dataclass
class ConversionSummary:
    """Result of :func:`convert_checkpoint`."""

    path: Path
    sha256: str
    weights: BackboneWeights
    to: str
    num_tensors: int
    num_params: int

    def __str__(self) -> str:
        dropped = (f' ({len(self.weights.dropped)} classifier tensors dropped)'
                   if self.weights.dropped else '')
        ignored = (f', {len(self.weights.ignored)} non-backbone tensors ignored'
                   if self.weights.ignored else '')
        return (f'layout detected: {self.weights.describe()}\n'
                f'tensors: {self.num_tensors}{dropped}{ignored}\n'
                f'parameters: {self.num_params:,} (without BN statistics)\n'
                f'written ({self.to} layout): {self.path}\nsha256: {self.sha256}')


def num_parameters(state_dict: Mapping[str, torch.Tensor]) -> int:
    """Number of parameter values, BN running statistics excluded."""
    return sum(v.numel() for k, v in state_dict.items() if not k.endswith(BN_STATS))


def convert_checkpoint(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    to: str = 'openmmlab',
    prefix: str | None = None,
    progress: bool = False,
) -> ConversionSummary:
    """Convert a checkpoint of any known layout to the OpenMMLab (or official) backbone layout.

    The output is named ``<dst stem>-<first 8 hex of its SHA-256><suffix>``, as OpenMMLab and
    torchvision name released files, so loading it later checks its integrity.

    Args:
        src: Path, URL or short name of the input.
        dst: Output path, before the hash is added (``resnest50_mm.pth``); a ``.safetensors``
            name writes a safetensors file (the state dict; ``meta`` as its metadata).
        to: ``'openmmlab'`` (``{'state_dict': ..., 'meta': ...}``) or ``'official'`` (a bare
            state dict, as the official release).
        prefix: Backbone key prefix in the input. Default: detected.
        progress: Show an mmengine ProgressBar while converting.
    """
    if to not in ('openmmlab', 'official'):
        raise ValueError(f"to={to!r} is invalid; allowed: 'openmmlab', 'official'.")
    path = resolve_checkpoint(src)
    weights = to_openmmlab(load_checkpoint_file(path), prefix, source=str(path))
    renamed = weights.state_dict if to == 'openmmlab' else to_official(weights.state_dict)
    state_dict = {}
    bar = ProgressBar(len(renamed)) if progress else None
    for key, value in renamed.items():
        state_dict[key] = value.contiguous()
        if bar is not None:
            bar.update()
    if bar is not None:
        sys.stdout.write('\n')
    payload: Any = state_dict
    if to == 'openmmlab':
        payload = {'state_dict': state_dict,
                   'meta': {'layout': 'openmmlab', 'source': path.name,
                            'source_layout': weights.layout}}
    final, digest = _save_with_hash(payload, Path(dst))
    return ConversionSummary(final, digest, weights, to, len(state_dict),
                             num_parameters(state_dict))


def _save_with_hash(payload: Any, dst: Path) -> tuple[Path, str]:
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix='.tmp', dir=dst.parent)
    os.close(fd)
    try:
        if dst.suffix == SAFETENSORS_SUFFIX:  # tensors only: the state dict, meta as metadata
            state_dict = payload.get('state_dict', payload)
            meta = {k: str(v) for k, v in payload.get('meta', {}).items()}
            save_file(state_dict, tmp, metadata=meta or None)
        else:
            torch.save(payload, tmp)
        digest = sha256_of(Path(tmp))
        suffix = dst.suffix or '.pth'
        final = dst.with_name(f'{dst.stem}-{digest[:8]}{suffix}')
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return final, digest
