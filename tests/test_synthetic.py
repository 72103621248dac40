"""The synthetic generator: deterministic, loadable by mmdet/mmseg, annotations match drawings."""

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from resnest_mm.datasets import make_ade20k, make_coco, render_split
from resnest_mm.datasets.synthetic import ADE20K_CLASSES, ADE20K_LABEL_VALUES, ADE20K_SPLITS, SHAPES

SIZE = dict(height=64, width=80)


def _digest(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob('*')) if p.is_file()}


@pytest.mark.parametrize('make', [make_coco, make_ade20k])
def test_same_seed_same_files_other_seed_other_files(tmp_path, make):
    first = _digest(make(tmp_path / 'a', num_train=3, num_val=2, seed=5, **SIZE))
    again = _digest(make(tmp_path / 'b', num_train=3, num_val=2, seed=5, **SIZE))
    other = _digest(make(tmp_path / 'c', num_train=3, num_val=2, seed=6, **SIZE))
    assert first == again
    assert len(first) >= 5 + 1
    assert first.keys() == other.keys() and first != other


def test_coco_loads_in_mmdet_and_matches_drawings(tmp_path):
    from mmdet.datasets import CocoDataset
    from pycocotools.coco import COCO

    root = make_coco(tmp_path, num_train=4, num_val=2, seed=1, **SIZE)
    dataset = CocoDataset(
        data_root=str(root), ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'), metainfo=dict(classes=SHAPES), pipeline=[],
        filter_cfg=None)
    assert len(dataset) == 4
    coco = COCO(str(root / 'annotations' / 'instances_train.json'))
    for scene, info in zip(render_split(1, 4, 0, **SIZE), dataset, strict=True):
        image = cv2.imread(info['img_path'])
        assert image.shape == scene.image.shape
        assert np.abs(image.astype(int) - scene.image).mean() < 8  # JPEG (quality 95) of noise
        assert [i['bbox_label'] for i in info['instances']] == [s.label for s in scene.shapes]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=info['img_id']))
        for index, (instance, ann) in enumerate(zip(info['instances'], anns, strict=True), 1):
            drawn = scene.instances == index
            ys, xs = np.nonzero(drawn)
            # mmdet's boxes are x1, y1, x2, y2 with x2, y2 the pixel edges past the last pixel
            assert instance['bbox'] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            mask = coco.annToMask(ann).astype(bool)
            iou = (mask & drawn).sum() / (mask | drawn).sum()
            assert iou > 0.95, iou  # polygon rasterised by pycocotools vs by cv2.fillPoly
            assert ann['area'] == drawn.sum()


def test_ade20k_loads_in_mmseg_and_labels_match_drawings(tmp_path):
    from mmengine.registry import DefaultScope
    from mmseg.datasets import ADE20KDataset

    names = ADE20KDataset.METAINFO['classes']
    assert all(names[ADE20K_LABEL_VALUES[name] - 1] == name for name in ADE20K_CLASSES)
    root = make_ade20k(tmp_path, num_train=3, num_val=2, seed=2, **SIZE)
    with DefaultScope.overwrite_default_scope('mmseg'):
        dataset = ADE20KDataset(
            data_root=str(root), data_prefix=dict(
                img_path=f'images/{ADE20K_SPLITS[1]}',
                seg_map_path=f'annotations/{ADE20K_SPLITS[1]}'),
            pipeline=[dict(type='LoadAnnotations', reduce_zero_label=True)],
            metainfo=dict(classes=ADE20K_CLASSES))
        samples = list(dataset)
    assert len(samples) == 2
    for scene, sample in zip(render_split(2, 2, 1, **SIZE), samples, strict=True):
        labels = sample['gt_seg_map']
        expected = np.zeros_like(labels)  # background 'wall' is class 0 after reduce_zero_label
        for index, shape in enumerate(scene.shapes, 1):
            expected[scene.instances == index] = shape.label + 1
        np.testing.assert_array_equal(labels, expected)
        assert set(np.unique(labels)) <= set(range(len(ADE20K_CLASSES)))
