"""Pretrained ResNeSt weights: find, safely read, recognise, convert and strictly load them.

Published ResNeSt weights come in several key layouts, all handled here without a hand-written
renaming script:

- ``official``: the authors' release and timm's ``resnest50d/101e/200e/269e``: deep stem
  ``conv1.{0,1,3,4,6}`` plus ``bn1``, blocks ``layerX.Y.*``, classifier ``fc``.
- ``openmmlab``: MMDetection's / MMSegmentation's (and our) backbone: ``stem.{0,1,3,4,6,7}``,
  the same block keys. Detector and segmentor checkpoints prefix it with ``backbone.``.
- ``detectron2``: the authors' Detectron2 backbone (``resnest/d2/resnest.py``): stem
  ``stem.conv1_{1,2,3}`` with a ``.norm`` each, stages ``res2..res5``, norms nested as
  ``conv1.norm``/``conv3.norm``, shortcut ``shortcut`` (+ ``.norm``); a whole detector prefixes it
  with ``backbone.bottom_up.``. The split-attention keys (``conv2.*``) are the official ones.

Any of them may be a bare state dict or wrapped in ``state_dict`` or ``model``. Everything is
converted to the OpenMMLab layout; classifiers (``fc``, ``linear``) are dropped.

Files are read with ``torch.load(weights_only=True)``: a file carrying arbitrary pickled objects
is refused. The only non-tensor objects allowed are those of an mmengine training checkpoint
(numpy arrays and scalars, and the ``HistoryBuffer`` of its ``message_hub``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import re
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch
from mmengine.logging import HistoryBuffer, print_log
from torch import nn

# The authors' ImageNet release (hash prefixes as in their `resnest` package).
OFFICIAL_URL = 'https://github.com/zhanghang1989/ResNeSt/releases/download/weights_step1/{}.pth'
OFFICIAL_FILES = {
    'resnest50': 'resnest50-528c19ca',
    'resnest101': 'resnest101-22405ba7',
    'resnest200': 'resnest200-75117900',
    'resnest269': 'resnest269-0cc87c48',
}
# mmengine's hub/openmmlab.json entries; other open-mmlab:// names are looked up there.
OPENMMLAB_URLS = {
    'resnest50': 'https://download.openmmlab.com/pretrain/third_party/resnest50_d2-7497a55b.pth',
    'resnest101': 'https://download.openmmlab.com/pretrain/third_party/resnest101_d2-f3b931b2.pth',
    'resnest200': 'https://download.openmmlab.com/pretrain/third_party/resnest200_d2-ca88e41f.pth',
}
OPENMMLAB_SCHEME = 'open-mmlab://'

LAYOUTS = {
    'official': 'official ResNeSt / timm (conv1.*, bn1, fc)',
    'openmmlab': 'OpenMMLab backbone (stem.*)',
    'detectron2': 'Detectron2 ResNeSt (stem.conv1_*, res2..res5)',
}
CLASSIFIER_PREFIXES = ('fc.', 'linear.')
BN_STATS = ('running_mean', 'running_var', 'num_batches_tracked')
PRETRAINED_KEYS = ('type', 'checkpoint', 'prefix', 'map_location', 'strict')

# A trailing "-<hex>" in a file name is the start of its SHA-256 (torchvision, OpenMMLab).
HASH_SUFFIX = re.compile(r'-([0-9a-f]{8,64})$')


class CheckpointNotFoundError(FileNotFoundError):
    """No file for a checkpoint path or name, and it could not be downloaded."""


class UnsafeCheckpointError(RuntimeError):
    """The file holds pickled Python objects beyond tensors and plain data."""


class CorruptCheckpointError(RuntimeError):
    """The file is truncated, damaged or not a checkpoint at all."""


class ChecksumMismatchError(RuntimeError):
    """The file's SHA-256 does not start with the hash in its name."""


class UnknownLayoutError(ValueError):
    """The keys match none of the known ResNeSt layouts."""


class WeightMismatchError(RuntimeError):
    """Checkpoint and model disagree on backbone keys or shapes."""


