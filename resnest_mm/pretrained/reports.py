"""What a strict load found: the :class:`LoadReport`, its log lines and its error message."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from mmengine.logging import print_log

from .layouts import BackboneWeights, dcn_offset


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
        from ..models.arch import STAGE_BLOCKS  # data only; here to keep imports one way

        depth = {blocks: depth for depth, blocks in STAGE_BLOCKS.items()}.get(have['blocks'])
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


def mismatch_message(report: LoadReport, target: Mapping[str, torch.Tensor], limit: int = 5
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


def log_report(report: LoadReport, target: Mapping[str, torch.Tensor], logger: Any) -> None:
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
