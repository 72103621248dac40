"""Build a backbone or a whole model from an mm config, for the export and picture tools
(SyncBN turned into BN, weights loaded strictly)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from torch import nn

from ..models.sync_bn import replace_norm_types

PARTS = ('backbone', 'model')


def sync_bn_to_bn(node: Any) -> Any:
    """Copy of a config node with every SyncBN norm replaced by BN (single-process use)."""
    node = copy.deepcopy(node)
    replace_norm_types(node, 'BN')
    return node


def build_from_config(
    config: str | Path, checkpoint: str | None = None, part: str = 'backbone'
) -> nn.Module:
    """Build ``model.backbone`` (``part='backbone'``) or the whole ``model`` of an mm config,
    with SyncBN turned into BN, load ``checkpoint`` strictly if given (:func:`load_strictly`),
    and return it in eval mode.

    A full-model checkpoint (keys ``backbone.*``) or a backbone-only one both load into the
    backbone. The config's ``default_scope`` (mmdet, mmseg) picks the registry.
    """
    from mmengine.config import Config, ConfigDict
    from mmengine.registry import MODELS, init_default_scope

    import resnest_mm  # noqa: F401  (registers resnest_mm.ResNeSt)

    if part not in PARTS:
        raise ValueError(f'part={part!r} is invalid; allowed: {", ".join(PARTS)}.')
    if not Path(config).is_file():
        raise FileNotFoundError(f'config file {str(config)!r} does not exist.')
    cfg = Config.fromfile(str(config))
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    # ConfigDict again: detectors read their train_cfg/test_cfg by attribute
    model_cfg = ConfigDict(sync_bn_to_bn(copy.deepcopy(cfg.model.to_dict())))
    model = MODELS.build(model_cfg.get('backbone', model_cfg) if part == 'backbone' else model_cfg)
    if checkpoint is not None:
        load_strictly(model, checkpoint, part)
    return model.eval()


def load_strictly(model: nn.Module, checkpoint: str | Path, part: str) -> None:
    """Load ``checkpoint`` into ``model``; every tensor of the model must come from the file.

    A ResNeSt backbone goes through :func:`resnest_mm.pretrained.load_pretrained` (any known
    layout); otherwise the file's state dict (under ``state_dict``/``model``, ``module.``
    removed) must match the model key for key, after keeping only the ``backbone.`` entries of
    a whole-model file when ``part='backbone'``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: keys missing from the file, unexpected in it, or of another shape.
    """
    from ..models.resnest import ResNeSt
    from ..pretrained import load_checkpoint_file, load_pretrained, unwrap_state_dict

    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f'checkpoint file {str(checkpoint)!r} does not exist.')
    if part == 'backbone' and isinstance(model, ResNeSt):
        load_pretrained(model, str(checkpoint))
        return
    state_dict, _ = unwrap_state_dict(load_checkpoint_file(checkpoint), source=str(checkpoint))
    if part == 'backbone' and any(k.startswith('backbone.') for k in state_dict):
        state_dict = {k[len('backbone.'):]: v for k, v in state_dict.items()
                      if k.startswith('backbone.')}
    where = f'checkpoint {str(checkpoint)!r} does not fit the {part} of the config'
    try:
        result = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as err:  # tensors of another shape
        raise ValueError(f'{where}: {err}') from None
    if result.missing_keys or result.unexpected_keys:
        missing, unexpected = result.missing_keys, result.unexpected_keys
        raise ValueError(
            f'{where}: {len(missing)} tensors missing from the file (first: {missing[:3]}), '
            f'{len(unexpected)} unexpected in it (first: {unexpected[:3]}).')

