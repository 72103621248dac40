# Cascade R-CNN, ResNeSt-200 FPN, SyncBN in the backbone and the three Shared4Conv1FC box heads,
# range multi-scale training (short side 640-800), 1x schedule on COCO: MMDetection's S-101
# recipe with the S-200 backbone.
# Published COCO val2017 box AP: 49.03 (official, ResNeSt paper / detectron2 release);
#   MMDetection has no S-200 result.
# Reproduce (COCO under data/coco/, ImageNet weights from open-mmlab://resnest200):
#   tools/dist_train.sh configs/cascade_rcnn_resnest200_fpn.py 8
#   python tools/train.py configs/cascade_rcnn_resnest200_fpn.py --cfg-options train_dataloader.batch_size=16  # 1 GPU, same batch
_base_ = './cascade_rcnn_resnest101_fpn.py'

model = dict(
    backbone=dict(
        depth=200,
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://resnest200')))
