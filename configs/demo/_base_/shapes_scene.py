# The generated scenes and the shared backbone pretraining of the three demos (tools/demo.py
# reads both from here). Every key sits under a `shapes_` name: mmengine refuses a key that two
# bases both define, and the real configs define data_root, the dataloaders and the schedule.
# Names starting with `__` are this file's helpers and are not part of the config.

# Scene levers (resnest_mm/datasets/synthetic.py render_scene). The default scene (random
# colours on a strong texture, radius 0.12-0.25) let a shape vanish into its background, and
# 300 training images were too few for the box head to separate three classes in 250
# iterations (AP50 0.27). Here:
#   contrast 60: a shape's colour differs from the background under it by >= 60 of 255 on
#     average, so every shape has a visible edge (the classes differ by outline, not colour);
#   texture 0.5: half-amplitude gratings and noise, fewer false edges;
#   radius 0.15-0.30 of the side (19-38 px at 128x128): objects cover the 32-64 px anchors of
#     FPN levels P3-P4 instead of only the finest level (DeepLabV3's scenes draw larger ones:
#     shapes_ade20k.py);
#   num_train: every training iteration sees new images (batch x iterations), no repeats;
#   num_val: held-out images (another random stream), never seen in training.
shapes_scene = dict(
    num_train=600, num_val=48, seed=0, height=128, width=128, num_shapes=(1, 3),
    radius=(0.15, 0.30), contrast=60.0, texture=0.5)

# The shared backbone pretraining (resnest_mm/apis/pretrain.py): the real configs start from
# ImageNet weights; here the S-50 backbone first learns to classify 64x64 crops of the same
# scenes (background, square, circle, triangle) with AdamW, and is saved in the authors'
# ResNeSt layout (conv1.*, bn1, fc). All three demos load it through
# init_cfg=dict(type='Pretrained', checkpoint=...), as the real configs load ImageNet weights.
# The crops' shapes have the detection scenes' pixel size (radius 0.30-0.45 of a 64 px crop).
# Its quality sets what the fine-tuning reaches, so it gets the largest share of the budget:
# 240 iterations of 16 crops reached 86 % held-out crop accuracy (60 of 32: 73 %), and from it
# Faster R-CNN reached bbox AP50 0.57 in 80 iterations where the earlier 60 x 32 pretraining
# from PyTorch's layer defaults (61 % in that demo run) gave 0.32 in 100. Batches of 16 learn as fast per crop as batches of 32 and give twice the steps. With
# the fused AdamW kernel (resnest_mm/apis/pretrain.py) the same seed gives 82 %: the kernel
# rounds differently, and the run takes another path.
shapes_pretrain = dict(
    checkpoint='work_dirs/demo/pretrain/resnest50_shapes.pth',
    iterations=240, batch_size=16, size=64, lr=2e-3, warmup=10,
    crops=dict(radius=(0.30, 0.45), contrast=60.0, texture=0.5, background=0.25))
