"""MMDetection's own Faster R-CNN config, with our backbone swapped in through custom_imports."""

from __future__ import annotations

import torch
from mmdet.registry import MODELS as MMDET_MODELS
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.optim import OptimWrapper
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from resnest_mm import ResNeSt


def detection_sample(height=128, width=160):
    sample = DetDataSample(metainfo=dict(
        img_shape=(height, width), ori_shape=(height, width), scale_factor=(1.0, 1.0),
        pad_shape=(height, width), batch_input_shape=(height, width)))
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor([[10.0, 12.0, 70.0, 90.0], [80.0, 20.0, 150.0, 120.0]]),
        labels=torch.tensor([0, 1]))
    return sample


def test_faster_rcnn_config_with_swapped_backbone_trains_a_step():
    cfg = get_config('mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py')
    cfg.merge_from_dict(dict(custom_imports=dict(imports=['resnest_mm'])))
    cfg.model.backbone = Config(dict(
        type='resnest_mm.ResNeSt', depth=50, stem_channels=64, radix=2, reduction_factor=4,
        avg_down_stride=True, num_stages=4, out_indices=(0, 1, 2, 3), frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False, style='pytorch'))
    with DefaultScope.overwrite_default_scope('mmdet'):
        detector = MMDET_MODELS.build(cfg.model)
    assert type(detector.backbone) is ResNeSt
    detector.init_weights()
    optim = OptimWrapper(torch.optim.SGD(detector.parameters(), lr=0.01, momentum=0.9))
    data = dict(inputs=[torch.randint(0, 255, (3, 128, 160), dtype=torch.uint8)] * 2,
                data_samples=[detection_sample(), detection_sample()])
    # zero_init_residual zeroes each block's last norm, so that is what the first step moves
    before = detector.backbone.layer4[0].norm3.weight.detach().clone()
    frozen_before = detector.backbone.layer1[0].conv1.weight.detach().clone()
    detector.train()
    losses = detector.train_step(data, optim)
    assert {'loss_rpn_cls', 'loss_cls', 'loss_bbox'} <= set(losses)
    assert all(torch.isfinite(v).all() for v in losses.values())
    assert not torch.equal(detector.backbone.layer4[0].norm3.weight, before)
    assert torch.equal(detector.backbone.layer1[0].conv1.weight, frozen_before)