# ----------------------------------------------------------------------------- finding files

def checkpoint_url(name: str) -> str | None:
    """Download address of a short name (``resnest50``, ``open-mmlab://resnest50``), or None."""
    if name in OFFICIAL_FILES:
        return OFFICIAL_URL.format(OFFICIAL_FILES[name])
    if name.startswith(OPENMMLAB_SCHEME):
        key = name[len(OPENMMLAB_SCHEME):]
        if key in OPENMMLAB_URLS:
            return OPENMMLAB_URLS[key]
        from mmengine.runner.checkpoint import get_external_models
        return get_external_models().get(key)
    if name.startswith(('http://', 'https://')):
        return name
    return None


def hub_cache_path(url: str) -> Path:
    """Where torch (and mmengine) keep a downloaded file: ``<torch hub dir>/checkpoints/<file>``."""
    return Path(torch.hub.get_dir()) / 'checkpoints' / os.path.basename(urlparse(url).path)


def download(url: str, dst: Path) -> None:
    """Download ``url`` to ``dst`` (a module-level function, so tests can replace it)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(url, str(dst), progress=True)


def resolve_checkpoint(checkpoint: str | os.PathLike) -> Path:
    """Turn a path, URL or short name into a local file, downloading into the hub cache if needed.

    Args:
        checkpoint: A file path, an ``http(s)://`` URL, ``resnest50|101|200|269`` (official
            release) or ``open-mmlab://<name>`` (mmengine's model list).

    Returns:
        The local file. Nothing is downloaded when the file is already in the cache. A file
        whose name ends in ``-<hex>`` is checked against its SHA-256.
    """
    if not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(
            f'checkpoint={checkpoint!r} is invalid; expected a file path, URL or one of '
            f'{known_names()}.')
    path = Path(checkpoint).expanduser()
    if path.is_file():
        verify_sha256(path)
        return path
    url = checkpoint_url(str(checkpoint))
    if url is None:
        raise CheckpointNotFoundError(
            f'checkpoint {str(checkpoint)!r} is neither an existing file nor a known name; '
            f'known names: {known_names()} (or an http(s):// URL).')
    cached = hub_cache_path(url)
    if not cached.is_file():
        print_log(f'Downloading {url} to {cached}', logger='current')
        try:
            download(url, cached)
        except Exception as err:  # offline, HTTP error, disk full: all end the same way
            raise CheckpointNotFoundError(
                f'checkpoint {str(checkpoint)!r}: could not download {url} ({err}). Put the file '
                f'{cached.name} at {cached} (the torch hub cache; TORCH_HOME moves it) and '
                'run again.') from err
    verify_sha256(cached)
    return cached


def known_names() -> str:
    official = ', '.join(OFFICIAL_FILES)
    openmmlab = ', '.join(OPENMMLAB_SCHEME + name for name in OPENMMLAB_URLS)
    return f'{official}, {openmmlab}'


def sha256_of(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(chunk_size), b''):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path) -> None:
    """If the file name ends in ``-<hex>``, check that its SHA-256 starts with that hex."""
    match = HASH_SUFFIX.search(Path(path).stem)
    if match is None:
        return
    expected, actual = match.group(1), sha256_of(path)
    if not actual.startswith(expected):
        raise ChecksumMismatchError(
            f'{path}: SHA-256 {actual[:len(expected)]}... does not match the {expected} in the '
            'file name; the file is incomplete or altered. Delete it and download it again (a '
            'name ending in "-<hex>" is read as the start of its SHA-256; rename the file if '
            'that part is not a hash).')


# ----------------------------------------------------------------------------- safe reading

def _restricted_getattr(obj: Any, name: str) -> Any:
    # mmengine pickles HistoryBuffer's statistics table as getattr(HistoryBuffer, 'mean'), ...
    if obj is HistoryBuffer and name in ('min', 'max', 'current', 'mean'):
        return getattr(obj, name)
    raise pickle.UnpicklingError(f'getattr({obj!r}, {name!r}) is not allowed')


def mmengine_safe_globals() -> list:
    """Allow-list for mmengine training checkpoints: numpy data and the message hub's buffers."""
    multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray
    allowed: list = [HistoryBuffer, np.ndarray, np.dtype, (_restricted_getattr, 'builtins.getattr')]
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        allowed += [getattr(dtypes, name) for name in dtypes.__all__]
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):  # numpy 1.x and 2.x files
        allowed += [(multiarray._reconstruct, f'{module}._reconstruct'),
                    (multiarray.scalar, f'{module}.scalar')]
    return allowed


