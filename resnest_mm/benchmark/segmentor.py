"""Segmentor mode: DeepLabV3 inference, our config against MMSegmentation's with its own ResNeSt,
the same random weights, eager and (``compile``) compiled; the logits are checked first."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..models.sync_bn import replace_norm_types
from .analysis import count_params
from .compiled import compiled_copies, compiled_ratios, first_calls, max_abs_diff
from .detector import _load_config
from .machine import machine_info
from .settings import MEMORY_FORMATS, OURS, RunSettings, invalid, validate_run_settings
from .timing import time_interleaved
from .weights import randomize_

MMSEG = 'mmseg.ResNeSt'
# Issue 23's target for the compiled segmentor (DeepLabV3 S-50, CPU, 2 threads).
COMPILED_SEGMENTOR_TARGETS = {'compiled_segmentor_inference_vs_mmseg_eager': 0.80}


@dataclass
class SegmentorBenchmarkConfig(RunSettings):
    """DeepLabV3 inference (whole image): our config vs MMSegmentation's; the
    :class:`RunSettings` (batch 1 by default, as the test loop runs) and:

    Args:
        ours: Our config file.
        theirs: MMSegmentation's config (``mmseg::`` prefix allowed); its backbone takes
            ``depth`` and ``stem_channels`` from ours.
    """

    batch: int = 1
    ours: str = 'configs/deeplabv3_resnest50_d8_ade20k.py'
    theirs: str = 'mmseg::resnest/resnest_s101-d8_deeplabv3_4xb4-160k_ade20k-512x512.py'


def build_segmentors(cfg: SegmentorBenchmarkConfig) -> dict[str, nn.Module]:
    """Both segmentors (SyncBN as BN, no download), MMSegmentation's random weights copied to
    ours; MMSegmentation's backbone gets the depth and stem width of ours."""
    import mmseg.models  # noqa: F401  (registers the segmentor parts)
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS as MMSEG_MODELS

    init_default_scope('mmseg')
    import resnest_mm  # noqa: F401

    ours_cfg = copy.deepcopy(_load_config(cfg.ours).model)
    theirs_cfg = copy.deepcopy(_load_config(cfg.theirs).model)
    for key in ('depth', 'stem_channels'):
        theirs_cfg['backbone'][key] = ours_cfg['backbone'][key]
    models = {}
    for name, model_cfg in ((OURS, ours_cfg), (MMSEG, theirs_cfg)):
        replace_norm_types(model_cfg, 'BN')  # one CPU process
        model_cfg['backbone']['init_cfg'] = None
        model_cfg['pretrained'] = None
        models[name] = MMSEG_MODELS.build(model_cfg)
    randomize_(models[MMSEG], cfg.seed)
    models[OURS].load_state_dict(models[MMSEG].state_dict(), strict=True)
    return models


def synthetic_segmentation_batch(cfg: RunSettings) -> dict:
    """Random images as a data loader gives them (uint8), with their metadata."""
    from mmseg.structures import SegDataSample

    gen = torch.Generator().manual_seed(cfg.seed)
    height, width = cfg.size
    inputs, samples = [], []
    for _ in range(cfg.batch):
        inputs.append((torch.rand(3, height, width, generator=gen) * 255).to(torch.uint8))
        samples.append(SegDataSample(metainfo=dict(
            img_shape=(height, width), ori_shape=(height, width), pad_shape=(height, width),
            padding_size=[0, 0, 0, 0], scale_factor=(1.0, 1.0))))
    return dict(inputs=inputs, data_samples=samples)


def _segmentor_predict(model: nn.Module, cfg: RunSettings):
    data = model.data_preprocessor(synthetic_segmentation_batch(cfg), False)
    inputs = data['inputs'].to(memory_format=MEMORY_FORMATS[cfg.memory_format])
    samples = data['data_samples']
    metas = [s.metainfo for s in samples]

    def predict():
        model.eval()
        with torch.no_grad():
            return model(inputs, copy.deepcopy(samples), mode='predict')

    def logits():
        model.eval()
        with torch.no_grad():
            return model.encode_decode(inputs, metas)

    return predict, logits


def run_segmentor_benchmark(cfg: SegmentorBenchmarkConfig) -> dict:
    """Time the inference (``mode='predict'``) of both DeepLabV3s, eager and, with
    ``cfg.compile``, compiled (backbone and decode head); logits checked before timing."""
    validate_run_settings(cfg)
    if not Path(cfg.ours).is_file():
        raise invalid('config', cfg.ours, 'no such config file')
    if cfg.amp:
        raise invalid('amp', cfg.amp, 'the segmentor mode runs fp32 only')
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    models = build_segmentors(cfg)
    steps: dict[str, Callable[[], object]] = {}
    logits = {}
    for name, model in models.items():
        model.to(device=cfg.device, memory_format=MEMORY_FORMATS[cfg.memory_format])
        steps[f'{name}|inference'], logits_fn = _segmentor_predict(model, cfg)
        logits[name] = logits_fn()
    diff = max_abs_diff(logits[OURS], logits[MMSEG])
    scale = logits[MMSEG].abs().max().item()
    if not diff <= 1e-5 * max(scale, 1.0):
        raise RuntimeError(f'benchmark: segmentors differ (logits by {diff:.3g} of {scale:.3g});'
                           ' timing stopped')
    compiled = {}
    if cfg.compile:
        copies = compiled_copies(models, None, names=list(models))
        new_steps, logit_fns = {}, {}
        for name, (model, _) in copies.items():
            new_steps[name], logit_fns[name] = _segmentor_predict(model, cfg)
        first = first_calls(new_steps)
        for (name, (_, report)), eager in zip(copies.items(), models, strict=True):
            failed = [f'{p.name}: {p.failed}' for p in report.parts if p.failed]
            if failed:
                raise RuntimeError(f'benchmark: compiling {name} failed ({"; ".join(failed)})')
            got = max_abs_diff(logit_fns[name](), logits[eager])
            if not got <= 1e-4 * max(scale, 1.0):
                raise RuntimeError(f'benchmark: {name} logits differ from eager by {got:.3g}')
            compiled[name] = dict(
                first_call_s=first[name], max_abs_diff_vs_eager=got, output_scale=scale,
                parts={p.name: p.first_call_s for p in report.parts}, dynamic=report.dynamic,
                freezing=report.freezing, cache_dir=str(report.cache))
            steps[f'{name}|inference'] = new_steps[name]
    timings = time_interleaved(steps, cfg.repeats, cfg.warmup, cfg.device)
    results = {name: dict(params=count_params(model), inference_s=timings[f'{name}|inference'])
               for name, model in models.items()}
    ratios = dict(inference_time=(results[OURS]['inference_s']['median']
                                  / results[MMSEG]['inference_s']['median']))
    if compiled:
        for name, entry in compiled.items():
            entry['inference_s'] = timings[f'{name}|inference']
        ratios.update(compiled_ratios(
            {name: timings[f'{name}|inference'] for name in [*models, *compiled]},
            names=(OURS, MMSEG), prefix='segmentor_'))
    parity = dict(logits_max_abs_diff=diff, logits_scale=scale, equal=True)
    return dict(kind='segmentor', config=asdict(cfg), machine=machine_info(cfg.device),
                parity=parity, models=results, compiled=compiled, ratios=ratios,
                targets=COMPILED_SEGMENTOR_TARGETS if compiled else {})
