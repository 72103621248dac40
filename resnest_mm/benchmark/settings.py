"""What a benchmark run measures and how: the settings dataclasses and their validation."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.arch import STAGE_BLOCKS
from ..precision import AMP_DTYPES
from ..precision.autocast import DEFAULT_AMP_DTYPE

MEMORY_FORMATS = {'contiguous': torch.contiguous_format, 'channels_last': torch.channels_last}
REFERENCES = ('ResNetV1d', 'ResNet', 'none')
MMDET_RESNEST_DEPTHS = (50, 101, 152, 200)
# Shallow variants for quick runs: MMDetection's own block classes, one or two per stage.
SHALLOW_STAGE_BLOCKS = {depth: STAGE_BLOCKS[depth] for depth in (14, 26)}
DEPTHS = tuple(SHALLOW_STAGE_BLOCKS) + MMDET_RESNEST_DEPTHS
OURS, MMDET, REFERENCE = 'resnest_mm.ResNeSt', 'mmdet.ResNeSt', 'mmdet.{}'
OURS_PLAIN = 'resnest_mm.ResNeSt, memory path off'
# Issue 13's targets for the fp32 default path (ours / MMDetection's ResNeSt, medians of at
# least 11 interleaved repeats) on a CPU, 2 threads, S-50, batch 2, 512x512: never slower in
# training or inference, and the training peak memory the recipes reached kept.
CPU_TARGETS = {'train_time': 1.0, 'inference_time': 1.0, 'train_peak_memory': 0.73}


@dataclass
class RunSettings:
    """How the measurements run (shared by the backbone and the detector modes).

    Args:
        batch: Images per batch.
        size: Input height and width.
        device: ``'cpu'`` or ``'cuda'``.
        amp: autocast: float16 on CUDA, bfloat16 on the CPU (``amp_dtype`` overrides).
        amp_dtype: ``'float16'`` or ``'bfloat16'`` (CUDA); None: the device's default.
        memory_format: ``'contiguous'`` or ``'channels_last'`` (inputs and weights).
        threads: ``torch.set_num_threads`` value; None leaves it as it is.
        repeats: Timed repeats of each measurement (median and spread are reported).
        warmup: Untimed runs of each model before timing.
        seed: Seed of the random weights and input.
        compile: Also time the inference of ours and of the codebase's model compiled as
            ``--compile`` compiles them (:mod:`resnest_mm.deploy.compile`).
    """

    batch: int = 2
    size: tuple[int, int] = (512, 512)
    device: str = 'cpu'
    amp: bool = False
    amp_dtype: str | None = None
    memory_format: str = 'contiguous'
    threads: int | None = 2
    repeats: int = 5
    warmup: int = 1
    seed: int = 0
    compile: bool = False


@dataclass
class BenchmarkConfig(RunSettings):
    """What to measure on the backbones; the :class:`RunSettings` and:

    Args:
        depth: ResNeSt depth: MMDetection's 50, 101, 152, 200, or 14 / 26 (its own bottlenecks,
            one / two per stage) for quick runs.
        stem_channels: Deep-stem width; None: 64 for depth 50, else 128 (the published nets).
        base_channels: Width of the first stage (64 as published; smaller for smoke runs).
        frozen_stages: As in the backbones; 1 is the detection recipe.
        reference: MMDetection ResNet class timed as the FLOP reference, or ``'none'``.
        flops_size: Square input size of the FLOP count compared with the published figure.
        compile_train: With ``compile``, also time a compiled training step of ours.
        memory_path_off: Also time ours with the memory path switched off
            (:mod:`resnest_mm.models.memory`), interleaved with the rest.
    """

    depth: int = 50
    stem_channels: int | None = None
    base_channels: int = 64
    frozen_stages: int = 1
    reference: str = 'ResNetV1d'
    flops_size: int | None = 224
    compile_train: bool = False
    memory_path_off: bool = False

    @property
    def resolved_stem_channels(self) -> int:
        if self.stem_channels is not None:
            return self.stem_channels
        return 64 if self.depth == 50 else 128


def invalid(option: str, value, allowed: str) -> ValueError:
    """The one-line error for a wrong option: its name, the value and what is allowed."""
    return ValueError(f'benchmark: --{option.replace("_", "-")}={value!r} is invalid; {allowed}')


def validate_run_settings(cfg: RunSettings) -> None:
    """Raise ``ValueError`` naming the option, its value and what is allowed; then set
    ``amp_dtype`` to the dtype the run uses under ``amp`` (recorded with the results)."""
    if cfg.device not in ('cpu', 'cuda'):
        raise invalid('device', cfg.device, "allowed: 'cpu', 'cuda'")
    if cfg.device == 'cuda' and not torch.cuda.is_available():
        raise invalid('device', cfg.device,
                      'CUDA is not available here (torch.cuda.is_available() is False); use cpu')
    if cfg.amp_dtype is not None:
        allowed = ['bfloat16'] if cfg.device == 'cpu' else list(AMP_DTYPES)
        if cfg.amp_dtype not in allowed:
            raise invalid('amp_dtype', cfg.amp_dtype,
                          f'allowed on {cfg.device}: {", ".join(allowed)}')
    if cfg.memory_format not in MEMORY_FORMATS:
        raise invalid('memory_format', cfg.memory_format, f'allowed: {", ".join(MEMORY_FORMATS)}')
    positive = dict(batch=cfg.batch, repeats=cfg.repeats)
    if cfg.threads is not None:
        positive['threads'] = cfg.threads
    for name, value in positive.items():
        if not isinstance(value, int) or value < 1:
            raise invalid(name, value, 'allowed: an integer >= 1')
    if not isinstance(cfg.warmup, int) or cfg.warmup < 0:
        raise invalid('warmup', cfg.warmup, 'allowed: an integer >= 0')
    if len(cfg.size) != 2 or min(cfg.size) < 32:
        raise invalid('size', cfg.size, 'allowed: height and width of at least 32 pixels')
    if cfg.amp and cfg.amp_dtype is None:
        cfg.amp_dtype = DEFAULT_AMP_DTYPE[cfg.device]


def validate_config(cfg: BenchmarkConfig) -> None:
    """:func:`validate_run_settings`, then the backbone options."""
    validate_run_settings(cfg)
    if cfg.depth not in DEPTHS:
        raise invalid('depth', cfg.depth, f'allowed: {DEPTHS} (MMDetection\'s ResNeSt depths '
                      'and two shallow variants of it)')
    if cfg.reference not in REFERENCES:
        raise invalid('reference', cfg.reference, f'allowed: {", ".join(REFERENCES)}')
    if cfg.reference != 'none' and cfg.depth == 200:
        raise invalid('reference', cfg.reference,
                      f'MMDetection\'s ResNet has no depth {cfg.depth}; use --reference none')
    if not isinstance(cfg.base_channels, int) or cfg.base_channels < 1:
        raise invalid('base_channels', cfg.base_channels, 'allowed: an integer >= 1')
    if not -1 <= cfg.frozen_stages <= 4:
        raise invalid('frozen_stages', cfg.frozen_stages, 'allowed: -1 to 4')
    if cfg.stem_channels is not None and (cfg.stem_channels < 2 or cfg.stem_channels % 2):
        raise invalid('stem_channels', cfg.stem_channels, 'allowed: an even integer >= 2')
