"""tools/infer.py: predictions of a trained (tiny) detector and segmentor, drawn and saved by
mmdet's DetInferencer and mmseg's MMSegInferencer; one-line errors for missing inputs."""

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from tiny import (
    DEEPLABV3,
    FASTER_RCNN,
    REPO,
    SIZE,
    tiny_detection_options,
    tiny_segmentation_options,
)

from resnest_mm.apis import build_train_config, run_train
from resnest_mm.datasets import make_ade20k, make_coco

sys.path.insert(0, str(REPO / 'tools'))
import infer as infer_tool


def _train_one_iteration(config: Path, options: dict, work_dir: Path) -> tuple[Path, Path]:
    """Train a tiny model for one iteration; return its dumped config and its checkpoint."""
    options = {**options, 'train_cfg.max_iters': 1,
               'train_cfg.val_interval': 1, 'default_hooks.checkpoint.interval': 1}
    cfg = build_train_config(config, work_dir=str(work_dir), cfg_options=options)
    cfg.update(val_dataloader=None, val_cfg=None, val_evaluator=None)
    run_train(cfg)
    return work_dir / config.name, work_dir / 'iter_1.pth'


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """Per codebase: (val image folder, config, checkpoint) of a tiny model trained once."""
    root = tmp_path_factory.mktemp('infer')
    size = dict(height=SIZE[0], width=SIZE[1])
    coco = make_coco(root / 'coco', num_train=2, num_val=2, seed=0, **size)
    ade = make_ade20k(root / 'ade', num_train=2, num_val=2, seed=0, **size)
    return {
        'mmdet': (coco / 'val', *_train_one_iteration(
            FASTER_RCNN, tiny_detection_options(f'{coco}/'), root / 'faster')),
        'mmseg': (ade / 'images' / 'validation', *_train_one_iteration(
            DEEPLABV3, tiny_segmentation_options(f'{ade}/'), root / 'deeplab')),
    }


def test_detector_pictures_and_predictions_of_a_folder(trained, tmp_path, capsys):
    images, config, checkpoint = trained['mmdet']
    infer_tool.main([str(images), str(config), str(checkpoint), '--out-dir', str(tmp_path),
                     '--score-thr', '0'])
    assert '2 pictures' in capsys.readouterr().out
    for image in sorted(images.glob('*.jpg')):
        picture = cv2.imread(str(tmp_path / 'vis' / image.name))
        assert picture.shape == cv2.imread(str(image)).shape
        prediction = json.loads((tmp_path / 'preds' / f'{image.stem}.json').read_text())
        assert set(prediction) >= {'labels', 'scores', 'bboxes'}
        assert len(prediction['labels']) == len(prediction['scores']) == len(prediction['bboxes'])
        assert all(label in range(3) for label in prediction['labels'])  # the 3 shapes


def test_segmentor_picture_and_label_map_of_one_image(trained, tmp_path, capsys):
    images, config, checkpoint = trained['mmseg']
    image = sorted(images.glob('*.jpg'))[0]
    infer_tool.main([str(image), str(config), str(checkpoint), '--out-dir', str(tmp_path)])
    assert '1 pictures' in capsys.readouterr().out
    shape = cv2.imread(str(image)).shape
    assert cv2.imread(str(tmp_path / 'vis' / image.name)).shape == shape
    (label_file,) = (tmp_path / 'pred').glob('*.png')  # mmseg numbers them: 00000000_pred.png
    labels = cv2.imread(str(label_file), cv2.IMREAD_UNCHANGED)
    assert labels.shape == shape[:2]
    assert set(np.unique(labels)) <= set(range(4))  # wall, box, ball, tent


@pytest.mark.parametrize('missing', ['image', 'config', 'checkpoint'])
def test_a_missing_input_is_a_one_line_error_naming_it(trained, tmp_path, capsys, missing):
    images, config, checkpoint = trained['mmdet']
    args = {'image': images, 'config': config, 'checkpoint': checkpoint}
    args[missing] = tmp_path / f'no_such_{missing}'
    with pytest.raises(SystemExit) as error:
        infer_tool.main([str(args[k]) for k in ('image', 'config', 'checkpoint')])
    message = str(error.value)
    assert message.startswith('infer.py: error: ') and '\n' not in message
    assert f'no_such_{missing}' in message
    assert not list(tmp_path.glob('outputs*'))
