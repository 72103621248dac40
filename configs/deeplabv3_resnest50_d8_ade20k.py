# DeepLabV3, ResNeSt-50, output stride 8 (dilated stages 3-4), SyncBN, 512x512 crops,
# 160k iterations on ADE20K: MMSegmentation's S-101 recipe with the S-50 backbone.
# Published ADE20K val mIoU: 45.12 (official, PyTorch-Encoding release, pixAcc 81.17);
#   MMSegmentation has no S-50 result.
# Reproduce (ADE20K under data/ade/ADEChallengeData2016, weights from open-mmlab://resnest50):
#   tools/dist_train.sh configs/deeplabv3_resnest50_d8_ade20k.py 4
#   python tools/train.py configs/deeplabv3_resnest50_d8_ade20k.py --cfg-options train_dataloader.batch_size=16  # 1 GPU, same batch
_base_ = './deeplabv3_resnest101_d8_ade20k.py'

model = dict(
    backbone=dict(
        depth=50,
        stem_channels=64,
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://resnest50')))
