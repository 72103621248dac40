# The generated shapes in ADE20K layout (tools/demo.py writes them under data/shapes_ade20k/):
# the data section of the DeepLabV3 demo, taken with
# `train_dataloader = {{_base_.shapes_ade20k.train_dataloader}}` (see shapes_scene.py for why
# it sits under one name). Four ADE20K classes: background 'wall', shapes 'box', 'ball', 'tent'
# (label PNGs, reduce_zero_label=True); 128x128 images.
_base_ = './shapes_scene.py'

__data_root = 'data/shapes_ade20k/'
__metainfo = dict(
    classes=('wall', 'box', 'ball', 'tent'),
    palette=[(120, 120, 120), (220, 20, 60), (0, 130, 230), (250, 170, 30)])
__crop_size = (128, 128)
__train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='Resize', scale=__crop_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
__test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=__crop_size, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
shapes_ade20k = dict(
    crop_size=__crop_size,
    train_dataloader=dict(
        batch_size=2, num_workers=0, persistent_workers=False,
        dataset=dict(data_root=__data_root, metainfo=__metainfo, pipeline=__train_pipeline)),
    val_dataloader=dict(
        batch_size=1, num_workers=0, persistent_workers=False,
        dataset=dict(data_root=__data_root, metainfo=__metainfo, pipeline=__test_pipeline)),
)