def load_checkpoint_file(path: str | os.PathLike, map_location: Any = 'cpu') -> Any:
    """``torch.load`` with ``weights_only=True``, turning failures into errors naming the file.

    Raises:
        UnsafeCheckpointError: the file pickles objects other than tensors, plain data, numpy
            data and mmengine's ``HistoryBuffer``.
        CorruptCheckpointError: truncated, damaged or not a torch file.
    """
    path = Path(path)
    try:
        with torch.serialization.safe_globals(mmengine_safe_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        detail = _refusal_detail(str(err))
        if detail is None:
            raise CorruptCheckpointError(_corrupt_message(path, err)) from None
        raise UnsafeCheckpointError(
            f'refusing to load {path}: it holds pickled Python objects beyond tensors and plain '
            f'data ({detail}). Checkpoints are read with torch.load(weights_only=True) because '
            'unpickling arbitrary objects can run code. If you trust where the file came from, '
            're-save just its state dict with torch.save and load that.') from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError, AttributeError) as err:
        if isinstance(err, FileNotFoundError):
            raise CheckpointNotFoundError(f'checkpoint file {path} does not exist.') from None
        raise CorruptCheckpointError(_corrupt_message(path, err)) from None


def _refusal_detail(message: str) -> str | None:
    """What the weights-only unpickler refused (a class or call), or None if it did not."""
    refused = re.search(r'GLOBAL (\S+) was not an allowed global', message)
    if refused:
        return refused.group(1)
    refused = re.search(r'Can only build .*? but got (\S+)|(getattr\(.*?\)) is not allowed',
                        message)
    if refused:
        return refused.group(1) or refused.group(2)
    return None


def _corrupt_message(path: Path, err: Exception) -> str:
    reason = str(err).split('\n')[0][:200] or type(err).__name__
    return (f'cannot read checkpoint {path}: the file is truncated, damaged or not a PyTorch '
            f'checkpoint ({type(err).__name__}: {reason}). Download or convert it again.')


# ----------------------------------------------------------------------------- layouts

def _rename(key: str, rules: Iterable[tuple[str, str]]) -> str:
    for pattern, replacement in rules:
        key, count = re.subn(pattern, replacement, key)
        if count:
            return key
    return key


OFFICIAL_TO_MM = (
    (r'^conv1\.([01346])\.', r'stem.\1.'),
    (r'^bn1\.', 'stem.7.'),
)
MM_TO_OFFICIAL = (
    (r'^stem\.([01346])\.', r'conv1.\1.'),
    (r'^stem\.7\.', 'bn1.'),
)
D2_STEM_TO_MM = (
    (r'^stem\.conv1_1\.norm\.', 'stem.1.'),
    (r'^stem\.conv1_1\.', 'stem.0.'),
    (r'^stem\.conv1_2\.norm\.', 'stem.4.'),
    (r'^stem\.conv1_2\.', 'stem.3.'),
    (r'^stem\.conv1_3\.norm\.', 'stem.7.'),
    (r'^stem\.conv1_3\.', 'stem.6.'),
)
D2_BLOCK_TO_MM = (
    (r'\.conv1\.norm\.', '.bn1.'),
    (r'\.conv3\.norm\.', '.bn3.'),
    (r'\.shortcut\.norm\.', '.downsample.2.'),
    (r'\.shortcut\.', '.downsample.1.'),
)


