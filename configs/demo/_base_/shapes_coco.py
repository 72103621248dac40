# The generated shapes in COCO layout (data/shapes_coco/: boxes and polygon masks, 128x128): the
# data section of both R-CNN demos, under one name as shapes_scene.py explains.
# Measurements behind each setting: docs/demo.md
_base_ = './shapes_scene.py'

__data_root = 'data/shapes_coco/'
__metainfo = dict(
    classes=('square', 'circle', 'triangle'),
    palette=[(220, 20, 60), (0, 130, 230), (250, 170, 30)])
__image_size = (128, 128)
__train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=__image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
__test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=__image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
shapes_coco = dict(
    # batches of 2, as the recipe per GPU, loaded in the main process on a 2-core CPU
    train_dataloader=dict(
        batch_size=2, num_workers=0, persistent_workers=False,
        sampler=dict(type='InfiniteSampler', shuffle=True),
        dataset=dict(
            data_root=__data_root, metainfo=__metainfo,
            ann_file='annotations/instances_train.json', data_prefix=dict(img='train/'),
            pipeline=__train_pipeline)),
    val_dataloader=dict(
        batch_size=2, num_workers=0, persistent_workers=False,
        dataset=dict(
            data_root=__data_root, metainfo=__metainfo,
            ann_file='annotations/instances_val.json', data_prefix=dict(img='val/'),
            pipeline=__test_pipeline)),
    evaluator=dict(ann_file=__data_root + 'annotations/instances_val.json'),
)
