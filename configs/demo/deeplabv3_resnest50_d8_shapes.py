# Demo: DeepLabV3 S-50 (configs/deeplabv3_resnest50_d8_ade20k.py) fine-tuned on the generated
# shapes in ADE20K layout (_base_/shapes_ade20k.py) from the shared shapes pretraining; only what
# a 2-core CPU needs changes. Measurements behind each setting: docs/demo.md
_base_ = ['../deeplabv3_resnest50_d8_ade20k.py', './_base_/shapes_ade20k.py']

# 60 iterations of 8 images with 10 of warm-up instead of 160k of 16: what fits the budget
max_iters = 60
warmup_iters = 10
crop_size = {{_base_.shapes_ade20k.crop_size}}
# the background at 0.3 of a shape's weight in both heads' loss: unweighted, 26-55 % of each
# shape's pixels went to the background (a shape covers few of the 16 px output cells)
class_weight = [0.3, 1.0, 1.0, 1.0]  # wall, box, ball, tent

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        # output stride 16 (layer4 dilated by 2) instead of 8, as the DeepLabV3 paper trains:
        # features learned without dilation survive one dilated stage better, at half the cost
        strides=(1, 2, 2, 1),
        dilations=(1, 1, 1, 2),
        # keep the pretrained BN statistics, and load the shapes pretraining instead of ImageNet
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint={{_base_.shapes_pretrain.checkpoint}})),
    # the heads keep their published widths (512-channel ASPP, 256-channel auxiliary FCN)
    decode_head=dict(
        # ASPP with its 1x1 branch and image pooling only; rates 12/24/36 reach past the 8x8 map,
        # so those 3x3 filters only use their centre tap (a step 2.4 times faster without them)
        dilations=(1, ),
        num_classes=4,
        # OHEM on the decode head (as mmseg's Cityscapes OHEM configs), with the class weights
        sampler=dict(type='OHEMPixelSampler', thresh=0.7, min_kept=4000),
        loss_decode=dict(class_weight=class_weight)),
    auxiliary_head=dict(num_classes=4, loss_decode=dict(class_weight=class_weight)))

# the shared data section: 128x128 scenes, batch 8, 192 held-out val images
train_dataloader = {{_base_.shapes_ade20k.train_dataloader}}
val_dataloader = {{_base_.shapes_ade20k.val_dataloader}}
test_dataloader = val_dataloader

# one validation and one checkpoint, at the end
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
# AdamW instead of the recipe's SGD (lr 0.01 learned slower), fused as in every demo; the
# backbone at half the heads' learning rate
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-3, weight_decay=1e-4, fused=True),
    paramwise_cfg=dict(custom_keys=dict(backbone=dict(lr_mult=0.5))))
# short linear warm-up, then the recipe's poly decay
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='PolyLR', eta_min=1e-5, power=0.9, begin=warmup_iters, end=max_iters,
         by_epoch=False),
]
# log every 10 iterations; keep the final checkpoint only
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
