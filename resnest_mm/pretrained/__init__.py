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
- ``mmpretrain``: mmpretrain's ResNeSt: stem of ConvModules ``stem.{0,1,2}.{conv,bn}``, the
  stride-1 shortcut without its average pool (``downsample.{0,1}``); classifiers prefix it with
  ``backbone.`` and add ``head.fc``.

Any of them may be a bare state dict or wrapped in ``state_dict`` or ``model``. Everything is
converted to the OpenMMLab layout; classifiers (``fc``, ``linear``) are dropped.

Files are safetensors files (``.safetensors``, tensors only) or read with
``torch.load(weights_only=True)``: a file carrying arbitrary pickled objects
is refused. The only non-tensor objects allowed are those of an mmengine training checkpoint
(numpy arrays and scalars, and the ``HistoryBuffer`` of its ``message_hub``).

Modules, one concern each: ``files`` (short names, ``hf-hub:`` names, download, SHA-256),
``reading`` (safe ``torch.load``, safetensors), ``renaming`` (the key maps: official/timm,
Detectron2 and mmpretrain to OpenMMLab),
``layouts`` (layout detection, backbone extraction), ``loading`` (strict load), ``reports``
(what a load found and why it failed), ``convert`` (write a converted file), ``errors``.
"""

from .convert import BN_STATS, ConversionSummary, convert_checkpoint, num_parameters
from .errors import (
    CheckpointNotFoundError,
    ChecksumMismatchError,
    CorruptCheckpointError,
    UnknownLayoutError,
    UnsafeCheckpointError,
    WeightMismatchError,
)
from .files import (
    HASH_SUFFIX,
    HF_HUB_FILE,
    HF_HUB_MODELS,
    HF_HUB_SCHEME,
    OFFICIAL_FILES,
    OFFICIAL_URL,
    OPENMMLAB_SCHEME,
    OPENMMLAB_URLS,
    checkpoint_url,
    download,
    hf_hub_cache_dir,
    hf_hub_cached_file,
    hf_hub_download,
    hub_cache_path,
    known_names,
    parse_hf_hub_name,
    resolve_checkpoint,
    resolve_hf_hub,
    sha256_of,
    verify_sha256,
)
from .layouts import (
    CLASSIFIER_PREFIXES,
    LAYOUTS,
    BackboneWeights,
    dcn_offset,
    detect_layout,
    to_openmmlab,
    unwrap_state_dict,
)
from .loading import (
    PRETRAINED_KEYS,
    compare_state_dicts,
    fetch_pretrained_checkpoints,
    load_pretrained,
    pretrained_checkpoints,
    split_pretrained_cfg,
)
from .reading import (
    allow_mmengine_checkpoints,
    load_checkpoint_file,
    load_safetensors_file,
    mmengine_safe_globals,
)
from .renaming import (
    D2_BLOCK_TO_MM,
    D2_STEM_TO_MM,
    KEY_TO_MM,
    MM_TO_OFFICIAL,
    MMPRETRAIN_STEM_TO_MM,
    OFFICIAL_TO_MM,
    key_map,
    mmpretrain_to_mm,
    to_official,
)
from .reports import LoadReport, likely_cause

__all__ = [
    'BN_STATS',
    'CLASSIFIER_PREFIXES',
    'D2_BLOCK_TO_MM',
    'D2_STEM_TO_MM',
    'HASH_SUFFIX',
    'HF_HUB_FILE',
    'HF_HUB_MODELS',
    'HF_HUB_SCHEME',
    'KEY_TO_MM',
    'LAYOUTS',
    'MMPRETRAIN_STEM_TO_MM',
    'MM_TO_OFFICIAL',
    'OFFICIAL_FILES',
    'OFFICIAL_TO_MM',
    'OFFICIAL_URL',
    'OPENMMLAB_SCHEME',
    'OPENMMLAB_URLS',
    'PRETRAINED_KEYS',
    'BackboneWeights',
    'CheckpointNotFoundError',
    'ChecksumMismatchError',
    'ConversionSummary',
    'CorruptCheckpointError',
    'LoadReport',
    'UnknownLayoutError',
    'UnsafeCheckpointError',
    'WeightMismatchError',
    'allow_mmengine_checkpoints',
    'checkpoint_url',
    'compare_state_dicts',
    'convert_checkpoint',
    'dcn_offset',
    'detect_layout',
    'download',
    'fetch_pretrained_checkpoints',
    'hf_hub_cache_dir',
    'hf_hub_cached_file',
    'hf_hub_download',
    'hub_cache_path',
    'key_map',
    'known_names',
    'likely_cause',
    'load_checkpoint_file',
    'load_pretrained',
    'load_safetensors_file',
    'mmengine_safe_globals',
    'mmpretrain_to_mm',
    'num_parameters',
    'parse_hf_hub_name',
    'pretrained_checkpoints',
    'resolve_checkpoint',
    'resolve_hf_hub',
    'sha256_of',
    'split_pretrained_cfg',
    'to_official',
    'to_openmmlab',
    'unwrap_state_dict',
    'verify_sha256',
]
