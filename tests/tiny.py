"""cfg-options that shrink the demo configs to tiny models for fast tool tests.

The tools, the Runner, the datasets and the heads stay the real ones; only widths and depths
shrink (ResNeSt-14 with 16 base channels, 32-channel FPN and heads, 64x64 images).
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIGS = REPO / 'configs' / 'demo'
FASTER_RCNN = DEMO_CONFIGS / 'faster_rcnn_resnest50_fpn_shapes.py'
CASCADE = DEMO_CONFIGS / 'cascade_mask_rcnn_resnest50_fpn_shapes.py'
DEEPLABV3 = DEMO_CONFIGS / 'deeplabv3_resnest50_d8_shapes.py'
SIZE = (64, 64)
BACKBONE = {'depth': 14, 'stem_channels': 32, 'base_channels': 16}
STAGE_CHANNELS = [64, 128, 256, 512]  # base_channels * 4 * 2**i


def _backbone() -> dict:
    # A ResNeSt-14 cannot load the demo's S-50 shapes pretraining: start from random weights.
    return {**{f'model.backbone.{k}': v for k, v in BACKBONE.items()},
            'model.backbone.init_cfg': None}


def _images(data_root: str) -> dict:
    """Every split reads ``data_root`` and resizes to ``SIZE``."""
    options = {'train_dataloader.dataset.pipeline.2.scale': SIZE}
    for split in ('train', 'val', 'test'):
        options[f'{split}_dataloader.dataset.data_root'] = data_root
    for split in ('val', 'test'):
        options[f'{split}_dataloader.dataset.pipeline.1.scale'] = SIZE
    return options


def tiny_segmentation_options(data_root: str, max_iters: int = 2) -> dict:
    """DeepLabV3 on ResNeSt-14 at 64x64, data under ``data_root`` (ADE20K layout)."""
    return {
        **_backbone(),
        'model.data_preprocessor.size': SIZE,
        'model.decode_head.in_channels': STAGE_CHANNELS[3],
        'model.decode_head.channels': 16,
        'model.auxiliary_head.in_channels': STAGE_CHANNELS[2],
        'model.auxiliary_head.channels': 16,
        **_images(data_root),
        'train_cfg.max_iters': max_iters,
        'train_cfg.val_interval': max_iters,
        'default_hooks.checkpoint.interval': 1,
        'default_hooks.checkpoint.max_keep_ckpts': -1,
        'log_level': 'WARNING',
    }


def tiny_detection_options(data_root: str, max_iters: int = 2) -> dict:
    """Faster R-CNN on ResNeSt-14 at 64x64 with 32-channel FPN and heads (COCO layout)."""
    return {
        **_backbone(),
        'model.neck.in_channels': STAGE_CHANNELS,
        'model.neck.out_channels': 32,
        'model.rpn_head.in_channels': 32,
        'model.rpn_head.feat_channels': 32,
        'model.roi_head.bbox_roi_extractor.out_channels': 32,
        'model.roi_head.bbox_head.in_channels': 32,
        'model.roi_head.bbox_head.conv_out_channels': 32,
        'model.roi_head.bbox_head.fc_out_channels': 64,
        **_images(data_root),
        'val_evaluator.ann_file': f'{data_root}annotations/instances_val.json',
        'test_evaluator.ann_file': f'{data_root}annotations/instances_val.json',
        'train_cfg.max_iters': max_iters,
        'train_cfg.val_interval': max_iters,
        'default_hooks.checkpoint.interval': max_iters,
        'log_level': 'WARNING',
    }


def as_cli(options: dict) -> list[str]:
    """``--cfg-options`` arguments for a subprocess (numbers, strings and tuples/lists of them)."""
    def literal(value) -> str:
        if isinstance(value, tuple):
            return '(' + ','.join(map(literal, value)) + ')'
        if isinstance(value, list):
            return '[' + ','.join(map(literal, value)) + ']'
        return str(value)

    return ['--cfg-options', *(f'{k}={literal(v)}' for k, v in options.items())]
