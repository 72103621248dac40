"""The synthetic generator: deterministic, loadable by mmdet/mmseg, annotations match drawings."""

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from resnest_mm.datasets import make_ade20k, make_coco, render_crops, render_scene, render_split
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


def _shape_and_background_colours(scene):
    """Per shape: (its pixels' mean colour, the mean colour of the rest of the image)."""
    background = scene.image[scene.instances == 0].astype(float).mean(0)
    return [(scene.image[scene.instances == i].astype(float).mean(0), background)
            for i in range(1, len(scene.shapes) + 1)]


def test_contrast_keeps_every_shape_apart_from_its_background():
    """On a flat background (texture 0) each shape differs from it by >= contrast; without the
    lever, some shapes of the same random stream come closer than that."""
    def gaps(contrast):
        rng = np.random.default_rng(3)
        scenes = [render_scene(rng, 48, 48, contrast=contrast, texture=0.0) for _ in range(40)]
        return [np.abs(shape - back).mean() for scene in scenes
                for shape, back in _shape_and_background_colours(scene)]

    assert min(gaps(60.0)) >= 60.0 - 1  # colours are whole numbers, the background rounded
    assert min(gaps(0.0)) < 60.0


def test_texture_scales_the_background_and_one_keeps_the_default_scene():
    flat = render_scene(np.random.default_rng(4), 48, 48, num_shapes=(0, 0), texture=0.0)
    rough = render_scene(np.random.default_rng(4), 48, 48, num_shapes=(0, 0), texture=1.0)
    default = render_scene(np.random.default_rng(4), 48, 48, num_shapes=(0, 0))
    assert flat.image.reshape(-1, 3).std(0).max() < 1.0
    assert rough.image.reshape(-1, 3).std(0).max() > 5.0
    np.testing.assert_array_equal(rough.image, default.image)


def test_crops_are_labelled_by_their_one_shape_or_background():
    images, labels = render_crops(7, 64, size=32, texture=0.0, contrast=60.0)
    again, same_labels = render_crops(7, 64, size=32, texture=0.0, contrast=60.0)
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(labels, same_labels)
    assert images.shape == (64, 32, 32, 3) and images.dtype == np.uint8
    assert set(labels.tolist()) == set(range(len(SHAPES) + 1))  # background and each shape
    spread = images.reshape(64, -1, 3).std(1).max(1)  # flat background: only a shape varies
    assert (spread[labels == 0] < 1.0).all()
    assert (spread[labels > 0] > 10.0).all()
