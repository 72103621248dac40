"""Detector mode: one Faster R-CNN training iteration and one inference, our config against
MMDetection's, with the same random weights; equality is checked before timing."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..models.sync_bn import replace_norm_types
from ..precision import autocast as amp_autocast
from ..precision import cast_ops_to_fp32, warn_if_bf16_is_slow
from .analysis import count_params, ratios
from .compiled import compiled_copies, compiled_ratios, first_calls, max_abs_diff, time_parts
from .machine import machine_info
from .memory import peak_memory_bytes
from .settings import MEMORY_FORMATS, MMDET, OURS, RunSettings, invalid, validate_run_settings
from .timing import time_interleaved
from .weights import randomize_


@dataclass
class DetectorBenchmarkConfig(RunSettings):
    """One Faster R-CNN training iteration and one inference: our config vs MMDetection's; the
    :class:`RunSettings` (3 repeats by default: an iteration takes seconds) and:

    Args:
        ours: Our config file.
        theirs: MMDetection's config (``mmdet::`` prefix allowed).
        boxes: Ground-truth boxes per synthetic image.
        inference_only: Time inference only (no training iteration, no memory).
        parts: Parts of our detector to time alone, eager and compiled, on the inputs they
            get in an inference (``'backbone'``, ``'neck'``, ``'rpn_head'``, ...).
    """

    repeats: int = 3
    ours: str = 'configs/faster_rcnn_resnest50_fpn.py'
    theirs: str = 'mmdet::resnest/faster-rcnn_s50_fpn_syncbn-backbone+head_ms-range-1x_coco.py'
    boxes: int = 3
    inference_only: bool = False
    parts: tuple[str, ...] = ()


def validate_detector_config(cfg: DetectorBenchmarkConfig) -> None:
    """:func:`validate_run_settings`, then the config file and ``boxes``."""
    validate_run_settings(cfg)
    if not Path(cfg.ours).is_file():
        raise invalid('config', cfg.ours, 'no such config file')
    if cfg.boxes < 1:
        raise invalid('boxes', cfg.boxes, 'allowed: an integer >= 1')


def _load_config(path: str):
    """Load a config; ``mmdet::x.py`` goes through ``_base_`` inheritance, which resolves it."""
    from mmengine.config import Config

    if '::' not in path:
        return Config.fromfile(path)
    import tempfile

    with tempfile.NamedTemporaryFile('w', suffix='.py', delete=False) as f:
        f.write(f'_base_ = {path!r}\n')
    try:
        return Config.fromfile(f.name)
    finally:
        os.unlink(f.name)


def _drop_pretrained(node) -> None:
    """No ``Pretrained`` init_cfg anywhere in a config (no download), in place."""
    if isinstance(node, dict):
        for key, value in list(node.items()):
            if key == 'init_cfg' and isinstance(value, dict) and value.get('type') == 'Pretrained':
                node[key] = None
            else:
                _drop_pretrained(value)
    elif isinstance(node, list):
        for value in node:
            _drop_pretrained(value)


def build_detectors(cfg: DetectorBenchmarkConfig) -> dict[str, nn.Module]:
    """Both detectors (SyncBN as BN, no download), MMDetection's random weights copied to ours."""
    import mmdet.models  # noqa: F401  (registers the detector parts)
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmengine.registry import init_default_scope

    init_default_scope('mmdet')
    import resnest_mm  # noqa: F401

    models = {}
    for name, path in ((OURS, cfg.ours), (MMDET, cfg.theirs)):
        model_cfg = copy.deepcopy(_load_config(path).model)  # a ConfigDict: mmdet reads attributes
        replace_norm_types(model_cfg, 'BN')  # one CPU process
        _drop_pretrained(model_cfg)
        model_cfg['backbone']['init_cfg'] = None
        models[name] = MMDET_MODELS.build(model_cfg)
    randomize_(models[MMDET], cfg.seed)
    models[OURS].load_state_dict(models[MMDET].state_dict(), strict=True)
    return models


