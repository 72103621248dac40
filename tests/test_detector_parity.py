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
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest
import torch
from helpers import randomize_
from mmdet.models.backbones import ResNeSt as MMDetResNeSt
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmseg.models.backbones import ResNeSt as MMSegResNeSt
from mmseg.models.segmentors import EncoderDecoder as SegEncoderDecoder
from mmseg.structures import SegDataSample
from torch.nn.modules.batchnorm import _BatchNorm
from zoo import MM_COUNTERPARTS, build_model, load_mm, load_ours

from resnest_mm import ResNeSt

TOL = 1e-5
# Applied to both models of a pair: fewer proposals and detections keep the box and mask heads
# cheap on the CPU, and keeping every score (random weights score low) makes every detection
# slot compared; the other test-time settings are the published ones.
DETECTION_TEST_CFG = {
    'model.test_cfg.rpn.max_per_img': 32,
    'model.test_cfg.rcnn.max_per_img': 10,
    'model.test_cfg.rcnn.score_thr': 0.0,
}
# Our configs compared with the mm config they mirror (zoo.MM_COUNTERPARTS). A pair costs about
# 10 s of CPU; the default run keeps those that cover the others' modules: Mask R-CNN holds all of
# Faster R-CNN's (same RPN, box head and test pipeline) and Cascade Mask R-CNN all of Cascade
# R-CNN's; DeepLabV3+ reads the first stage of the S-101 too, FCN and PSPNet only its last two.
slow = pytest.mark.slow
DETECTORS = [
    pytest.param('faster_rcnn_resnest50_fpn', marks=slow),
    'mask_rcnn_resnest50_fpn',
    pytest.param('cascade_rcnn_resnest50_fpn', marks=slow),
    'cascade_mask_rcnn_resnest50_fpn',
]
SEGMENTORS = [
    'deeplabv3_resnest101_d8_ade20k',
    pytest.param('fcn_resnest101_d8_cityscapes', marks=slow),
    pytest.param('pspnet_resnest101_d8_cityscapes', marks=slow),
    'deeplabv3plus_resnest101_d8_cityscapes',
]
DETECTION_SIZE = (128, 160)
# segmentors see an eighth of their training crop: 64x64 for ADE20K, 64x128 for Cityscapes
SEGMENTATION_SHRINK = 8


def build_for_cpu(cfg: Config) -> torch.nn.Module:
    """Build ``cfg.model`` in its scope, without pretrained weights, with BN instead of SyncBN."""
    return revert_sync_batchnorm(build_model(cfg)).eval()


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
    theirs_cfg, ours_cfg = load_mm(MM_COUNTERPARTS[name]), load_ours(name)
    if theirs_cfg.default_scope == 'mmdet':
        size = DETECTION_SIZE
        for cfg in (theirs_cfg, ours_cfg):
            cfg.merge_from_dict(DETECTION_TEST_CFG)
    else:
        size = tuple(side // SEGMENTATION_SHRINK for side in theirs_cfg.crop_size)
    theirs, ours = build_for_cpu(theirs_cfg), build_for_cpu(ours_cfg)
    randomize_(theirs)
    randomize_linear_(theirs)
    inputs, sample = example(theirs, size)
    expected, = calibrate_norms_(theirs, lambda: predict(theirs, inputs, sample))
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return Pair(theirs, ours, inputs, sample, expected)


def example(model: torch.nn.Module, size: tuple[int, int],
            seed: int = 0) -> tuple[torch.Tensor, object]:
    """A uint8 ``(3, H, W)`` image with smooth structure of ``size`` (H, W), and its data
    sample for ``model`` (a segmentor or a detector)."""
    height, width = size
    if isinstance(model, SegEncoderDecoder):
        sample = SegDataSample(metainfo=dict(
            img_path='synthetic.jpg', ori_shape=(height, width), img_shape=(height, width),
            pad_shape=(height, width), scale_factor=(1.0, 1.0), flip=False))
    else:
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


@pytest.mark.parametrize('name', DETECTORS)
def test_detector_predictions_match_mmdet(name):
    pair = build_pair(name)
    assert type(pair.ours.backbone) is ResNeSt
    assert type(pair.theirs.backbone) is MMDetResNeSt
    expected = pair.expected.pred_instances
    actual = predict(pair.ours, pair.inputs, pair.sample)[0].pred_instances
    assert len(expected) == DETECTION_TEST_CFG['model.test_cfg.rcnn.max_per_img']
    assert len(actual) == len(expected)
    assert torch.equal(actual.labels, expected.labels)
    torch.testing.assert_close(actual.scores, expected.scores, rtol=0, atol=TOL)
    torch.testing.assert_close(actual.bboxes, expected.bboxes, rtol=0, atol=TOL)
    assert pair.theirs.with_mask == ('mask' in name)
    if pair.theirs.with_mask:
        assert expected.masks.any()
        assert actual.masks.shape == expected.masks.shape
        assert torch.equal(actual.masks, expected.masks)


@pytest.mark.parametrize('name', SEGMENTORS)
def test_segmentor_logits_match_mmseg(name):
    pair = build_pair(name)
    assert type(pair.ours.backbone) is ResNeSt
    assert type(pair.theirs.backbone) is MMSegResNeSt
    expected = pair.expected
    actual, = predict(pair.ours, pair.inputs, pair.sample)
    num_classes = pair.theirs.decode_head.num_classes
    assert actual.seg_logits.data.shape == (num_classes, *pair.inputs.shape[1:])
    assert expected.pred_sem_seg.data.unique().numel() > 1  # not a constant prediction
    torch.testing.assert_close(
        actual.seg_logits.data, expected.seg_logits.data, rtol=0, atol=TOL)
    assert torch.equal(actual.pred_sem_seg.data, expected.pred_sem_seg.data)
