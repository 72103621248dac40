"""Argument and input checks for the ResNeSt backbone.

Every message names the option, the value given and what is allowed, so a wrong config fails
at build time with a sentence a user can act on, not deep inside a forward pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from mmengine.registry import MODELS as MMENGINE_MODELS
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from .arch import STAGE_BLOCKS

NORM_BASES = (_BatchNorm, _InstanceNorm, nn.GroupNorm, nn.LayerNorm)


def _fail(option: str, value: Any, allowed: str, exc: type[Exception] = ValueError) -> None:
    raise exc(f'ResNeSt: {option}={value!r} is invalid; {allowed}.')


def _check_positive_int(option: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(option, value, 'expected an int >= 1', TypeError)
    if value < 1:
        _fail(option, value, 'expected an int >= 1')


def _check_int_sequence(option: str, value: Any, length: int, name_of_length: str) -> None:
    if not isinstance(value, Sequence) or isinstance(value, str):
        _fail(option, value, f'expected a sequence of {length} ints', TypeError)
    if len(value) != length:
        _fail(option, value, f'expected {length} values, one per stage ({name_of_length})')
    for item in value:
        _check_positive_int(f'{option}[...]', item)


def registered_norm_types() -> list[str]:
    """Names of the norm layers known to mmengine's MODELS registry (BN, SyncBN, GN, ...)."""
    return sorted(
        name for name, cls in MMENGINE_MODELS.module_dict.items()
        if isinstance(cls, type) and issubclass(cls, NORM_BASES))


def check_norm_cfg(norm_cfg: Any) -> None:
    if not isinstance(norm_cfg, Mapping) or 'type' not in norm_cfg:
        _fail('norm_cfg', norm_cfg, "expected a dict with a 'type' key, e.g. dict(type='BN')",
              TypeError)
    norm_type = norm_cfg['type']
    if isinstance(norm_type, type):
        if not issubclass(norm_type, NORM_BASES):
            _fail("norm_cfg['type']", norm_type, 'expected a normalization layer class')
        return
    with MMENGINE_MODELS.switch_scope_and_registry(None) as registry:
        cls = registry.get(norm_type)
    if cls is None or not (isinstance(cls, type) and issubclass(cls, NORM_BASES)):
        _fail("norm_cfg['type']", norm_type,
              f'allowed: {", ".join(registered_norm_types())} (or a registered norm layer)')
    if norm_type == 'GN' and 'num_groups' not in norm_cfg:
        _fail('norm_cfg', dict(norm_cfg), "GN needs 'num_groups', e.g. dict(type='GN', "
              'num_groups=32)')


def check_backbone_args(args: Mapping[str, Any]) -> None:
    """Raise ValueError/TypeError, naming the option, for any argument of :class:`ResNeSt`
    outside its domain. ``args``: its ``__init__`` arguments by name, all of them (so a new
    option needs a check here only if it has a domain to check)."""
    depth, num_stages = args['depth'], args['num_stages']
    if depth not in STAGE_BLOCKS:
        _fail('depth', depth, f'allowed: {", ".join(map(str, STAGE_BLOCKS))}')
    for option in ('in_channels', 'stem_channels', 'base_channels', 'groups', 'base_width',
                   'radix', 'reduction_factor'):
        _check_positive_int(option, args[option])
    if args['stem_channels'] % 2:
        _fail('stem_channels', args['stem_channels'],
              'expected an even number (the stem halves it)')
    if isinstance(num_stages, bool) or not isinstance(num_stages, int) or not 1 <= num_stages <= 4:
        _fail('num_stages', num_stages, 'allowed: 1, 2, 3, 4')
    _check_int_sequence('strides', args['strides'], num_stages, f'num_stages={num_stages}')
    _check_int_sequence('dilations', args['dilations'], num_stages, f'num_stages={num_stages}')
    if args['multi_grid'] is not None:
        _check_int_sequence('multi_grid', args['multi_grid'],
                            STAGE_BLOCKS[depth][num_stages - 1],
                            f'blocks in the last stage of depth {depth}')
    _check_out_indices(args['out_indices'], num_stages)
    frozen_stages = args['frozen_stages']
    if (isinstance(frozen_stages, bool) or not isinstance(frozen_stages, int)
            or not -1 <= frozen_stages <= num_stages):
        _fail('frozen_stages', frozen_stages,
              f'allowed: -1 (none), 0 (stem) to {num_stages} (stem and all stages)')
    if args['style'] != 'pytorch':
        _fail('style', args['style'],
              "only 'pytorch' is supported (stride on the 3x3 convolution)")
    check_norm_cfg(args['norm_cfg'])
    for option in ('contract_dilation', 'avg_down_stride', 'avd_first', 'first_block_avd',
                   'norm_eval', 'with_cp', 'zero_init_residual'):
        if not isinstance(args[option], bool):
            _fail(option, args[option], 'expected True or False', TypeError)
    if args['first_block_avd'] and not args['avg_down_stride']:
        _fail('first_block_avd', args['first_block_avd'],
              'it needs avg_down_stride=True (the pool it adds is that pool)')
    _check_regularisation(args, num_stages)
    _check_dcn(args['dcn'], args['stage_with_dcn'], num_stages)
    pretrained = args['pretrained']
    if pretrained is not None and not isinstance(pretrained, str):
        _fail('pretrained', pretrained, 'expected a checkpoint path or name', TypeError)
    if pretrained is not None and args['init_cfg'] is not None:
        _fail('pretrained', pretrained, 'give either pretrained or init_cfg, not both')


