"""Finding checkpoint files: short names and URLs, the torch hub cache, download, SHA-256 check."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from urllib.parse import urlparse

import torch
from mmengine.logging import print_log
from mmengine.runner.checkpoint import get_external_models

from .errors import CheckpointNotFoundError, ChecksumMismatchError

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

# A trailing "-<hex>" in a file name is the start of its SHA-256 (torchvision, OpenMMLab).
HASH_SUFFIX = re.compile(r'-([0-9a-f]{8,64})$')


def checkpoint_url(name: str) -> str | None:
    """Download address of a short name (``resnest50``, ``open-mmlab://resnest50``), or None."""
    if name in OFFICIAL_FILES:
        return OFFICIAL_URL.format(OFFICIAL_FILES[name])
    if name.startswith(OPENMMLAB_SCHEME):
        key = name[len(OPENMMLAB_SCHEME):]
        if key in OPENMMLAB_URLS:
            return OPENMMLAB_URLS[key]
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