def _d2_to_mm(key: str) -> str:
    stage = re.match(r'^res([2-5])\.', key)
    if stage is None:
        return _rename(key, D2_STEM_TO_MM)
    key = f'layer{int(stage.group(1)) - 1}.' + key[stage.end():]
    return _rename(key, D2_BLOCK_TO_MM)


KEY_TO_MM: dict[str, Callable[[str], str]] = {
    'official': lambda key: _rename(key, OFFICIAL_TO_MM),
    'openmmlab': lambda key: key,
    'detectron2': _d2_to_mm,
}


def detect_layout(keys: Iterable[str]) -> str | None:
    """Name of the layout (see ``LAYOUTS``) of backbone keys without prefix, or None."""
    keys = list(keys)
    if any(k.startswith('stem.conv1_') or re.match(r'res[2-5]\.', k) for k in keys):
        return 'detectron2'
    if any(k.startswith('stem.') for k in keys):
        return 'openmmlab'
    if any(k.startswith(('conv1.', 'bn1.')) for k in keys):
        return 'official'
    if any(re.match(r'layer[1-4]\.\d+\.', k) for k in keys):
        return 'openmmlab'  # blocks only: their keys are the same in every layout
    return None


@dataclass
class BackboneWeights:
    """Backbone tensors in the OpenMMLab layout, and where they came from.

    Attributes:
        state_dict: ``{key: tensor}`` with OpenMMLab keys (``stem.*``, ``layerX.Y.*``).
        layout: The source layout, a key of ``LAYOUTS``.
        container: ``'bare'``, ``'state_dict'`` or ``'model'``.
        prefix: The prefix stripped from the backbone keys (``''``, ``'backbone.'``, ...).
        dropped: Classifier keys left out (source names).
        ignored: Keys outside the backbone prefix (necks, heads), left out.
    """

    state_dict: dict[str, torch.Tensor]
    layout: str
    container: str = 'bare'
    prefix: str = ''
    dropped: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def describe(self) -> str:
        where = f'{self.container} state dict' if self.container != 'bare' else 'bare state dict'
        prefix = f", prefix '{self.prefix}'" if self.prefix else ''
        return f'{LAYOUTS[self.layout]}; {where}{prefix}'


def unwrap_state_dict(obj: Any, source: str = 'checkpoint') -> tuple[dict, str]:
    """The ``{key: value}`` mapping of a loaded file and its container name.

    Accepts a bare state dict or one under ``state_dict`` (mmengine, mmdet, timm training) or
    ``model`` (Detectron2). A ``module.`` (DataParallel) prefix on every key is removed.
    """
    if not isinstance(obj, Mapping):
        raise TypeError(f'{source}: expected a dict of tensors, got {type(obj).__name__}.')
    container = 'bare'
    for name in ('state_dict', 'model'):
        if isinstance(obj.get(name), Mapping):
            obj, container = obj[name], name
            break
    state_dict = {str(key): torch.from_numpy(value) if isinstance(value, np.ndarray) else value
                  for key, value in obj.items()}
    if state_dict and all(k.startswith('module.') for k in state_dict):
        state_dict = {k[len('module.'):]: v for k, v in state_dict.items()}
    return state_dict, container


def _backbone_prefix(keys: list[str]) -> str:
    for prefix in ('backbone.bottom_up.', 'backbone.'):
        if any(k.startswith(prefix) for k in keys):
            return prefix
    return ''


