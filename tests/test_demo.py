"""The demo configs and the demo/learning-check runs of tools/demo.py."""

import pytest
from tiny import CASCADE, DEEPLABV3, DEMO_CONFIGS, FASTER_RCNN, REPO, tiny_segmentation_options

from resnest_mm.apis import load_config
from resnest_mm.apis.demo import CHECKS, DEMOS, run_learning_check, train_and_test

REAL_CONFIGS = {
    FASTER_RCNN: 'faster_rcnn_resnest50_fpn.py',
    CASCADE: 'cascade_mask_rcnn_resnest50_fpn.py',
    DEEPLABV3: 'deeplabv3_resnest50_d8_ade20k.py',
}


def test_demo_lists_the_demo_configs():
    assert {DEMO_CONFIGS / config for _, config, _ in DEMOS.values()} == set(REAL_CONFIGS)


@pytest.mark.parametrize('demo', list(REAL_CONFIGS), ids=lambda p: p.stem)
def test_demo_configs_inherit_the_real_configs(demo):
    assert f"_base_ = '../{REAL_CONFIGS[demo]}'" in demo.read_text()
    cfg, real = load_config(demo), load_config(REPO / 'configs' / REAL_CONFIGS[demo])
    assert cfg.model.backbone.type == real.model.backbone.type == 'resnest_mm.ResNeSt'
    assert cfg.custom_imports == real.custom_imports
    same_backbone = {k: v for k, v in real.model.backbone.items() if k != 'init_cfg'}
    assert {k: cfg.model.backbone[k] for k in same_backbone} == same_backbone
    assert cfg.model.backbone.init_cfg is None  # from scratch: nothing is downloaded
    for part in ('neck', 'rpn_head', 'decode_head', 'auxiliary_head'):
        if part in real.model:
            assert cfg.model[part].type == real.model[part].type
    assert cfg.default_scope == real.default_scope


def test_cascade_demo_restates_the_real_stage_lists():
    """Lists are replaced whole by config inheritance: the demo restates them, changing only
    the number of classes and of sampled RoIs."""
    cfg, real = load_config(CASCADE), load_config(REPO / 'configs' / REAL_CONFIGS[CASCADE])
    assert len(cfg.model.roi_head.bbox_head) == len(real.model.roi_head.bbox_head) == 3
    for ours, theirs in zip(cfg.model.roi_head.bbox_head, real.model.roi_head.bbox_head,
                            strict=True):
        assert ours == {**theirs, 'num_classes': 3}
    for ours, theirs in zip(cfg.model.train_cfg.rcnn, real.model.train_cfg.rcnn, strict=True):
        assert ours == {**theirs, 'sampler': {**theirs['sampler'], 'num': 64}}


def test_demo_run_trains_evaluates_and_draws(tmp_path, monkeypatch):
    """The demo path end to end with a tiny DeepLabV3 (the real run is `make demo`)."""
    import resnest_mm.apis.demo as demo

    folder, make, _, seed = demo.DATASETS['ade20k']
    monkeypatch.setitem(demo.DATASETS, 'ade20k', (folder, make, (2, 2), seed))
    options = tiny_segmentation_options(str(tmp_path / 'data' / folder) + '/', max_iters=2)
    options = {k: v for k, v in options.items() if '_dataloader.dataset.data_root' not in k}
    result = train_and_test('deeplabv3', str(tmp_path / 'work'), str(tmp_path / 'data'),
                            cfg_options=options)
    assert {'mIoU', 'aAcc', 'mAcc'} <= set(result.metrics)
    pictures = sorted((tmp_path / 'work' / 'deeplabv3' / 'predictions').rglob('*.png'))
    assert len(pictures) == 2
    assert (tmp_path / 'data' / folder / '.complete').exists()


@pytest.mark.slow
def test_learning_check_overfits_a_handful_of_images(tmp_path, capsys):
    """Faster R-CNN S-50 reaches bbox AP50 >= 0.9 and DeepLabV3 S-50 mIoU >= 70 from scratch."""
    assert set(CHECKS) == {'faster_rcnn', 'deeplabv3'}
    passed = run_learning_check(str(tmp_path / 'work'), str(tmp_path / 'data'))
    out = capsys.readouterr().out
    assert passed, out
    assert out.count('PASS') == 2
