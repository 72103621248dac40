# Demo: Cascade Mask R-CNN S-50 (configs/cascade_mask_rcnn_resnest50_fpn.py) fine-tuned on the
# generated shapes in COCO layout (boxes and polygon masks) from the shared shapes pretraining
# of its backbone (tools/demo.py does both). Only what a 2-core CPU needs changes; the levers
# are those of the Faster R-CNN demo (faster_rcnn_resnest50_fpn_shapes.py: data, pretrained
# backbone with norm_eval, fewer proposals and RoIs, RoIAlign sampling, fused AdamW), here for
# three cascade stages and the mask head, plus one of its own: the box heads.
#
# Box heads: MMDetection's standard Cascade R-CNN heads (two shared fc layers, as in
# mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py) instead of the ResNeSt recipe's 4conv1fc
# heads with SyncBN. Each 4conv1fc head runs four 3x3 convolutions of 256 channels on every
# 7x7 RoI, about 0.23 GFLOP forward per RoI, in each of the three stages: in a training step
# (32 sampled RoIs a stage) their convolutions took 0.56 s of 1.9 s, and at test (50 proposals
# an image) the val split took 31 s with them, 18 s without. Measured on a 2-core AMD EPYC
# from one pretraining, 75 iterations each: 4conv1fc 206 s (train 170 s, test 31 s),
# bbox/segm AP50 0.48/0.50; 2fc 151 s (train 128 s, test 18 s), 0.66/0.67; 2fc after 60
# iterations 0.47/0.49. Six full demo runs with 2fc heads: 0.62/0.62, 0.55/0.56, 0.60/0.60,
# 0.63/0.65, 0.60/0.61, 0.67/0.67.
#
# Sampled RoIs: the 4-conv mask head costs about 0.9 GFLOP per positive RoI, so the RoIs
# set the step time: 16 per image and stage, half of them positive (32 in an earlier demo:
# 3.9 s a step; 16 learned faster per second: bbox/segm AP50 0.47/0.50 after 60 iterations
# against 0.36/0.40 with 32, from the same pretraining, both with 4conv1fc heads). The
# schedule is Faster R-CNN's, over 75 iterations (step decay at 56). The fine-tunes are not
# seeded: with 4conv1fc heads, full demo runs after 75 iterations gave bbox/segm AP50 from
# 0.42/0.45 to 0.58/0.61.
_base_ = ['../cascade_mask_rcnn_resnest50_fpn.py', './_base_/shapes_coco.py']

max_iters = 75
warmup_iters = 10
# Cascade stages are lists, which configs replace whole: restated with 3 classes and
# 16 sampled RoIs, half positive, per stage.
stage_stds = ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067])
stage_ious = (0.5, 0.6, 0.7)

model = dict(
    backbone=dict(
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint={{_base_.shapes_pretrain.checkpoint}})),
    roi_head=dict(
        # 2 x 2 samples per output cell instead of as many as the RoI spans (sampling_ratio 0)
        bbox_roi_extractor=dict(roi_layer=dict(sampling_ratio=2)),
        mask_roi_extractor=dict(roi_layer=dict(sampling_ratio=2)),
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
    # 10 detections per image at test instead of 100: a scene holds 1-3 objects, and every
    # detection runs the three stages' mask heads (tools/test.py on the val split: 55 s with
    # 20, 45 s with 10, bbox/segm AP50 0.494/0.504 and 0.496/0.504 from the same checkpoint)
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=50), rcnn=dict(max_per_img=10)))

train_dataloader = {{_base_.shapes_coco.train_dataloader}}
val_dataloader = {{_base_.shapes_coco.val_dataloader}}
test_dataloader = val_dataloader
val_evaluator = {{_base_.shapes_coco.evaluator}}
test_evaluator = val_evaluator

train_cfg = dict(
    _delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[max_iters * 3 // 4], gamma=0.1),
]
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=2e-4, weight_decay=1e-4, fused=True))
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
