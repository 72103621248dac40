# DeepLabV3, ResNeSt-269, output stride 8 (dilated stages 3-4), SyncBN, 512x512 crops,
# 160k iterations on ADE20K: MMSegmentation's S-101 recipe with the S-269 backbone.
# Published ADE20K val mIoU: 47.60 (official, PyTorch-Encoding release, pixAcc 82.62);
#   MMSegmentation has no S-269 result.
# OpenMMLab publishes no S-269 ImageNet weights: `resnest269` names the official release
# (resnest269-0cc87c48.pth), converted to this layout when loaded.
# Reproduce (ADE20K under data/ade/ADEChallengeData2016):
#   tools/dist_train.sh configs/deeplabv3_resnest269_d8_ade20k.py 4
#   python tools/train.py configs/deeplabv3_resnest269_d8_ade20k.py --cfg-options train_dataloader.batch_size=16  # 1 GPU, same batch
_base_ = './deeplabv3_resnest101_d8_ade20k.py'

model = dict(
    backbone=dict(
        depth=269,
        stem_channels=128,
        init_cfg=dict(type='Pretrained', checkpoint='resnest269')))
