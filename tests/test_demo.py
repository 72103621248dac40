"""The demo configs and the demo run of tools/demo.py (tiny here; the full run is slow)."""

import json
import re
from pathlib import Path

import cv2
import pytest
import torch
from tiny import (
    CASCADE,
    DEEPLABV3,
    DEMO_CONFIGS,
    FASTER_RCNN,
    REPO,
    tiny_detection_options,
    tiny_segmentation_options,
)
from zoo import load_mm

from resnest_mm.apis import load_config
from resnest_mm.apis.demo import DEMOS, run_demo
from resnest_mm.apis.pretrain import classification_backbone
from resnest_mm.pretrained import detect_layout

REAL_CONFIGS = {
    FASTER_RCNN: 'faster_rcnn_resnest50_fpn.py',
    CASCADE: 'cascade_mask_rcnn_resnest50_fpn.py',
    DEEPLABV3: 'deeplabv3_resnest50_d8_ade20k.py',
}
THRESHOLDS = {  # issue 10: what the demo must reach on the held-out val split
    'faster_rcnn': {'coco/bbox_mAP_50': 0.5},
    'cascade_mask_rcnn': {'coco/bbox_mAP_50': 0.4, 'coco/segm_mAP_50': 0.3},
    'deeplabv3': {'mIoU': 50.0},
}


def test_demo_lists_the_demo_configs_and_the_issue_thresholds():
    assert {DEMO_CONFIGS / demo.config for demo in DEMOS.values()} == set(REAL_CONFIGS)
    assert {name: demo.thresholds for name, demo in DEMOS.items()} == THRESHOLDS


@pytest.mark.parametrize('demo', list(REAL_CONFIGS), ids=lambda p: p.stem)
def test_demo_configs_inherit_the_real_configs(demo):
    assert re.search(rf"_base_ = \['\.\./{REAL_CONFIGS[demo]}', ", demo.read_text())
    cfg, real = load_config(demo), load_config(REPO / 'configs' / REAL_CONFIGS[demo])
    assert cfg.model.backbone.type == real.model.backbone.type == 'resnest_mm.ResNeSt'
    assert cfg.custom_imports == real.custom_imports
    changed = ('init_cfg', 'norm_eval')
    if demo == DEEPLABV3:  # trained at output stride 16 (see its comments)
        changed += ('strides', 'dilations')
        assert (cfg.model.backbone.strides, cfg.model.backbone.dilations) == (
            (1, 2, 2, 1), (1, 1, 1, 2))
    same_backbone = {k: v for k, v in real.model.backbone.items() if k not in changed}
    assert {k: cfg.model.backbone[k] for k in same_backbone} == same_backbone
    # the shared shapes pretraining, loaded as the real config loads ImageNet weights
    assert cfg.model.backbone.init_cfg == dict(
        type='Pretrained', checkpoint=cfg.shapes_pretrain.checkpoint)
    for part in ('neck', 'rpn_head', 'decode_head', 'auxiliary_head'):
        if part in real.model:
            assert cfg.model[part].type == real.model[part].type
    assert cfg.default_scope == real.default_scope


def test_detection_demos_share_one_data_section():
    """Faster and Cascade Mask R-CNN take their data from configs/demo/_base_/shapes_coco.py."""
    faster, cascade = load_config(FASTER_RCNN), load_config(CASCADE)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert faster[key] == cascade[key], key
    assert faster.test_evaluator.ann_file == cascade.test_evaluator.ann_file
    assert faster.test_dataloader.dataset.data_root == 'data/shapes_coco/'
    # the segmentation scenes are the detection scenes with larger shapes and more val images
    # (see shapes_ade20k.py)
    scene, larger = faster.shapes_scene, load_config(DEEPLABV3).shapes_scene
    assert {**larger, 'radius': scene.radius, 'num_val': scene.num_val} == scene
    assert all(big > small for big, small in zip(larger.radius, scene.radius, strict=True))
    assert larger.num_val > scene.num_val
    for config in REAL_CONFIGS:
        assert 'LoadImageFromFile' not in config.read_text()  # no restated pipelines


def test_cascade_demo_restates_the_real_stage_lists():
    """Lists are replaced whole by config inheritance: the demo restates them. Its box heads
    are MMDetection's standard Cascade heads (2fc, no norm) with 3 classes instead of the
    recipe's 4conv1fc heads; everything else keeps the real stages, but the sampled RoIs."""
    cfg, real = load_config(CASCADE), load_config(REPO / 'configs' / REAL_CONFIGS[CASCADE])
    standard = load_mm('mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py')
    heads = cfg.model.roi_head.bbox_head
    assert len(heads) == len(real.model.roi_head.bbox_head) == 3
    for ours, theirs in zip(heads, standard.model.roi_head.bbox_head, strict=True):
        assert ours == {k: v for k, v in {**theirs, 'num_classes': 3}.items() if k != '_scope_'}
    for ours, recipe in zip(heads, real.model.roi_head.bbox_head, strict=True):
        assert ours.bbox_coder == recipe.bbox_coder and ours.loss_bbox == recipe.loss_bbox
    sampled = cfg.model.train_cfg.rcnn[0].sampler
    for ours, theirs in zip(cfg.model.train_cfg.rcnn, real.model.train_cfg.rcnn, strict=True):
        assert ours == {**theirs, 'sampler': {**theirs['sampler'], **sampled}}


