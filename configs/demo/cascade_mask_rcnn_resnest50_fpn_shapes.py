# Demo: Cascade Mask R-CNN S-50 (configs/cascade_mask_rcnn_resnest50_fpn.py) fine-tuned on the
# generated shapes (_base_/shapes_coco.py) from the shared shapes pretraining; the levers are the
# Faster R-CNN demo's, plus the box heads. Measurements behind each setting: docs/demo.md
_base_ = ['../cascade_mask_rcnn_resnest50_fpn.py', './_base_/shapes_coco.py']

# 75 iterations with 10 of warm-up: Faster R-CNN's schedule, shortened for the 10-minute budget
max_iters = 75
warmup_iters = 10
# Cascade stages are lists, which configs replace whole: restated with 3 classes and
# 16 sampled RoIs, half positive, per stage.
stage_stds = ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067])
stage_ious = (0.5, 0.6, 0.7)

model = dict(
    backbone=dict(
        # keep the pretrained BN statistics (batch 2); the shapes pretraining instead of ImageNet
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint={{_base_.shapes_pretrain.checkpoint}})),
    roi_head=dict(
        # 2 x 2 samples per output cell instead of as many as the RoI spans (sampling_ratio 0):
        # a cheaper CPU RoIAlign, as in the Faster R-CNN demo
        bbox_roi_extractor=dict(roi_layer=dict(sampling_ratio=2)),
        mask_roi_extractor=dict(roi_layer=dict(sampling_ratio=2)),
        # MMDetection's standard Cascade heads (2fc) instead of the recipe's 4conv1fc: their
        # 3x3 convolutions on every RoI, in three stages, were 0.56 s of a 1.9 s training step
        bbox_head=[
            dict(
                type='Shared2FCBBoxHead', in_channels=256, fc_out_channels=1024,
                roi_feat_size=7, num_classes=3, reg_class_agnostic=True,
                bbox_coder=dict(
                    type='DeltaXYWHBBoxCoder', target_means=[0.0, 0.0, 0.0, 0.0],
                    target_stds=stds),
                loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))
            for stds in stage_stds
        ],
        mask_head=dict(num_classes=3)),
    train_cfg=dict(
        # 100 proposals instead of 2000; 16 RoIs per image and stage instead of 512: the mask
        # head's 0.9 GFLOP per positive RoI sets the step time, and 16 learned faster than 32
        rpn_proposal=dict(nms_pre=500, max_per_img=100),
        rcnn=[
            dict(
                assigner=dict(
                    type='MaxIoUAssigner', pos_iou_thr=iou, neg_iou_thr=iou, min_pos_iou=iou,
                    match_low_quality=False, ignore_iof_thr=-1),
                sampler=dict(
                    type='RandomSampler', num=16, pos_fraction=0.5, neg_pos_ub=-1,
                    add_gt_as_proposals=True),
                mask_size=28, pos_weight=-1, debug=False)
            for iou in stage_ious
        ]),
    # 50 proposals and 10 detections per image at test instead of 1000 and 100: a scene holds
    # 1-3 objects, and each detection runs the mask head (val split: 45 s with 10, 55 s with 20)
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=50), rcnn=dict(max_per_img=10)))

# the shared data section: 128x128 scenes, batch 2, 48 held-out val images
train_dataloader = {{_base_.shapes_coco.train_dataloader}}
val_dataloader = {{_base_.shapes_coco.val_dataloader}}
test_dataloader = val_dataloader
val_evaluator = {{_base_.shapes_coco.evaluator}}
test_evaluator = val_evaluator

# iterations instead of epochs; one validation and one checkpoint, at the end
train_cfg = dict(
    _delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
# short linear warm-up, then the recipe's step decay (x0.1), at three quarters (iteration 56)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[max_iters * 3 // 4], gamma=0.1),
]
# fused AdamW instead of SGD, as in the Faster R-CNN demo (unfused: 0.67 s of a 2.65 s step)
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=2e-4, weight_decay=1e-4, fused=True))
# log every 10 iterations; keep the final checkpoint only
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