def to_openmmlab(obj: Any, prefix: str | None = None, source: str = 'checkpoint'
                 ) -> BackboneWeights:
    """Extract the backbone of a loaded checkpoint in any known layout, in OpenMMLab keys.

    Args:
        obj: What :func:`load_checkpoint_file` returned (or a state dict).
        prefix: Backbone key prefix to select and strip. Default: ``backbone.bottom_up.`` or
            ``backbone.`` when such keys exist, else none.
        source: Name of the file, for error messages.

    Raises:
        UnknownLayoutError: the keys match no known layout.
    """
    state_dict, container = unwrap_state_dict(obj, source)
    keys = list(state_dict)
    if prefix is None:
        prefix = _backbone_prefix(keys)
    elif not any(k.startswith(prefix) for k in keys):
        raise UnknownLayoutError(
            f"{source}: no key starts with prefix={prefix!r}; first keys: {keys[:5]}.")
    selected = [k for k in keys if k.startswith(prefix)]
    ignored = [k for k in keys if not k.startswith(prefix)]
    stripped = [k[len(prefix):] for k in selected]
    layout = detect_layout(stripped)
    if layout is None:
        raise UnknownLayoutError(
            f'{source}: keys match no known ResNeSt layout (first keys: {stripped[:5]}); '
            f'supported: {"; ".join(LAYOUTS.values())}, bare or under state_dict/model, '
            "optionally prefixed with 'backbone.' or 'backbone.bottom_up.'.")
    rename = KEY_TO_MM[layout]
    converted, dropped = {}, []
    for key, short in zip(selected, stripped, strict=True):
        if not isinstance(state_dict[key], torch.Tensor):
            raise TypeError(f'{source}: backbone key {key!r} holds a '
                            f'{type(state_dict[key]).__name__}, not a tensor.')
        if short.startswith(CLASSIFIER_PREFIXES):
            dropped.append(key)
        else:
            converted[rename(short)] = state_dict[key]
    return BackboneWeights(converted, layout, container, prefix, dropped, ignored)


