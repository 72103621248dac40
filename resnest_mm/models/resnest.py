"""ResNeSt bottleneck and backbone, drop-in compatible with MMDetection and MMSegmentation.

The module tree (and so every ``state_dict`` key) matches ``mmdet.models.backbones.ResNeSt``
and ``mmseg.models.backbones.ResNeSt``: a deep stem ``stem.{0..8}``, a max pool, and stages
``layer1..layerN`` of :class:`ResNeStBottleneck` blocks whose shortcut is
``downsample.{0: AvgPool, 1: conv, 2: norm}``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.utils.checkpoint as cp
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmengine.model import BaseModule, Sequential
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..pretrained import load_pretrained, split_pretrained_cfg
from ..registry import MODELS
from . import memory
from .arch import STAGE_BLOCKS
from .drop import DropBlock2d, DropPath, drop_path_rates, set_dropblock_prob
from .split_attention import SCRIPTABLE_NORM_ABBRS, ScriptedNorms, SplitAttentionConv2d
from .validation import check_backbone_args, check_input


class DeepStem(nn.Sequential):
    """Three (conv, norm, ReLU) triples, indices ``0..8`` as MMDetection's ``stem``; within
    :func:`~.memory.recompute`, backward recomputes each ReLU output."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            for layer in self:
                x = layer(x)
            return x
        for i in range(0, len(self), 3):
            x = memory.norm_act(self[i + 1], self[i + 2], self[i](x))
        return x


class ResLayer(Sequential):
    """A stage: mmengine's ``Sequential`` of bottlenecks (so their ``init_cfg`` runs), which
    TorchScript compiles without mmengine's ``is_init`` property."""

    __jit_unused_properties__ = ['is_init']


