# FCN, ResNeSt-101, output stride 8 (dilated stages 3-4), SyncBN, 512x1024 crops,
# 80k iterations on Cityscapes.
# Published Cityscapes val mIoU: 77.56 single scale / 78.98 multi-scale + flip (MMSegmentation
#   1.2.2, 4 GPUs x 2 images); the ResNeSt authors publish no Cityscapes result.
# This is MMSegmentation's own recipe field by field; only the backbone class is ours, and its
# ImageNet weights are named in the backbone's init_cfg instead of the segmentor's `pretrained`.
# Reproduce (Cityscapes under data/cityscapes, weights from open-mmlab://resnest101):
#   tools/dist_train.sh configs/fcn_resnest101_d8_cityscapes.py 4
#   python tools/train.py configs/fcn_resnest101_d8_cityscapes.py --cfg-options train_dataloader.batch_size=8  # 1 GPU, same batch
_base_ = 'mmseg::resnest/resnest_s101-d8_fcn_4xb2-80k_cityscapes-512x1024.py'

custom_imports = dict(imports=['resnest_mm'], allow_failed_imports=False)
model = dict(
    pretrained=None,
    backbone=dict(
        type='resnest_mm.ResNeSt',
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://resnest101')))
