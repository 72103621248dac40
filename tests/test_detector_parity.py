"""Whole-model parity: our configs predict what MMDetection's / MMSegmentation's ResNeSt configs do.

Each pair is built from the official mm ResNeSt config and from ours, with SyncBN turned into BN
(CPU) and no pretrained download. The mm model gets random weights and statistics; its
``state_dict`` is loaded strictly into ours (the layout of the released mm-zoo checkpoints), and
both predict on the same image in eval mode through ``test_step`` (pre-processing, backbone,
neck, heads, post-processing). Released mm checkpoints therefore give the published numbers
through our configs.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch
from conftest import randomize_
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import DefaultScope
from torch.nn.modules.batchnorm import _BatchNorm

from resnest_mm import ResNeSt

mmdet_registry = importlib.import_module('mmdet.registry')
mmseg_registry = importlib.import_module('mmseg.registry')
from mmdet.models.backbones import ResNeSt as MMDetResNeSt  # noqa: E402
from mmdet.structures import DetDataSample  # noqa: E402
from mmseg.models.backbones import ResNeSt as MMSegResNeSt  # noqa: E402
from mmseg.models.segmentors import EncoderDecoder as SegEncoderDecoder  # noqa: E402
from mmseg.structures import SegDataSample  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / 'configs'
TOL = 1e-5
# Applied to both models of a pair: fewer proposals and detections keep the box and mask heads
# cheap on the CPU, and keeping every score (random weights score low) makes every detection
# slot compared; the other test-time settings are the published ones.
DETECTION_TEST_CFG = {
    'model.test_cfg.rpn.max_per_img': 32,
    'model.test_cfg.rcnn.max_per_img': 10,
    'model.test_cfg.rcnn.score_thr': 0.0,
}
PAIRS = {
    'faster_rcnn_resnest50_fpn':
        'mmdet::resnest/faster-rcnn_s50_fpn_syncbn-backbone+head_ms-range-1x_coco.py',
    'cascade_mask_rcnn_resnest50_fpn':
        'mmdet::resnest/cascade-mask-rcnn_s50_fpn_syncbn-backbone+head_ms-1x_coco.py',
    'deeplabv3_resnest101_d8_ade20k':
        'mmseg::resnest/resnest_s101-d8_deeplabv3_4xb4-160k_ade20k-512x512.py',
}


def build_for_cpu(cfg: Config) -> torch.nn.Module:
    """Build ``cfg.model`` in its scope, without pretrained weights, with BN instead of SyncBN."""
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.pop('pretrained', None)
    model_cfg.backbone.init_cfg = None
    registry = mmdet_registry if cfg.default_scope == 'mmdet' else mmseg_registry
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = registry.MODELS.build(model_cfg)
    return revert_sync_batchnorm(model).eval()


def randomize_linear_(model: torch.nn.Module, seed: int = 1) -> None:
    """Random fully connected layers that keep the activation scale through ReLUs (He uniform)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                bound = (6 / module.in_features) ** 0.5
                module.weight.copy_(
                    (torch.rand(module.weight.shape, generator=gen) * 2 - 1) * bound)


def calibrate_norms_(model: torch.nn.Module, run: Callable[[], Any]) -> Any:
    """Set every BatchNorm's running statistics to those of its input during ``run()``.

    With random statistics the activations of the deep box, mask and segmentation heads shrink
    towards zero, and every RoI ends up with the same class scores: the comparison would then be
    blind to a wrong backbone. Calibrated norms keep each head's inputs of order one.

    Returns what ``run()`` returns: the calibrated model's output, as each norm's statistics are
    set before it runs.
    """
    def set_statistics(norm, args):
        x = args[0].transpose(0, 1).flatten(1)
        if x.size(1) > 1:  # one value per channel (attention after pooling): keep random ones
            norm.running_mean.copy_(x.mean(1))
            norm.running_var.copy_(x.var(1) + 1e-3)

    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    handles = [norm.register_forward_pre_hook(set_statistics) for norm in norms]
    try:
        return run()
    finally:
        for handle in handles:
            handle.remove()


class Pair(NamedTuple):
    theirs: torch.nn.Module  # built from the mm config, random weights, eval mode
    ours: torch.nn.Module  # built from our config, holding the same state_dict, eval mode
    inputs: torch.Tensor  # the compared image
    sample: object  # its data sample
    expected: object  # the mm model's prediction for it


