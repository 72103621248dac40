# The generated scenes and the shared backbone pretraining of the three demos (tools/demo.py
# reads both from here). Measurements behind each setting: docs/demo.md

# Every key sits under a `shapes_` name: mmengine refuses a key that two bases both define, and
# the real configs define data_root, the dataloaders and the schedule. Names starting with `__`
# are this file's helpers and are not part of the config.

# Scenes (resnest_mm/datasets/synthetic.py render_scene), easier than its defaults, in which a
# shape could vanish into its background:
#   contrast 60: a shape differs from the background under it by >= 60 of 255 on average, so
#     every shape has a visible edge (the classes differ by outline, not colour);
#   texture 0.5: half-amplitude gratings and noise, fewer false edges;
#   radius 0.15-0.30 of the side (19-38 px): objects cover the 32-64 px anchors of FPN levels
#     P3-P4, not only the finest level (DeepLabV3's scenes draw larger ones: shapes_ade20k.py);
#   num_train 600: no training image repeats; num_val: held out, from another random stream.
shapes_scene = dict(
    num_train=600, num_val=48, seed=0, height=128, width=128, num_shapes=(1, 3),
    radius=(0.15, 0.30), contrast=60.0, texture=0.5)

# The backbone pretraining (resnest_mm/apis/pretrain.py), the demos' stand-in for ImageNet: the
# S-50 learns to classify 64x64 crops of such scenes (background or a shape, at the detection
# scenes' pixel size) with fused AdamW, saved in the authors' ResNeSt layout (conv1.*, bn1, fc).
# Its quality sets what the fine-tunes reach, so it gets the largest share of the budget:
# 240 iterations of 16 crops reach 82 % held-out crop accuracy (batches of 16 learn as fast per
# crop as 32 and give twice the steps).
shapes_pretrain = dict(
    checkpoint='work_dirs/demo/pretrain/resnest50_shapes.pth',
    iterations=240, batch_size=16, size=64, lr=2e-3, warmup=10,
    crops=dict(radius=(0.30, 0.45), contrast=60.0, texture=0.5, background=0.25))
