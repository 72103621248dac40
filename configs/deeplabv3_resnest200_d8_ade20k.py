# DeepLabV3, ResNeSt-200, output stride 8 (dilated stages 3-4), SyncBN, 512x512 crops,
# 160k iterations on ADE20K: MMSegmentation's S-101 recipe with the S-200 backbone.
# Published ADE20K val mIoU: 48.36 (official, PyTorch-Encoding release, pixAcc 82.45);
#   MMSegmentation has no S-200 result.
# Reproduce (ADE20K under data/ade/ADEChallengeData2016, weights from open-mmlab://resnest200):
#   tools/dist_train.sh configs/deeplabv3_resnest200_d8_ade20k.py 4
#   python tools/train.py configs/deeplabv3_resnest200_d8_ade20k.py --cfg-options train_dataloader.batch_size=16  # 1 GPU, same batch
_base_ = './deeplabv3_resnest101_d8_ade20k.py'

model = dict(
    backbone=dict(
        depth=200,
        stem_channels=128,
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://resnest200')))