def build_pair(name: str) -> Pair:
    """Build both models of ``name``, give them the same random weights, predict with theirs.

    The norms are calibrated on the compared image (see :func:`calibrate_norms_`).
    """
    theirs_cfg = get_config(PAIRS[name])
    ours_cfg = Config.fromfile(str(CONFIGS / f'{name}.py'))
    if theirs_cfg.default_scope == 'mmdet':
        for cfg in (theirs_cfg, ours_cfg):
            cfg.merge_from_dict(DETECTION_TEST_CFG)
    theirs, ours = build_for_cpu(theirs_cfg), build_for_cpu(ours_cfg)
    randomize_(theirs)
    randomize_linear_(theirs)
    inputs, sample = example(theirs)
    expected, = calibrate_norms_(theirs, lambda: predict(theirs, inputs, sample))
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return Pair(theirs, ours, inputs, sample, expected)


def example(model: torch.nn.Module, seed: int = 0) -> tuple[torch.Tensor, object]:
    """A uint8 ``(3, H, W)`` image with smooth structure, and its data sample: 128x160 for
    detectors, 64x64 for segmentors."""
    if isinstance(model, SegEncoderDecoder):
        height, width = 64, 64
        sample = SegDataSample(metainfo=dict(
            img_path='synthetic.jpg', ori_shape=(height, width), img_shape=(height, width),
            pad_shape=(height, width), scale_factor=(1.0, 1.0), flip=False))
    else:
        height, width = 128, 160
        sample = DetDataSample(metainfo=dict(
            img_id=0, img_path='synthetic.jpg', ori_shape=(height, width),
            img_shape=(height, width), scale_factor=(1.0, 1.0)))
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, height // 16, width // 16, generator=gen)
    smooth = torch.nn.functional.interpolate(coarse, size=(height, width), mode='bilinear')
    noise = torch.rand(1, 3, height, width, generator=gen) * 0.1
    return ((smooth + noise).clamp(0, 1)[0] * 255).to(torch.uint8), sample


def predict(model: torch.nn.Module, inputs: torch.Tensor, sample) -> list:
    """``model.test_step`` on one image: pre-processing, network and post-processing."""
    with torch.no_grad():
        return model.test_step(dict(inputs=[inputs], data_samples=[copy.deepcopy(sample)]))


@pytest.fixture(scope='module')
def faster_rcnn():
    return build_pair('faster_rcnn_resnest50_fpn')


@pytest.fixture(scope='module')
def cascade_mask_rcnn():
    return build_pair('cascade_mask_rcnn_resnest50_fpn')


@pytest.fixture(scope='module')
def deeplabv3():
    return build_pair('deeplabv3_resnest101_d8_ade20k')


@pytest.mark.parametrize('fixture', ['faster_rcnn', 'cascade_mask_rcnn'])
def test_detector_predictions_match_mmdet(fixture, request):
    pair = request.getfixturevalue(fixture)
    assert type(pair.ours.backbone) is ResNeSt
    assert type(pair.theirs.backbone) is MMDetResNeSt
    expected = pair.expected.pred_instances
    actual = predict(pair.ours, pair.inputs, pair.sample)[0].pred_instances
    assert len(expected) == DETECTION_TEST_CFG['model.test_cfg.rcnn.max_per_img']
    assert len(actual) == len(expected)
    assert torch.equal(actual.labels, expected.labels)
    torch.testing.assert_close(actual.scores, expected.scores, rtol=0, atol=TOL)
    torch.testing.assert_close(actual.bboxes, expected.bboxes, rtol=0, atol=TOL)
    if pair.theirs.with_mask:
        assert expected.masks.any()
        assert actual.masks.shape == expected.masks.shape
        assert torch.equal(actual.masks, expected.masks)


def test_deeplabv3_logits_match_mmseg(deeplabv3):
    assert type(deeplabv3.ours.backbone) is ResNeSt
    assert type(deeplabv3.theirs.backbone) is MMSegResNeSt
    expected = deeplabv3.expected
    actual, = predict(deeplabv3.ours, deeplabv3.inputs, deeplabv3.sample)
    assert actual.seg_logits.data.shape == (150, 64, 64)
    assert expected.pred_sem_seg.data.unique().numel() > 1  # not a constant prediction
    torch.testing.assert_close(
        actual.seg_logits.data, expected.seg_logits.data, rtol=0, atol=TOL)
    assert torch.equal(actual.pred_sem_seg.data, expected.pred_sem_seg.data)