def to_official(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenMMLab backbone keys to the official ResNeSt keys (no classifier)."""
    return {_rename(key, MM_TO_OFFICIAL): value for key, value in state_dict.items()}


# ----------------------------------------------------------------------------- strict loading

@dataclass
class LoadReport:
    """What :func:`load_pretrained` did.

    Attributes:
        path: The file read.
        weights: The backbone weights found in it.
        loaded: Model keys that received a tensor.
        missing: Model keys the checkpoint lacks (``num_batches_tracked``, DCN offsets excepted).
        unexpected: Checkpoint keys the model lacks.
        mismatched: ``(key, checkpoint shape, model shape)`` for keys whose shapes differ.
    """

    path: Path
    weights: BackboneWeights
    loaded: list[str]
    missing: list[str]
    unexpected: list[str]
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]]

    @property
    def complete(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)


def compare_state_dicts(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
                        ) -> tuple[list[str], list[str], list[str], list]:
    """Matching, missing, unexpected and shape-mismatched keys of ``source`` against ``target``.

    ``num_batches_tracked`` counts neither as missing nor as unexpected, and the offset
    convolutions of deformable (DCN) layers, which ImageNet weights never have, not as missing
    (mmcv builds them zero-initialised: the DCN starts as the plain convolution).
    """
    def optional(key: str) -> bool:
        return key.endswith('num_batches_tracked')

    matched, mismatched = [], []
    for key, value in source.items():
        if key in target:
            if tuple(value.shape) == tuple(target[key].shape):
                matched.append(key)
            else:
                mismatched.append((key, tuple(value.shape), tuple(target[key].shape)))
    missing = [k for k in target if k not in source and not optional(k) and not dcn_offset(k)]
    unexpected = [k for k in source if k not in target and not optional(k)]
    return matched, missing, unexpected, mismatched


def dcn_offset(key: str) -> bool:
    """Whether a key belongs to the offset convolution of an mmcv DCN layer."""
    return '.conv_offset.' in key


def _architecture(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Depth-related facts readable from OpenMMLab keys: blocks per stage, stem and widths."""
    blocks: dict[int, int] = {}
    for key in state_dict:
        match = re.match(r'layer(\d)\.(\d+)\.', key)
        if match:
            stage, block = int(match.group(1)), int(match.group(2))
            blocks[stage] = max(blocks.get(stage, 0), block + 1)
    facts: dict[str, Any] = {'blocks': tuple(blocks[s] for s in sorted(blocks))}
    if 'stem.6.weight' in state_dict:
        facts['stem_channels'] = state_dict['stem.6.weight'].shape[0]
    if 'layer1.0.conv3.weight' in state_dict:
        facts['base_channels'] = state_dict['layer1.0.conv3.weight'].shape[0] // 4
    if 'layer1.0.conv2.conv.weight' in state_dict and 'layer1.0.conv1.weight' in state_dict:
        facts['radix'] = (state_dict['layer1.0.conv2.conv.weight'].shape[0]
                          // state_dict['layer1.0.conv1.weight'].shape[0])
    return facts


DEPTH_OF_BLOCKS = {
    (1, 1, 1, 1): 14, (2, 2, 2, 2): 26, (3, 4, 6, 3): 50, (3, 4, 23, 3): 101,
    (3, 8, 36, 3): 152, (3, 24, 36, 3): 200, (3, 30, 48, 8): 269,
}


def likely_cause(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> str:
    """A sentence on which model option probably differs from the checkpoint's."""
    have, want = _architecture(source), _architecture(target)
    causes = []
    if have.get('stem_channels') != want.get('stem_channels') and 'stem_channels' in have:
        stem = have['stem_channels']
        causes.append(
            f'the checkpoint\'s stem outputs {stem} channels (official stem_width {stem // 2}) '
            f'but the model has stem_channels={want.get("stem_channels")}: build it with '
            f'stem_channels={stem}')
    if have['blocks'] != want['blocks']:
        depth = DEPTH_OF_BLOCKS.get(have['blocks'])
        depth_text = f' (depth={depth})' if depth else ''
        causes.append(
            f'the checkpoint has {have["blocks"]} blocks per stage{depth_text}, the model '
            f'{want["blocks"]}: check depth and num_stages')
    for option in ('base_channels', 'radix'):
        if option in have and have.get(option) != want.get(option):
            causes.append(f'the checkpoint has {option}={have[option]}, the model '
                          f'{option}={want.get(option)}')
    if not causes:
        return ('the checkpoint was made for a differently configured ResNeSt (depth, '
                'stem_channels, base_channels, radix, groups, base_width, norm_cfg)')
    return '; '.join(causes)


def _mismatch_message(report: LoadReport, target: Mapping[str, torch.Tensor], limit: int = 5
                      ) -> str:
    lines = [f'pretrained weights {report.path} ({report.weights.describe()}) do not fit the '
             f'model: {len(report.loaded)}/{len(target)} tensors match.']
    if report.mismatched:
        shown = ', '.join(f'{k}: checkpoint {list(a)} vs model {list(b)}'
                          for k, a, b in report.mismatched[:limit])
        lines.append(f'{len(report.mismatched)} shape mismatches, first: {shown}.')
    if report.missing:
        lines.append(f'{len(report.missing)} model tensors missing from the checkpoint, '
                     f'first: {report.missing[:limit]}.')
    if report.unexpected:
        lines.append(f'{len(report.unexpected)} unexpected checkpoint tensors, first: '
                     f'{report.unexpected[:limit]}.')
    lines.append(f'Likely cause: {likely_cause(report.weights.state_dict, target)}.')
    lines.append("To load only what matches, pass strict=False (init_cfg=dict(type='Pretrained', "
                 'checkpoint=..., strict=False)).')
    return ' '.join(lines)


def load_pretrained(
    model: nn.Module,
    checkpoint: str | os.PathLike,
    prefix: str | None = None,
    strict: bool = True,
    map_location: Any = 'cpu',
    logger: Any = 'current',
) -> LoadReport:
    """Load ResNeSt backbone weights of any known layout into ``model``, loudly.

    Args:
        model: A backbone with OpenMMLab keys (:class:`resnest_mm.ResNeSt`).
        checkpoint: Path, URL or short name (see :func:`resolve_checkpoint`).
        prefix: Backbone key prefix in the file. Default: detected.
        strict: Raise :class:`WeightMismatchError` when a backbone tensor is missing,
            unexpected or of another shape. With False, load what matches and log the rest.
        map_location: Passed to ``torch.load``.
        logger: mmengine logger (name) for the summary.

    Returns:
        A :class:`LoadReport`.
    """
    if not isinstance(strict, bool):
        raise TypeError(f'strict={strict!r} is invalid; expected True or False.')
    path = resolve_checkpoint(checkpoint)
    weights = to_openmmlab(load_checkpoint_file(path, map_location), prefix, source=str(path))
    target = model.state_dict()
    matched, missing, unexpected, mismatched = compare_state_dicts(weights.state_dict, target)
    report = LoadReport(path, weights, matched, missing, unexpected, mismatched)
    if strict and not report.complete:
        raise WeightMismatchError(_mismatch_message(report, target))
    model.load_state_dict({k: weights.state_dict[k] for k in matched}, strict=False)
    _log_report(report, target, logger)
    return report


def _log_report(report: LoadReport, target: Mapping[str, torch.Tensor], logger: Any) -> None:
    weights = report.weights
    skipped = []
    loaded = set(report.loaded)
    offsets = [k for k in target if dcn_offset(k) and k not in loaded]
    if offsets:
        skipped.append(f'{len(offsets)} DCN offset tensors keep their zero initialisation')
    if weights.dropped:
        skipped.append(f'dropped {len(weights.dropped)} classifier tensors')
    if weights.ignored:
        heads = sorted({k.split('.')[0] for k in weights.ignored})
        skipped.append(f'ignored {len(weights.ignored)} non-backbone tensors ({", ".join(heads)})')
    extra = f' ({"; ".join(skipped)})' if skipped else ''
    print_log(f'ResNeSt: loaded {len(report.loaded)}/{len(target)} backbone tensors from '
              f'{report.path} [{weights.describe()}]{extra}', logger=logger)
    if not report.complete:
        print_log(
            f'ResNeSt: partial load (strict=False): {len(report.missing)} model tensors kept '
            f'their initialisation {report.missing[:5]}, {len(report.unexpected)} checkpoint '
            f'tensors unused {report.unexpected[:5]}, {len(report.mismatched)} shape '
            f'mismatches skipped {[k for k, _, _ in report.mismatched[:5]]}',
            logger=logger, level=logging.WARNING)


def split_pretrained_cfg(init_cfg: Any) -> tuple[dict | None, list[dict]]:
    """Split an mmengine ``init_cfg`` into the ``Pretrained`` entry (as kwargs) and the rest.

    Returns:
        ``(kwargs for load_pretrained or None, the other init configs)``.
    """
    if init_cfg is None:
        return None, []
    cfgs = [init_cfg] if isinstance(init_cfg, Mapping) else list(init_cfg)
    pretrained = [c for c in cfgs if c.get('type') == 'Pretrained']
    others = [c for c in cfgs if c.get('type') != 'Pretrained']
    if not pretrained:
        return None, others
    if len(pretrained) > 1:
        raise ValueError(f'init_cfg={init_cfg!r} is invalid; give one Pretrained entry.')
    cfg = dict(pretrained[0])
    unknown = sorted(set(cfg) - set(PRETRAINED_KEYS))
    if unknown:
        raise ValueError(
            f"init_cfg=dict(type='Pretrained', ...) has unknown keys {unknown}; allowed: "
            f'{", ".join(PRETRAINED_KEYS)}.')
    if 'checkpoint' not in cfg:
        raise ValueError("init_cfg=dict(type='Pretrained') needs checkpoint=PATH_OR_NAME.")
    cfg.pop('type')
    return cfg, others


# ----------------------------------------------------------------------------- conversion

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
        dst: Output path, before the hash is added (``resnest50_mm.pth``).
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
    bar = _progress_bar(len(renamed)) if progress else None
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


def _progress_bar(total: int):
    from mmengine.utils import ProgressBar
    return ProgressBar(total)


def _save_with_hash(payload: Any, dst: Path) -> tuple[Path, str]:
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix='.tmp', dir=dst.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        digest = sha256_of(Path(tmp))
        suffix = dst.suffix or '.pth'
        final = dst.with_name(f'{dst.stem}-{digest[:8]}{suffix}')
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return final, digest
