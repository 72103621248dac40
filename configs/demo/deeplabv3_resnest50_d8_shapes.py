# Demo: DeepLabV3 S-50 d8 (configs/deeplabv3_resnest50_d8_ade20k.py) fine-tuned on the
# generated shapes in ADE20K layout (_base_/shapes_ade20k.py) from the shared shapes
# pretraining of its backbone (tools/demo.py does both). Only what a 2-core CPU needs
# changes; each lever and why:
#   - data: 128x128 images of easy scenes instead of 512x512 crops, batch 2;
#   - backbone: init_cfg loads the shapes pretraining (as the real config loads ImageNet);
#     norm_eval keeps its BN statistics (batch 2 is too small for BN statistics);
#   - heads: 128-channel ASPP head and 64-channel auxiliary FCN instead of 512 and 256;
#   - schedule: 80 iterations (about 2 single-thread CPU seconds each on a 2-core AMD EPYC: the
#     dilated d8 stages run at 16x16), AdamW (lr 1e-3) instead of SGD: from scratch, SGD
#     (lr 0.01, poly) reached only 28 mIoU in 80 iterations on 4 images, AdamW 72.
_base_ = ['../deeplabv3_resnest50_d8_ade20k.py', './_base_/shapes_ade20k.py']

max_iters = 80
warmup_iters = 10
crop_size = {{_base_.shapes_ade20k.crop_size}}

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        norm_eval=True,
        init_cfg=dict(type='Pretrained', checkpoint={{_base_.shapes_pretrain.checkpoint}})),
    decode_head=dict(num_classes=4, channels=128),
    auxiliary_head=dict(num_classes=4, channels=64))

train_dataloader = {{_base_.shapes_ade20k.train_dataloader}}
val_dataloader = {{_base_.shapes_ade20k.val_dataloader}}
test_dataloader = val_dataloader

train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-3, weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='PolyLR', eta_min=1e-5, power=0.9, begin=warmup_iters, end=max_iters,
         by_epoch=False),
]
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
