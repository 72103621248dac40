"""Build a backbone or a whole model from an mm config, for the export and picture tools."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from torch import nn

PARTS = ('backbone', 'model')
SYNC_NORMS = ('SyncBN', 'MMSyncBN')


def sync_bn_to_bn(node: Any) -> Any:
    """Copy of a config node with every SyncBN norm replaced by BN (single-process use)."""
    if isinstance(node, dict):
        node = {k: sync_bn_to_bn(v) for k, v in node.items()}
        if node.get('type') in SYNC_NORMS:
            node['type'] = 'BN'
        return node
    if isinstance(node, (list, tuple)):
        return type(node)(sync_bn_to_bn(v) for v in node)
    return node


def build_from_config(
    config: str | Path, checkpoint: str | None = None, part: str = 'backbone'
) -> nn.Module:
    """Build ``model.backbone`` (``part='backbone'``) or the whole ``model`` of an mm config,
    with SyncBN turned into BN, load ``checkpoint`` if given, and return it in eval mode.

    A full-model checkpoint (keys ``backbone.*``) or a backbone-only one both load into the
    backbone. The config's ``default_scope`` (mmdet, mmseg) picks the registry.
    """
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner import load_checkpoint

    import resnest_mm  # noqa: F401  (registers resnest_mm.ResNeSt)

    if part not in PARTS:
        raise ValueError(f'part={part!r} is invalid; allowed: {", ".join(PARTS)}.')
    if not Path(config).is_file():
        raise FileNotFoundError(f'config file {str(config)!r} does not exist.')
    cfg = Config.fromfile(str(config))
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    model_cfg = sync_bn_to_bn(copy.deepcopy(cfg.model.to_dict()))
    if part == 'backbone':
        model = MODELS.build(model_cfg.get('backbone', model_cfg))
        revise = [(r'^module\.', ''), (r'^backbone\.', '')]
    else:
        model = MODELS.build(model_cfg)
        revise = [(r'^module\.', '')]
    if checkpoint is not None:
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f'checkpoint file {str(checkpoint)!r} does not exist.')
        load_checkpoint(model, checkpoint, map_location='cpu', strict=False, revise_keys=revise)
    return model.eval()
