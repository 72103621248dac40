# The generated shapes in ADE20K layout (tools/demo.py writes them under data/shapes_ade20k/):
# the data section of the DeepLabV3 demo, taken with
# `train_dataloader = {{_base_.shapes_ade20k.train_dataloader}}` (see shapes_scene.py for why
# it sits under one name). Four ADE20K classes: background 'wall', shapes 'box', 'ball', 'tent'
# (label PNGs, reduce_zero_label=True); 128x128 images.
_base_ = './shapes_scene.py'

# The detection scenes with larger shapes and more val images:
#   radius 0.22-0.38 of the side (28-49 px) instead of 0.15-0.30 (19-38 px); fewer fit, 1.07 a
#     scene on average against 1.86. DeepLabV3 predicts at 1/16 of the input, 8x8 cells for a
#     128 px image, and a box differs from a ball by corners smaller than a cell. Measured
#     (2-core AMD EPYC, the demo's pretraining, DeepLabV3 at batch 2 and 80 iterations): the
#     val labels pooled to 8x8 cells and upsampled reach 82.3 mIoU on the detection scenes,
#     90.9 on these; DeepLabV3 reached 46.7-48.6 mIoU on the detection scenes, 50.1-50.6 on
#     these (radius 0.25-0.42: 48.5);
#   num_val 192 instead of 48: one checkpoint gave 53.3, 49.4, 54.0 and 47.7 mIoU on four
#     disjoint sets of 48 val images, so 48 measured the draw of the images as much as the
#     model. DeepLabV3 evaluates an image in about 0.09 s here; the detectors, at 0.25-0.75
#     s an image, keep 48.
shapes_scene = dict(radius=(0.22, 0.38), num_val=192)

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
        batch_size=8, num_workers=0, persistent_workers=False,
        dataset=dict(data_root=__data_root, metainfo=__metainfo, pipeline=__train_pipeline)),
    val_dataloader=dict(
        batch_size=1, num_workers=0, persistent_workers=False,
        dataset=dict(data_root=__data_root, metainfo=__metainfo, pipeline=__test_pipeline)),
)
