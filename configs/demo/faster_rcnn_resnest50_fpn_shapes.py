# Demo: Faster R-CNN S-50 (configs/faster_rcnn_resnest50_fpn.py) fine-tuned on the generated
# shapes (_base_/shapes_coco.py) from the shared shapes pretraining of its backbone; only what
# a 2-core CPU needs changes. Measurements behind each setting: docs/demo.md
_base_ = ['../faster_rcnn_resnest50_fpn.py', './_base_/shapes_coco.py']

# 105 iterations with 10 of warm-up instead of 12 epochs: the most that fits `make demo`'s
# 10-minute budget (120 gave no better AP50)
max_iters = 105
warmup_iters = 10

model = dict(
    backbone=dict(
        # keep the pretrained BN statistics: 2 images of 128x128 are too small a batch for them
        norm_eval=True,
        # the shapes pretraining, as the real config loads ImageNet weights
        init_cfg=dict(type='Pretrained', checkpoint={{_base_.shapes_pretrain.checkpoint}})),
    roi_head=dict(
        # 2 x 2 samples per output cell instead of as many as the RoI spans (sampling_ratio 0):
        # mmcv's CPU RoIAlign took a tenth of the step
        bbox_roi_extractor=dict(roi_layer=dict(sampling_ratio=2)),
        # 3 shape classes; the recipe's 4conv1fc head stays (the standard 2fc one lost AP50)
        bbox_head=dict(num_classes=3)),
    # 100 proposals (50 at test) instead of 1000, and 16 RoIs per image, half positive, instead
    # of 512, a quarter: a 128x128 image holds 1-3 objects, and the RoIs set the step time
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=500, max_per_img=100),
        rcnn=dict(sampler=dict(num=16, pos_fraction=0.5))),
    # 10 detections per image at test instead of 100: a scene holds 1-3 objects
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
# short linear warm-up, then the recipe's step decay (x0.1), at three quarters (iteration 78)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[max_iters * 3 // 4], gamma=0.1),
]
# AdamW instead of the recipe's SGD, which stalled in this short schedule; fused: one kernel
# over all parameters, where PyTorch's CPU AdamW loops over them (0.41 s -> 0.05 s a step)
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=2e-4, weight_decay=1e-4, fused=True))
# log every 10 of the 105 iterations; keep the final checkpoint only
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
