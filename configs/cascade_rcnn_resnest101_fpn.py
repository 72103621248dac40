# Cascade R-CNN, ResNeSt-101 FPN, SyncBN in the backbone and the three Shared4Conv1FC box heads,
# range multi-scale training (short side 640-800), 1x schedule on COCO.
# Published COCO val2017 box AP: 47.50 (official, ResNeSt paper / detectron2 release);
#   46.8 (MMDetection 3.3.0, 8 GPUs x 2 images).
# This is MMDetection's own recipe field by field; only the backbone class is ours.
# Reproduce (COCO under data/coco/, ImageNet weights from open-mmlab://resnest101):
#   tools/dist_train.sh configs/cascade_rcnn_resnest101_fpn.py 8
#   python tools/train.py configs/cascade_rcnn_resnest101_fpn.py --cfg-options train_dataloader.batch_size=16  # 1 GPU, same batch
_base_ = 'mmdet::resnest/cascade-rcnn_s101_fpn_syncbn-backbone+head_ms-range-1x_coco.py'

custom_imports = dict(imports=['resnest_mm'], allow_failed_imports=False)
model = dict(backbone=dict(type='resnest_mm.ResNeSt'))