def _check_out_indices(out_indices: Any, num_stages: int) -> None:
    if (not isinstance(out_indices, Sequence) or isinstance(out_indices, str)
            or not out_indices):
        _fail('out_indices', out_indices, 'expected a non-empty sequence of stage indices',
              TypeError)
    bad = [i for i in out_indices if isinstance(i, bool) or not isinstance(i, int)
           or not 0 <= i < num_stages]
    if bad:
        _fail('out_indices', out_indices,
              f'each index must be in 0..{num_stages - 1} for num_stages={num_stages}')


def check_input(x: Any, in_channels: int) -> None:
    """Check that the backbone input is a ``(B, in_channels, H, W)`` tensor."""
    if torch.jit.is_scripting() or torch.jit.is_tracing():
        return
    if not isinstance(x, torch.Tensor):
        raise TypeError(f'ResNeSt: input must be a torch.Tensor, got {type(x).__name__}.')
    if x.dim() != 4:
        raise ValueError(
            f'ResNeSt: input must be 4-D (B, C, H, W); got shape {tuple(x.shape)}.')
    if x.size(1) != in_channels:
        raise ValueError(
            f'ResNeSt: input has {x.size(1)} channels (shape {tuple(x.shape)}), but the '
            f'backbone was built with in_channels={in_channels}.')


def _check_stage_flags(option: str, value: Any, num_stages: int) -> None:
    if (not isinstance(value, Sequence) or isinstance(value, str)
            or not all(isinstance(v, bool) for v in value)):
        _fail(option, value, f'expected a sequence of {num_stages} bools, one per stage',
              TypeError)
    if len(value) < num_stages:
        _fail(option, value, f'expected at least {num_stages} values (num_stages={num_stages})')


def _check_probability(option: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        _fail(option, value, 'expected a float in [0, 1)')


def _check_regularisation(args: Mapping[str, Any], num_stages: int) -> None:
    _check_probability('drop_path_rate', args['drop_path_rate'])
    _check_stage_flags('stage_with_dropblock', args['stage_with_dropblock'], num_stages)
    dropblock = args['dropblock']
    if dropblock is None:
        return
    if not isinstance(dropblock, Mapping):
        _fail('dropblock', dropblock, 'expected None or dict(drop_prob=..., block_size=...)',
              TypeError)
    unknown = sorted(set(dropblock) - {'drop_prob', 'block_size'})
    if unknown:
        _fail('dropblock', dict(dropblock), f'unknown keys {unknown}; allowed: drop_prob, '
              'block_size')
    _check_probability("dropblock['drop_prob']", dropblock.get('drop_prob', 0.0))
    _check_positive_int("dropblock['block_size']", dropblock.get('block_size', 3))


def _check_dcn(dcn: Any, stage_with_dcn: Any, num_stages: int) -> None:
    _check_stage_flags('stage_with_dcn', stage_with_dcn, num_stages)
    if dcn is None:
        return
    if not isinstance(dcn, Mapping) or 'type' not in dcn:
        _fail('dcn', dcn, "expected None or a dict with a 'type' key, e.g. dict(type='DCNv2', "
              'deform_groups=1)', TypeError)
    import mmcv.ops  # noqa: F401  (registers DCN and DCNv2)
    with MMENGINE_MODELS.switch_scope_and_registry(None) as registry:
        cls = registry.get(dcn['type'])
    if cls is None:
        _fail("dcn['type']", dcn['type'], "expected a registered convolution such as 'DCN' or "
              "'DCNv2'")
    if not isinstance(dcn.get('fallback_on_stride', False), bool):
        _fail("dcn['fallback_on_stride']", dcn['fallback_on_stride'], 'expected a bool',
              TypeError)
