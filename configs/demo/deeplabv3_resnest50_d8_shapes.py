# Demo: DeepLabV3 S-50 d8 (configs/deeplabv3_resnest50_d8_ade20k.py) trained from scratch for a
# short run on the synthetic shapes in ADE20K layout (label PNGs, reduce_zero_label=True).
# Four ADE20K classes are used (background 'wall', shapes 'box', 'ball', 'tent'). Only what a
# 2-core CPU needs changes: 128x128 images, narrower heads, a short schedule, no ImageNet weights.
_base_ = '../deeplabv3_resnest50_d8_ade20k.py'

data_root = 'data/shapes_ade20k/'
metainfo = dict(
    classes=('wall', 'box', 'ball', 'tent'),
    palette=[(120, 120, 120), (220, 20, 60), (0, 130, 230), (250, 170, 30)])
crop_size = (128, 128)
max_iters = 40
warmup_iters = 10

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(init_cfg=None),
    decode_head=dict(num_classes=4, channels=128),
    auxiliary_head=dict(num_classes=4, channels=64))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='Resize', scale=crop_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=crop_size, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader

train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=warmup_iters, end=max_iters,
         by_epoch=False),
]
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
