# The generated shapes in ADE20K layout (data/shapes_ade20k/: label PNGs, 128x128): the data
# section of the DeepLabV3 demo, under one name as shapes_scene.py explains.
# Measurements behind each setting: docs/demo.md
_base_ = './shapes_scene.py'

# the detection scenes with larger shapes (radius 0.22-0.38 of the side instead of 0.15-0.30):
# at output stride 16 a box differs from a ball by corners smaller than an 8x8 map's cell;
# 192 val images instead of 48: 48 measured the draw of the images as much as the model
shapes_scene = dict(radius=(0.22, 0.38), num_val=192)

# four ADE20K classes: background 'wall', shapes 'box', 'ball', 'tent' (reduce_zero_label=True)
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
    # batches of 8 (the recipe: 4 per GPU on 4 GPUs), in the main process on a 2-core CPU
    train_dataloader=dict(
        batch_size=8, num_workers=0, persistent_workers=False,
        dataset=dict(data_root=__data_root, metainfo=__metainfo, pipeline=__train_pipeline)),
    val_dataloader=dict(
        batch_size=1, num_workers=0, persistent_workers=False,
        dataset=dict(data_root=__data_root, metainfo=__metainfo, pipeline=__test_pipeline)),
)
