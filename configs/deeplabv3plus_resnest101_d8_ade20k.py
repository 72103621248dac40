# DeepLabV3+, ResNeSt-101, output stride 8 (dilated stages 3-4), SyncBN, 512x512 crops,
# 160k iterations on ADE20K.
# Published ADE20K val mIoU: 46.47 single scale / 47.27 multi-scale + flip (MMSegmentation 1.2.2,
#   4 GPUs x 4 images); the ResNeSt authors publish no DeepLabV3+ result.
# This is MMSegmentation's own recipe field by field; only the backbone class is ours, and its
# ImageNet weights are named in the backbone's init_cfg instead of the segmentor's `pretrained`.
# Reproduce (ADE20K under data/ade/ADEChallengeData2016, weights from open-mmlab://resnest101):
#   tools/dist_train.sh configs/deeplabv3plus_resnest101_d8_ade20k.py 4
#   python tools/train.py configs/deeplabv3plus_resnest101_d8_ade20k.py --cfg-options train_dataloader.batch_size=16  # 1 GPU, same batch
_base_ = 'mmseg::resnest/resnest_s101-d8_deeplabv3plus_4xb4-160k_ade20k-512x512.py'

custom_imports = dict(imports=['resnest_mm'], allow_failed_imports=False)
model = dict(
    pretrained=None,
    backbone=dict(
        type='resnest_mm.ResNeSt',
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://resnest101')))