def synthetic_detection_batch(cfg: DetectorBenchmarkConfig, num_classes: int) -> dict:
    """Random images with random boxes and labels, as a data loader would give them."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    gen = torch.Generator().manual_seed(cfg.seed)
    height, width = cfg.size
    inputs, samples = [], []
    for _ in range(cfg.batch):
        inputs.append((torch.rand(3, height, width, generator=gen) * 255).to(torch.uint8))
        corner = torch.rand(cfg.boxes, 2, generator=gen) * torch.tensor([width, height]) * 0.6
        extent = (torch.rand(cfg.boxes, 2, generator=gen) * 0.3 + 0.1) * torch.tensor(
            [width, height])
        sample = DetDataSample(metainfo=dict(
            img_shape=(height, width), ori_shape=(height, width), pad_shape=(height, width),
            scale_factor=(1.0, 1.0), batch_input_shape=(height, width)))
        sample.gt_instances = InstanceData(
            bboxes=torch.cat([corner, corner + extent], dim=1),
            labels=torch.randint(num_classes, (cfg.boxes,), generator=gen))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def _detector_steps(model: nn.Module, batch: dict, cfg: DetectorBenchmarkConfig):
    fmt = MEMORY_FORMATS[cfg.memory_format]
    data = model.data_preprocessor(copy.deepcopy(batch), training=True)
    inputs = data['inputs'].to(memory_format=fmt)
    samples = data['data_samples']
    def autocast():
        return amp_autocast(cfg.device, cfg.amp, cfg.amp_dtype)

    def train():
        model.train()
        model.zero_grad(set_to_none=True)
        torch.manual_seed(cfg.seed)  # the same RoI sampling for both detectors
        with autocast():
            losses = model(inputs, samples, mode='loss')
        loss, _ = model.parse_losses(losses)
        loss.backward()
        return loss

    def predict():
        model.eval()
        with torch.no_grad(), autocast():
            return model(inputs, samples, mode='predict')

    return train, predict, inputs


def run_detector_benchmark(cfg: DetectorBenchmarkConfig) -> dict:
    """Time one Faster R-CNN training iteration and one inference for both configs.

    Equality is checked first: the backbone features (eval mode) and the training loss for the
    same RoI sampling seed.
    """
    validate_detector_config(cfg)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    if cfg.amp and cfg.device == 'cpu':
        cast_ops_to_fp32()  # RoIAlign and NMS have no bf16 CPU kernel
        warn_if_bf16_is_slow()
    models = build_detectors(cfg)
    fmt = MEMORY_FORMATS[cfg.memory_format]
    steps: dict[str, Callable[[], object]] = {}
    losses, feats = {}, {}
    for name, model in models.items():
        model.to(device=cfg.device, memory_format=fmt)
        batch = _detector_batch(model, cfg)
        train, predict, inputs = _detector_steps(model, batch, cfg)
        model.eval()
        with torch.no_grad():
            feats[name] = model.extract_feat(inputs)
        losses[name] = None if cfg.inference_only else train().item()
        steps[f'{name}|train'], steps[f'{name}|inference'] = train, predict
    feat_diff = max((a - b).abs().max().item()
                    for a, b in zip(feats[OURS], feats[MMDET], strict=True))
    scale = max(f.abs().max().item() for f in feats[MMDET])
    tol = 1e-2 if cfg.amp else 1e-5
    loss_ok = cfg.inference_only or (
        abs(losses[OURS] - losses[MMDET]) <= tol * max(abs(losses[MMDET]), 1))
    if not (feat_diff <= tol * max(scale, 1.0) and loss_ok):
        raise RuntimeError(
            f'benchmark: detectors differ (features by {feat_diff:.3g} of {scale:.3g}, '
            f'losses {losses[OURS]:.6g} vs {losses[MMDET]:.6g}); timing stopped')
    if cfg.inference_only:
        steps = {name: step for name, step in steps.items() if name.endswith('|inference')}
    compiled = {}
    if cfg.compile:
        compiled = add_compiled_predict(models, cfg, steps, feats)
    timings = time_interleaved(steps, cfg.repeats, cfg.warmup, cfg.device)
    part_times = time_parts(models[OURS], steps[f'{OURS}|inference'], cfg.parts, cfg.repeats,
                            cfg.device) if cfg.parts else {}
    results = {}
    for name, model in models.items():
        results[name] = dict(params=count_params(model),
                             inference_s=timings[f'{name}|inference'])
        if not cfg.inference_only:
            results[name].update(
                train_s=timings[f'{name}|train'],
                train_peak_bytes=peak_memory_bytes(steps[f'{name}|train'], cfg.device),
                inference_peak_bytes=peak_memory_bytes(steps[f'{name}|inference'], cfg.device))
    all_ratios = ratios(results)
    if compiled:
        for name, entry in compiled.items():
            entry['inference_s'] = timings[f'{name}|inference']
        all_ratios.update(compiled_ratios(
            {name: timings[f'{name}|inference'] for name in [*models, *compiled]},
            prefix='detector_'))
    parity = dict(feature_max_abs_diff=feat_diff, feature_scale=scale, loss_ours=losses[OURS],
                  loss_mmdet=losses[MMDET], equal=True)
    return dict(kind='detector', config=asdict(cfg), machine=machine_info(cfg.device),
                parity=parity, models=results, compiled=compiled, parts=part_times,
                ratios=all_ratios,
                targets=COMPILED_DETECTOR_TARGETS if compiled else {})


# Issue 23's target for the compiled detector (Faster R-CNN S-50 at a COCO size, CPU).
COMPILED_DETECTOR_TARGETS = {'compiled_detector_inference_vs_mmdet_eager': 0.85}


def add_compiled_predict(models: dict[str, nn.Module], cfg: RunSettings, steps: dict,
                         feats: dict, parts: list[str] | None = None,
                         batch_fn: Callable | None = None) -> dict[str, dict]:
    """Compile copies of both models (``parts``; None: the default ones), time their first
    predict (compiling), check their features (``extract_feat``) against the eager ones and
    add their predict step to ``steps``."""
    copies = compiled_copies(models, parts, names=list(models))
    new_steps, inputs_of = {}, {}
    for name, (model, _) in copies.items():
        batch = (batch_fn or _detector_batch)(model, cfg)
        _, predict, inputs = _detector_steps(model, batch, cfg)
        new_steps[name], inputs_of[name] = predict, inputs
    first = first_calls(new_steps)
    entries = {}
    for (name, (model, report)), eager in zip(copies.items(), models, strict=True):
        with torch.no_grad():
            feat = model.extract_feat(inputs_of[name])
        diff = max_abs_diff(feat, feats[eager])
        scale = max(f.abs().max().item() for f in feats[eager])
        failed = [f'{p.name}: {p.failed}' for p in report.parts if p.failed]
        if failed:
            raise RuntimeError(f'benchmark: compiling {name} failed ({"; ".join(failed)})')
        if not diff <= 1e-4 * max(scale, 1.0):
            raise RuntimeError(f'benchmark: {name} features differ from eager by {diff:.3g} '
                               f'(largest {scale:.3g}); timing stopped')
        entries[name] = dict(
            first_call_s=first[name], max_abs_diff_vs_eager=diff, output_scale=scale,
            parts={p.name: p.first_call_s for p in report.parts}, dynamic=report.dynamic,
            freezing=report.freezing, cache_dir=str(report.cache))
        steps[f'{name}|inference'] = new_steps[name]
    return entries


def _detector_batch(model: nn.Module, cfg: DetectorBenchmarkConfig) -> dict:
    return synthetic_detection_batch(cfg, model.roi_head.bbox_head.num_classes)
