# Mask R-CNN, ResNeSt-50 FPN, SyncBN in the backbone, the Shared4Conv1FC box head and the
# mask head, choice multi-scale training (short side in 640..800 by 32), 1x schedule on COCO.
# Published COCO val2017 box / mask AP: 42.81 / 38.14 (official, ResNeSt paper / detectron2
#   release); 42.6 / 38.1 (MMDetection 3.3.0, 8 GPUs x 2 images).
# This is MMDetection's own recipe field by field; only the backbone class is ours.
# Reproduce (COCO under data/coco/, ImageNet weights from open-mmlab://resnest50):
#   tools/dist_train.sh configs/mask_rcnn_resnest50_fpn.py 8
#   python tools/train.py configs/mask_rcnn_resnest50_fpn.py --cfg-options train_dataloader.batch_size=16  # 1 GPU, same batch
_base_ = 'mmdet::resnest/mask-rcnn_s50_fpn_syncbn-backbone+head_ms-1x_coco.py'

custom_imports = dict(imports=['resnest_mm'], allow_failed_imports=False)
model = dict(backbone=dict(type='resnest_mm.ResNeSt'))