def _tiny_options(data_root: Path) -> dict:
    """Per model: tiny widths, 64x64 scenes (4 + 2), a 2-iteration pretraining."""
    shared = {
        'shapes_scene.num_train': 4, 'shapes_scene.num_val': 2,
        'shapes_scene.height': 64, 'shapes_scene.width': 64,
        'shapes_pretrain.iterations': 2, 'shapes_pretrain.batch_size': 4,
        'shapes_pretrain.size': 32, 'shapes_pretrain.warmup': 1,
    }
    detection = tiny_detection_options(str(data_root / 'shapes_coco') + '/', max_iters=2)
    segmentation = tiny_segmentation_options(str(data_root / 'shapes_ade20k') + '/', max_iters=2)
    # the demo's own data roots, and its pretraining (a tiny one here) loaded by every model
    drop = ('_dataloader.dataset.data_root', '_evaluator.ann_file', 'model.backbone.init_cfg')
    keep = lambda options: {k: v for k, v in options.items()  # noqa: E731
                            if not any(d in k for d in drop)}
    cascade = {k: v for k, v in keep(detection).items() if '.bbox_head.' not in k}
    cascade.update({f'model.roi_head.bbox_head.{i}.{k}': v for i in range(3) for k, v in (
        ('in_channels', 32), ('fc_out_channels', 64))})
    cascade.update({'model.roi_head.mask_roi_extractor.out_channels': 32,
                    'model.roi_head.mask_head.in_channels': 32,
                    'model.roi_head.mask_head.conv_out_channels': 32})
    return {'faster_rcnn': {**keep(detection), **shared},
            'cascade_mask_rcnn': {**cascade, **shared},
            'deeplabv3': {**keep(segmentation), **shared}}


def test_demo_run_pretrains_trains_evaluates_draws_and_reports(tmp_path, capsys):
    """The demo path end to end with tiny models (the real run is `make demo`)."""
    work, data = tmp_path / 'work', tmp_path / 'data'
    options = _tiny_options(data)
    report = run_demo(str(work), str(data), cfg_options=options)
    out, err = capsys.readouterr()
    assert 'KaimingInit' not in out + err  # the pretraining's init is not logged per parameter

    assert json.loads((work / 'summary.json').read_text()) == report
    assert set(report) == {'models', 'total_seconds'}
    assert set(report['models']) == set(THRESHOLDS)
    for name, entry in report['models'].items():
        assert set(entry) == {'metrics', 'seconds', 'iterations'}
        assert set(entry['metrics']) == set(THRESHOLDS[name])
        assert entry['iterations'] == 2 and 0 < entry['seconds'] < report['total_seconds']
    assert 'model' in out and 'threshold' in out and 'met' in out
    for demo in DEMOS.values():
        assert demo.title in out

    # the pretraining is written in the authors' layout, with its classifier
    pretrained = torch.load(work / 'pretrain' / 'resnest50_shapes.pth', weights_only=True)
    assert detect_layout(pretrained) == 'official'
    assert pretrained['fc.weight'].shape[0] == 4  # background + three shapes
    # every model loaded it: norm_eval keeps the pretrained BN statistics through training
    for name in DEMOS:
        saved = torch.load(work / name / 'iter_2.pth', weights_only=False)
        assert 'optimizer' not in saved and 'meta' in saved  # weights for tools/infer.py only
        torch.testing.assert_close(saved['state_dict']['backbone.stem.1.running_mean'],
                                   pretrained['conv1.1.running_mean'])

    overview = cv2.imread(str(work / 'overview.png'))
    assert overview is not None and overview.shape[0] >= 3 * 64
    for name in DEMOS:
        assert len(list((work / name / 'predictions').glob('*.png'))) == 2  # 2 val images
    commands = [line.strip() for line in out.splitlines()
                if line.strip().startswith('python tools/infer.py')]
    assert len(commands) == 3
    for command in commands:
        images, config, checkpoint = command.split()[2:5]
        assert Path(images).is_dir() and Path(config).is_file() and Path(checkpoint).is_file()


def test_pretraining_starts_from_the_backbones_default_init():
    """Each block starts as the identity (its last norm zeroed), convolutions Kaiming-normal:
    what the backbone's init_cfg default gives, not PyTorch's per-layer defaults."""
    backbone_cfg = {**load_config(FASTER_RCNN).model.backbone, 'depth': 14}
    backbone = classification_backbone(backbone_cfg)
    blocks = [block for layer in backbone.res_layers for block in getattr(backbone, layer)]
    assert blocks and all(block.norm3.weight.eq(0).all() for block in blocks)
    stem_conv = backbone.stem[0].weight  # Kaiming normal, fan_out, ReLU gain
    expected_std = (2 / (stem_conv.shape[0] * stem_conv[0, 0].numel())) ** 0.5
    assert abs(stem_conv.std().item() / expected_std - 1) < 0.2
    assert backbone.training and not backbone.norm_eval and backbone.frozen_stages == -1


@pytest.mark.slow
def test_full_demo_reaches_the_thresholds_within_ten_minutes(tmp_path):
    """`make demo` as shipped: every threshold of issue 10 met on the val split, <= 10 min."""
    report = run_demo(str(tmp_path / 'work'), str(tmp_path / 'data'))
    for name, thresholds in THRESHOLDS.items():
        metrics = report['models'][name]['metrics']
        for metric, threshold in thresholds.items():
            assert metrics[metric] >= threshold, (name, metric, metrics[metric])
    assert report['total_seconds'] <= 600, report