class ResNeStBottleneck(ScriptedNorms, BaseModule):
    """Bottleneck block of ResNeSt: 1x1 conv, 3x3 split attention, 1x1 conv, plus shortcut.

    A strided block downsamples with a 3x3 average pool next to the split attention
    ("avd"), not with a strided convolution.

    Args:
        in_channels (int): Input channels.
        planes (int): Base width of the block; it outputs ``planes * 4`` channels.
        stride (int): Stride of the block. Default: 1.
        dilation (int): Dilation (and padding) of the 3x3 convolution. Default: 1.
        downsample (nn.Module | None): Shortcut projection. Default: None (identity).
        groups (int): Cardinality of the split attention. Default: 1.
        base_width (int): Width per group when ``groups > 1``. Default: 4.
        base_channels (int): Reference width for ``base_width``. Default: 64.
        radix (int): Splits per cardinal group. Default: 2.
        reduction_factor (int): Squeeze ratio of the attention. Default: 4.
        avg_down_stride (bool): Downsample with an average pool instead of a strided
            3x3 convolution. Default: True.
        avd_first (bool): Put that pool before the split attention instead of after it.
            Default: False.
        first_block_avd (bool): Have that pool (3x3, stride 1) even when the block does not
            stride, as the first blocks of the authors' dilated models do. Default: False.
        conv_cfg (dict | None): Convolution config. Default: None.
        norm_cfg (dict): Norm layer config. Default: ``dict(type='BN')``.
        with_cp (bool): Recompute the block in backward (gradient checkpointing).
            Default: False.
        drop_path_rate (float): Stochastic-depth probability of the residual branch.
            Default: 0.0 (off).
        dropblock (dict | None): ``dict(drop_prob=..., block_size=...)`` puts a
            :class:`DropBlock2d` after ``norm1``, after the split attention and after
            ``norm3``, as the official recipe. Default: None (off).
        dcn (dict | None): Deformable convolution config (e.g. ``dict(type='DCNv2',
            deform_groups=1, fallback_on_stride=False)``) used as the split convolution;
            ``fallback_on_stride=True`` keeps a plain convolution where that convolution is
            strided. Never modified. Default: None.
        init_cfg (dict | list[dict] | None): mmengine initialisation config.

    Shape:
        - Input: ``(B, in_channels, H, W)``
        - Output: ``(B, planes * 4, ceil(H / stride), ceil(W / stride))``
    """

    expansion = 4
    __jit_unused_properties__ = ['norm1', 'norm3', 'is_init']  # is_init: mmengine's BaseModule

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 4,
        base_channels: int = 64,
        radix: int = 2,
        reduction_factor: int = 4,
        avg_down_stride: bool = True,
        avd_first: bool = False,
        first_block_avd: bool = False,
        conv_cfg: dict | None = None,
        norm_cfg: dict = dict(type='BN'),
        with_cp: bool = False,
        drop_path_rate: float = 0.0,
        dropblock: dict | None = None,
        dcn: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg)
        width = planes if groups == 1 else (planes * base_width // base_channels) * groups
        out_channels = planes * self.expansion
        self.with_cp = with_cp
        self.avd_first = avd_first
        use_avd = avg_down_stride and (stride > 1 or first_block_avd)

        self.conv1 = build_conv_layer(conv_cfg, in_channels, width, 1, bias=False)
        self.norm1_name, norm1 = build_norm_layer(norm_cfg, width, postfix=1)
        self.add_module(self.norm1_name, norm1)
        split_stride = 1 if use_avd else stride
        self.conv2 = SplitAttentionConv2d(
            width, width, kernel_size=3, stride=split_stride, padding=dilation,
            dilation=dilation, groups=groups, radix=radix, reduction_factor=reduction_factor,
            conv_cfg=split_conv_cfg(conv_cfg, dcn, split_stride), norm_cfg=norm_cfg)
        self.avd_layer = nn.AvgPool2d(3, stride, padding=1) if use_avd else None
        self.conv3 = build_conv_layer(conv_cfg, width, out_channels, 1, bias=False)
        self.norm3_name, norm3 = build_norm_layer(norm_cfg, out_channels, postfix=3)
        self.add_module(self.norm3_name, norm3)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        # Parameter-free, and absent unless asked for: state_dict and outputs stay unchanged.
        self.dropblock1 = self.dropblock2 = self.dropblock3 = None
        if dropblock is not None:
            self.dropblock1 = DropBlock2d(**dropblock)
            self.dropblock2 = DropBlock2d(**dropblock)
            self.dropblock3 = DropBlock2d(**dropblock)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else None

    @property
    def norm1(self) -> nn.Module:
        return getattr(self, self.norm1_name)

    @property
    def norm3(self) -> nn.Module:
        return getattr(self, self.norm3_name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return self.relu(self._residual(x))
        if self.with_cp and x.requires_grad:
            out = cp.checkpoint(self._residual, x, use_reentrant=False)
        else:
            with memory.recompute():  # backward recomputes cheap maps (models/memory.py)
                out = self._residual(x)
        return self.relu(out)

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        """Before the final ReLU: 1x1 conv, BN, ReLU; split attention with its average pool
        (before or after it); 1x1 conv, BN; plus the shortcut."""
        out = self.conv1(x)
        if torch.jit.is_scripting():
            out = self._scripted_norm1(out)
            if self.dropblock1 is not None:
                out = self.dropblock1(out)
            out = self.relu(out)
        else:
            out = memory.norm_act(self.norm1, self.relu, out, self.dropblock1)
        if self.avd_layer is not None and self.avd_first:
            out = self.avd_layer(out)
        out = self.conv2(out)
        if self.dropblock2 is not None:
            out = self.dropblock2(out)
        if self.avd_layer is not None and not self.avd_first:
            out = self.avd_layer(out)
        out = self.conv3(out)
        if torch.jit.is_scripting():
            out = self._scripted_norm3(out)
        else:
            out = memory.norm(self.norm3, out)
        if self.dropblock3 is not None:
            out = self.dropblock3(out)
        if self.drop_path is not None:
            out = self.drop_path(out)
        if self.downsample is None:
            identity = x
        elif torch.jit.is_scripting():
            identity = self.downsample(x)
        else:
            identity = memory.shortcut(self.downsample, x)
        out += identity  # in place: a fresh full-size buffer costs page faults on the CPU
        return out


def split_conv_cfg(conv_cfg: dict | None, dcn: dict | None, stride: int) -> dict | None:
    """Config of the split-attention convolution: ``dcn`` (a copy without
    ``fallback_on_stride``) unless absent, or strided with ``fallback_on_stride``."""
    if dcn is None:
        return conv_cfg
    dcn = dict(dcn)
    if dcn.pop('fallback_on_stride', False) and stride > 1:
        return conv_cfg
    return dcn


@MODELS.register_module()
class ResNeSt(BaseModule):
    """ResNeSt backbone (`Split-Attention Networks <https://arxiv.org/abs/2004.08955>`_).

    Selected in configs as ``type='resnest_mm.ResNeSt'``. For the same arguments its
    ``state_dict`` and outputs equal MMDetection's and MMSegmentation's ``ResNeSt``.

    Args:
        depth (int): One of 14, 26, 50, 101, 152, 200, 269 (see ``arch_settings``).
        in_channels (int): Input image channels. Default: 3.
        stem_channels (int): Output channels of the deep stem: 64 for S-50, 128 for S-101,
            S-200 and S-269 (twice the official ``stem_width``). Default: 64.
        base_channels (int): Width of the first stage. Default: 64.
        num_stages (int): Number of stages, 1 to 4. Default: 4.
        strides (Sequence[int]): Stride of the first block of each stage.
            Default: ``(1, 2, 2, 2)``.
        dilations (Sequence[int]): Dilation of each stage. Default: ``(1, 1, 1, 1)``.
        contract_dilation (bool): Halve the dilation of the first block of a dilated stage,
            as MMSegmentation and the official segmentation models do. Default: False.
        multi_grid (Sequence[int] | None): Dilation of each block of the last stage,
            overriding ``dilations[-1]``. Default: None.
        out_indices (Sequence[int]): Stages whose outputs are returned.
            Default: ``(0, 1, 2, 3)``.
        groups (int): Cardinality. Default: 1.
        base_width (int): Width per group when ``groups > 1``. Default: 4.
        radix (int): Splits per cardinal group (1: sigmoid gating). Default: 2.
        reduction_factor (int): Squeeze ratio of the attention. Default: 4.
        avg_down_stride (bool): Downsample inside blocks with an average pool. Default: True.
        avd_first (bool): Pool before the split attention rather than after. Default: False.
        first_block_avd (bool): Give the first block of stages 2-4 its average pool (3x3,
            stride 1) even where it does not stride, as the authors' dilated segmentation
            models do (their ``is_first``); their checkpoints then give their outputs at
            output stride 8 or 16. No parameters change. Default: False (as MMDetection and
            MMSegmentation).
        frozen_stages (int): -1 freezes nothing, 0 the stem, k the stem and stages 1..k.
            Frozen parameters stop receiving gradients and their norm layers stay in eval mode.
            Default: -1.
        style (str): Only ``'pytorch'`` (stride on the 3x3 convolution); accepted for
            compatibility with mm configs. Default: ``'pytorch'``.
        conv_cfg (dict | None): Convolution config. Default: None.
        norm_cfg (dict): Norm config (BN, SyncBN, GN, any registered norm).
            Default: ``dict(type='BN', requires_grad=True)``.
        norm_eval (bool): Keep every BatchNorm in eval mode during training. Default: False,
            as in the ResNeSt recipes (mmdet's plain ResNet defaults to True, mmseg's to False).
        with_cp (bool): Gradient checkpointing of every block. Default: False.
        drop_path_rate (float): Stochastic depth of the last block; block ``i`` of ``N``
            gets ``drop_path_rate * i / (N - 1)`` (the timm rule). Default: 0.0 (off).
        dropblock (dict | None): ``dict(drop_prob=0.1, block_size=3)`` adds DropBlock to
            the stages in ``stage_with_dropblock`` (see :class:`ResNeStBottleneck`); ramp
            ``drop_prob`` with :meth:`set_dropblock_prob` or ``DropBlockScheduleHook``.
            Default: None (off).
        stage_with_dropblock (Sequence[bool]): Stages with DropBlock.
            Default: ``(False, False, True, True)`` (stages 3 and 4, as the official recipe).
        dcn (dict | None): Deformable split convolution, e.g. ``dict(type='DCNv2',
            deform_groups=1, fallback_on_stride=False)``. Default: None.
        stage_with_dcn (Sequence[bool]): Stages whose blocks use ``dcn``.
            Default: ``(False, False, False, False)``.
        zero_init_residual (bool): Zero-initialise the last norm of each block. Default: True.
        pretrained (str | None): Deprecated alias of
            ``init_cfg=dict(type='Pretrained', checkpoint=pretrained)``. Default: None.
        init_cfg (dict | list[dict] | None): mmengine initialisation config. Default: None
            (Kaiming convolutions, unit norms).

    Shape:
        - Input: ``(B, in_channels, H, W)``
        - Output: a tuple with one ``(B, base_channels * 2**i * 4, H_i, W_i)`` tensor per
          stage ``i`` in ``out_indices``; ``H_i`` is ``H / 4 / prod(strides[:i + 1])``,
          rounded up at each stride.
    """

    arch_settings = STAGE_BLOCKS
    __jit_unused_properties__ = ['is_init']
    block = ResNeStBottleneck
    # Used when init_cfg is None, and before a Pretrained load (which may be partial).
    default_init_cfg = [
        dict(type='Kaiming', layer='Conv2d'),
        dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm']),
    ]

    def __init__(
        self,
        depth: int,
        in_channels: int = 3,
        stem_channels: int = 64,
        base_channels: int = 64,
        num_stages: int = 4,
        strides: Sequence[int] = (1, 2, 2, 2),
        dilations: Sequence[int] = (1, 1, 1, 1),
        contract_dilation: bool = False,
        multi_grid: Sequence[int] | None = None,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        groups: int = 1,
        base_width: int = 4,
        radix: int = 2,
        reduction_factor: int = 4,
        avg_down_stride: bool = True,
        avd_first: bool = False,
        first_block_avd: bool = False,
        frozen_stages: int = -1,
        style: str = 'pytorch',
        conv_cfg: dict | None = None,
        norm_cfg: dict = dict(type='BN', requires_grad=True),
        norm_eval: bool = False,
        with_cp: bool = False,
        drop_path_rate: float = 0.0,
        dropblock: dict | None = None,
        stage_with_dropblock: Sequence[bool] = (False, False, True, True),
        dcn: dict | None = None,
        stage_with_dcn: Sequence[bool] = (False, False, False, False),
        zero_init_residual: bool = True,
        pretrained: str | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        args = {k: v for k, v in locals().items() if k not in ('self', '__class__')}
        check_backbone_args(args)  # every argument by name: the one place they are checked
        if pretrained is not None:
            warnings.warn(
                'ResNeSt: `pretrained` is deprecated, use '
                "init_cfg=dict(type='Pretrained', checkpoint=...)", DeprecationWarning,
                stacklevel=2)
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        if init_cfg is None:
            init_cfg = self.default_init_cfg
        super().__init__(init_cfg)
        self.depth = depth
        self.in_channels = in_channels
        self.num_stages = num_stages
        self.out_indices = tuple(out_indices)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.stage_blocks = self.arch_settings[depth][:num_stages]
        self.out_layers = [f'layer{i + 1}' for i in self.out_indices]  # forward's outputs

        self.stem = self._make_stem(in_channels, stem_channels, conv_cfg, norm_cfg)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        block_kwargs = dict(
            groups=groups, base_width=base_width, base_channels=base_channels, radix=radix,
            reduction_factor=reduction_factor, avg_down_stride=avg_down_stride,
            avd_first=avd_first, conv_cfg=conv_cfg, norm_cfg=norm_cfg, with_cp=with_cp,
            init_cfg=(dict(type='Constant', val=0, override=dict(name='norm3'))
                      if zero_init_residual else None))
        in_planes = stem_channels
        self.res_layers: list[str] = []
        path_rates = drop_path_rates(drop_path_rate, sum(self.stage_blocks))
        for i, num_blocks in enumerate(self.stage_blocks):
            planes = base_channels * 2**i
            block_dilations = self._block_dilations(
                num_blocks, dilations[i], contract_dilation,
                multi_grid if i == num_stages - 1 else None)
            stage_kwargs = dict(
                block_kwargs,
                dropblock=dropblock if stage_with_dropblock[i] else None,
                dcn=dcn if stage_with_dcn[i] else None)
            first = sum(self.stage_blocks[:i])
            layer = self._make_stage(
                in_planes, planes, strides[i], block_dilations, stage_kwargs,
                path_rates[first:first + num_blocks], first_block_avd and i > 0)
            self.add_module(f'layer{i + 1}', layer)
            self.res_layers.append(f'layer{i + 1}')
            in_planes = planes * self.block.expansion
        self.feat_dim = in_planes
        self._freeze_stages()

    @staticmethod
    def _make_stem(
        in_channels: int, stem_channels: int, conv_cfg: dict | None, norm_cfg: dict
    ) -> nn.Sequential:
        """Deep stem: three 3x3 convolutions, the first with stride 2."""
        mid = stem_channels // 2
        layers: list[nn.Module] = []
        for cin, cout, stride in ((in_channels, mid, 2), (mid, mid, 1), (mid, stem_channels, 1)):
            layers += [
                build_conv_layer(conv_cfg, cin, cout, 3, stride=stride, padding=1, bias=False),
                build_norm_layer(norm_cfg, cout)[1],
                nn.ReLU(inplace=True),
            ]
        return DeepStem(*layers)

    @staticmethod
    def _block_dilations(
        num_blocks: int, dilation: int, contract: bool, multi_grid: Sequence[int] | None
    ) -> list[int]:
        if multi_grid is not None:
            return list(multi_grid)
        first = dilation // 2 if contract and dilation > 1 else dilation
        return [first] + [dilation] * (num_blocks - 1)

    def _make_stage(
        self, in_planes: int, planes: int, stride: int, dilations: list[int], block_kwargs: dict,
        path_rates: list[float], first_block_avd: bool = False,
    ) -> ResLayer:
        out_planes = planes * self.block.expansion
        downsample = None
        if stride != 1 or in_planes != out_planes:
            downsample = nn.Sequential(
                nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False),
                build_conv_layer(block_kwargs['conv_cfg'], in_planes, out_planes, 1, bias=False),
                build_norm_layer(block_kwargs['norm_cfg'], out_planes)[1],
            )
        blocks = [self.block(in_planes, planes, stride, dilations[0], downsample,
                             drop_path_rate=path_rates[0], first_block_avd=first_block_avd,
                             **block_kwargs)]
        blocks += [
            self.block(out_planes, planes, 1, dilation, None, drop_path_rate=rate, **block_kwargs)
            for dilation, rate in zip(dilations[1:], path_rates[1:], strict=True)
        ]
        return ResLayer(*blocks)

    def forward(self, x: torch.Tensor):
        """The stem, the max pool, then the stages; returns the outputs of the stages in
        ``out_indices``: a tuple, a list in TorchScript (whose tuples have a fixed length)."""
        if torch.jit.is_scripting():
            x = self.maxpool(self.stem(x))
        else:
            check_input(x, self.in_channels)
            with memory.recompute():  # the pool saves the stem's last map: recomputed too
                x = self.maxpool(self.stem(x))
        outs: list[torch.Tensor] = []
        for name, stage in self.named_children():  # TorchScript cannot getattr a name
            if name in self.res_layers:
                x = stage(x)
                if name in self.out_layers:
                    outs.append(x)
        if torch.jit.is_scripting():
            return outs
        return tuple(outs)

    def __prepare_scriptable__(self) -> nn.Module:
        """``torch.jit.script`` compiles this module itself; first say what it cannot compile."""
        if any(isinstance(m, nn.SyncBatchNorm) for m in self.modules()):
            raise ValueError(
                'torch.jit.script: the backbone has SyncBatchNorm layers (norm_cfg type SyncBN '
                'or resnest_mm.CPUSyncBN), which TorchScript cannot compile; script '
                'mmengine.model.revert_sync_batchnorm(model) instead (BatchNorm, same '
                'state_dict).')
        for module in self.modules():
            for attr in ('norm0_name', 'norm1_name', 'norm3_name'):
                name = getattr(module, attr, None)
                if name is not None and name.rstrip('0123456789') not in SCRIPTABLE_NORM_ABBRS:
                    raise ValueError(
                        f'torch.jit.script: {type(module).__name__}.{attr}={name!r} is invalid; '
                        f'norm_cfg must give norm layers named {SCRIPTABLE_NORM_ABBRS} plus an '
                        'index (BN, GN, IN or LN) for the backbone to be scripted.')
        return self

    def set_dropblock_prob(self, drop_prob: float) -> int:
        """Set the probability of every DropBlock (for a schedule that ramps it up); returns
        how many there are."""
        return set_dropblock_prob(self, drop_prob)

    def init_weights(self) -> None:
        """Initialise; a ``Pretrained`` init_cfg entry loads strictly, in any ResNeSt layout.

        mmengine's own ``Pretrained`` loads with ``strict=False``, so a wrong checkpoint would
        silently leave the backbone random. Here the entry goes to
        :func:`resnest_mm.pretrained.load_pretrained` (keys ``checkpoint``, ``prefix``,
        ``map_location``, ``strict``). A strict load overwrites every tensor; before a partial
        one (``strict=False``) the rest of ``init_cfg`` (or the default init) runs.
        """
        pretrained, others = split_pretrained_cfg(self.init_cfg)
        if pretrained is None or self.is_init:
            self._init_from_cfg()
            return
        if pretrained.get('strict', True) is False:
            init_cfg, self.init_cfg = self.init_cfg, others or self.default_init_cfg
            try:
                self._init_from_cfg()
            finally:
                self.init_cfg = init_cfg
        load_pretrained(self, **pretrained)
        self._is_init = True

    def _init_from_cfg(self) -> None:
        already_initialised = self.is_init
        super().init_weights()
        if not already_initialised:
            self._zero_dcn_offsets()

    def _zero_dcn_offsets(self) -> None:
        # The Kaiming entry of init_cfg matches every Conv2d, DCN offset predictors included;
        # deformable convolutions must start as plain ones (zero offsets), as mmcv builds them.
        for module in self.modules():
            offset = getattr(module, 'conv_offset', None)
            if isinstance(offset, nn.Conv2d):
                nn.init.zeros_(offset.weight)
                if offset.bias is not None:
                    nn.init.zeros_(offset.bias)

    def frozen_modules(self) -> list[nn.Module]:
        """The stem and the first ``frozen_stages`` stages (empty when -1)."""
        if self.frozen_stages < 0:
            return []
        return [self.stem] + [getattr(self, f'layer{i}') for i in range(1, self.frozen_stages + 1)]

    def _freeze_stages(self) -> None:
        for module in self.frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> ResNeSt:
        """Set training mode, keeping frozen stages (and all BN when ``norm_eval``) in eval."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self
