"""Finding checkpoint files: short names and URLs, the torch hub cache, the Hugging Face hub
cache (``hf-hub:timm/<name>``), download, SHA-256 check."""

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

# timm's ResNeSt repos on the Hugging Face hub (``timm/<name>.<tag>``, file ``model.safetensors``,
# official/timm key layout): the ResNeSt arguments that build each architecture, and the tag of
# its one published weight set. stem_channels is twice timm's stem_width (deep stem output).
HF_HUB_SCHEME = 'hf-hub:'
HF_HUB_FILE = 'model.safetensors'
HF_HUB_MODELS: dict[str, tuple[str, dict]] = {
    'resnest14d': ('gluon_in1k', dict(depth=14, stem_channels=64)),
    'resnest26d': ('gluon_in1k', dict(depth=26, stem_channels=64)),
    'resnest50d': ('in1k', dict(depth=50, stem_channels=64)),
    'resnest101e': ('in1k', dict(depth=101, stem_channels=128)),
    'resnest200e': ('in1k', dict(depth=200, stem_channels=128)),
    'resnest269e': ('in1k', dict(depth=269, stem_channels=128)),
    'resnest50d_4s2x40d': ('in1k', dict(depth=50, stem_channels=64, radix=4, groups=2,
                                        base_width=40, avd_first=True)),
    'resnest50d_1s4x24d': ('in1k', dict(depth=50, stem_channels=64, radix=1, groups=4,
                                        base_width=24, avd_first=True)),
}

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


def hf_hub_cache_dir() -> Path:
    """The Hugging Face hub cache, found as ``huggingface_hub`` finds it.

    ``HF_HUB_CACHE`` (or the older ``HUGGINGFACE_HUB_CACHE``), else ``$HF_HOME/hub``, else
    ``$XDG_CACHE_HOME/huggingface/hub``, else ``~/.cache/huggingface/hub``.
    """
    for var in ('HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE'):
        if os.environ.get(var):
            return Path(os.path.expandvars(os.environ[var])).expanduser()
    home = os.environ.get('HF_HOME') or os.path.join(
        os.environ.get('XDG_CACHE_HOME') or os.path.join('~', '.cache'), 'huggingface')
    return Path(os.path.expandvars(home)).expanduser() / 'hub'


def parse_hf_hub_name(name: str) -> tuple[str, dict]:
    """``hf-hub:timm/<arch>[.<tag>]`` -> (the repo id ``timm/<arch>.<tag>``, ResNeSt arguments).

    Without a tag the published one is used (``resnest50d`` -> ``timm/resnest50d.in1k``).

    Raises:
        CheckpointNotFoundError: not a timm ResNeSt repo this package builds.
    """
    repo = name[len(HF_HUB_SCHEME):]
    org, _, model = repo.partition('/')
    arch, _, tag = model.partition('.')
    if org != 'timm' or arch not in HF_HUB_MODELS:
        raise CheckpointNotFoundError(
            f'checkpoint {name!r} is not a supported Hugging Face hub name; supported: '
            f'{", ".join(HF_HUB_SCHEME + "timm/" + a for a in HF_HUB_MODELS)} (optionally with '
            'the tag, e.g. hf-hub:timm/resnest50d.in1k).')
    default_tag, kwargs = HF_HUB_MODELS[arch]
    return f'timm/{arch}.{tag or default_tag}', dict(kwargs)


def hf_hub_cached_file(repo_id: str, filename: str = HF_HUB_FILE,
                       cache_dir: Path | None = None) -> Path | None:
    """The file of ``repo_id`` at the revision ``refs/main`` names, if it is in the cache.

    The layout is the hub client's: ``models--<org>--<name>/refs/main`` holds a commit hash and
    ``models--<org>--<name>/snapshots/<hash>/<filename>`` the file (usually a link into
    ``blobs/``).
    """
    root = (cache_dir or hf_hub_cache_dir()) / ('models--' + repo_id.replace('/', '--'))
    ref = root / 'refs' / 'main'
    if not ref.is_file():
        return None
    path = root / 'snapshots' / ref.read_text().strip() / filename
    return path if path.is_file() else None


def hf_hub_download(repo_id: str, filename: str, cache_dir: Path) -> Path:
    """Download through ``huggingface_hub`` into ``cache_dir`` (a module-level function, so tests
    can replace it). Raises ImportError without the client."""
    from huggingface_hub import hf_hub_download as download_file
    print_log(f'Downloading {filename} of {repo_id} into {cache_dir}', logger='current')
    return Path(download_file(repo_id, filename, cache_dir=str(cache_dir)))


def resolve_hf_hub(name: str) -> Path:
    """The local ``model.safetensors`` of ``hf-hub:timm/<name>``: from the hub cache, else
    downloaded through ``huggingface_hub`` (the ``hub`` extra) when it is installed and online.

    Raises:
        CheckpointNotFoundError: unsupported name, or not cached and not downloadable; the
            message names the repo, the file and the command that fetches it.
    """
    repo_id, _ = parse_hf_hub_name(name)
    cache_dir = hf_hub_cache_dir()
    cached = hf_hub_cached_file(repo_id, HF_HUB_FILE, cache_dir)
    if cached is not None:
        return cached
    fetch = f'`hf download {repo_id} {HF_HUB_FILE}` (pip install "resnest_mm[hub]")'
    try:
        return hf_hub_download(repo_id, HF_HUB_FILE, cache_dir)
    except ImportError:
        reason = 'huggingface_hub is not installed'
    except Exception as err:  # offline (HF_HUB_OFFLINE), HTTP error, ...: all end the same way
        reason = str(err).split('\n')[0][:200] or type(err).__name__
    raise CheckpointNotFoundError(
        f'checkpoint {name!r}: {HF_HUB_FILE} of the Hugging Face repo {repo_id} is not in the '
        f'hub cache {cache_dir} and could not be downloaded ({reason}); fetch it with {fetch} '
        'and run again.')


def resolve_checkpoint(checkpoint: str | os.PathLike) -> Path:
    """Turn a path, URL or name into a local file, downloading into a cache if needed.

    Args:
        checkpoint: A file path (``.pth`` or ``.safetensors``), an ``http(s)://`` URL,
            ``resnest50|101|200|269`` (official release), ``open-mmlab://<name>`` (mmengine's
            model list) or ``hf-hub:timm/<name>`` (a timm ResNeSt repo, see ``HF_HUB_MODELS``).

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
    if str(checkpoint).startswith(HF_HUB_SCHEME):
        return resolve_hf_hub(str(checkpoint))
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
    return f'{official}, {openmmlab}, {HF_HUB_SCHEME}timm/<name> ({", ".join(HF_HUB_MODELS)})'


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
