"""Deterministic synthetic datasets in COCO and ADE20K layout: simple shapes on textures.

Every image is a textured background with a few non-overlapping filled shapes (square,
circle, triangle) of random colour, size and position. Each shape is a polygon; the same
polygon is rasterised into the image, written as the COCO polygon mask, and painted into the
ADE20K label map, so annotations agree exactly with what was drawn. The same seed gives the
same files, byte for byte.

COCO layout (what ``mmdet.datasets.CocoDataset`` reads)::

    root/annotations/instances_{split}.json     # boxes [x, y, w, h], polygons, areas
    root/{split}/000000.jpg ...

ADE20K layout (what ``mmseg.datasets.ADE20KDataset`` reads, ``reduce_zero_label=True``)::

    root/images/{training,validation}/000000.jpg
    root/annotations/{training,validation}/000000.png   # ADE20K class index + 1; 0 = unlabelled
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

SHAPES = ('square', 'circle', 'triangle')
# ADE20K class names used for the segmentation layout: the background, then one per shape.
# They are names of mmseg's ADE20KDataset, so a config can select them with ``metainfo``.
ADE20K_CLASSES = ('wall', 'box', 'ball', 'tent')
# 1-based positions of those names in ADE20K's 150 classes (the value written in label PNGs).
ADE20K_LABEL_VALUES = {'wall': 1, 'box': 42, 'ball': 120, 'tent': 115}
COCO_SPLITS = ('train', 'val')
ADE20K_SPLITS = ('training', 'validation')
CIRCLE_VERTICES = 32


@dataclass(frozen=True)
class Shape:
    """One drawn object: its class index into ``SHAPES`` and its polygon (N x 2, pixel xy)."""

    label: int
    polygon: np.ndarray

    def coco_polygon(self) -> list[float]:
        """The outline of the filled pixels in COCO coordinates, flat ``[x0, y0, x1, ...]``.

        ``cv2.fillPoly`` fills every pixel whose centre lies on or inside ``polygon`` (pixel
        centres at integers); COCO puts pixel ``i`` on ``[i, i + 1]``. So the edges move out
        by half a pixel (the shape is regular: scale by the inradius) and by +0.5 overall.
        """
        centre = self.polygon.mean(0)
        inradius = (np.linalg.norm(self.polygon - centre, axis=1).mean()
                    * math.cos(math.pi / len(self.polygon)))
        outline = centre + (self.polygon - centre) * (inradius + 0.5) / inradius + 0.5
        return np.round(outline, 2).reshape(-1).tolist()


@dataclass(frozen=True)
class Scene:
    """A rendered image (H x W x 3, uint8 BGR), its shapes and its instance map.

    ``instances`` is H x W int32: 0 for background, ``i + 1`` where shape ``i`` was drawn.
    """

    image: np.ndarray
    shapes: list[Shape]
    instances: np.ndarray


def _texture(rng: np.random.Generator, height: int, width: int, strength: float = 1.0
             ) -> np.ndarray:
    """A smooth random background: a base colour, two sinusoidal gratings and pixel noise.

    ``strength`` scales the gratings' and the noise's amplitude (the random draws stay the same).
    """
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.empty((height, width, 3), np.float32)
    image[:] = rng.uniform(60, 190, size=3)
    for _ in range(2):
        angle = rng.uniform(0, math.pi)
        period = rng.uniform(8, 40)
        phase = (xs * math.cos(angle) + ys * math.sin(angle)) * 2 * math.pi / period
        image += np.sin(phase)[..., None] * rng.uniform(5, 25, size=3) * strength
    image += rng.normal(0, 6, size=image.shape) * strength
    return np.clip(image, 0, 255).astype(np.uint8)


def _colour(rng: np.random.Generator, background: np.ndarray, contrast: float) -> tuple:
    """A random BGR colour whose mean absolute difference from ``background`` (the mean colour
    under the shape) is at least ``contrast`` (redrawn up to 100 times; 0 accepts the first)."""
    for _ in range(100):
        colour = rng.integers(0, 256, size=3)
        if np.abs(colour - background).mean() >= contrast:
            break
    return tuple(int(c) for c in colour)


def _polygon(rng: np.random.Generator, label: int, cx: float, cy: float, r: float) -> np.ndarray:
    """Vertices of a shape of class ``label`` centred at (cx, cy) with circumradius ``r``."""
    name = SHAPES[label]
    if name == 'circle':
        angles = np.linspace(0, 2 * math.pi, CIRCLE_VERTICES, endpoint=False)
    else:
        sides = 4 if name == 'square' else 3
        start = rng.uniform(0, 2 * math.pi / sides)
        angles = start + np.arange(sides) * 2 * math.pi / sides
    return np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], 1).astype(np.float32)


def render_scene(
    rng: np.random.Generator,
    height: int = 192,
    width: int = 192,
    num_shapes: tuple[int, int] = (1, 3),
    radius: tuple[float, float] = (0.12, 0.25),
    contrast: float = 0.0,
    texture: float = 1.0,
) -> Scene:
    """Draw one scene.

    Args:
        rng: the random generator; the scene is a pure function of its state.
        height, width: image size in pixels.
        num_shapes: inclusive range of the number of shapes.
        radius: range of circumradii as fractions of ``min(height, width)``.
        contrast: least mean absolute BGR difference (0-255) between a shape's colour and the
            mean background under it; 0 lets a shape match its background.
        texture: amplitude of the background's gratings and noise (1 the default texture).
    """
    image = _texture(rng, height, width, texture)
    instances = np.zeros((height, width), np.int32)
    shapes: list[Shape] = []
    side = min(height, width)
    wanted = int(rng.integers(num_shapes[0], num_shapes[1] + 1))
    placed: list[tuple[float, float, float]] = []
    for _ in range(50 * wanted):  # rejection sampling of non-overlapping discs
        if len(shapes) == wanted:
            break
        r = rng.uniform(*radius) * side
        cx, cy = rng.uniform(r + 1, width - r - 1), rng.uniform(r + 1, height - r - 1)
        label = int(rng.integers(len(SHAPES)))
        if any(math.hypot(cx - x, cy - y) < r + pr + 2 for x, y, pr in placed):
            continue
        polygon = _polygon(rng, label, cx, cy, r)
        points = np.round(polygon).astype(np.int32)
        under = np.zeros((height, width), np.uint8)
        cv2.fillPoly(under, [points], 1)
        colour = _colour(rng, image[under > 0].mean(0) if under.any() else image.mean((0, 1)),
                         contrast)
        cv2.fillPoly(image, [points], colour)
        cv2.fillPoly(instances, [points], len(shapes) + 1)
        shapes.append(Shape(label, np.round(polygon).astype(np.float32)))
        placed.append((cx, cy, r))
    return Scene(image, shapes, instances)


def render_crops(
    seed: int, count: int, size: int = 64, background: float = 0.25, **render_kwargs,
) -> tuple[np.ndarray, np.ndarray]:
    """Classification crops: each one shape (or, with probability ``background``, none).

    Returns ``(images, labels)``: ``(count, size, size, 3)`` uint8 BGR and ``(count,)`` int64,
    label 0 for an empty background and ``1 + index into SHAPES`` for a shape. The same seed
    gives the same crops. ``render_kwargs`` go to :func:`render_scene` (``radius``, ...).
    """
    rng = np.random.default_rng([seed, len(COCO_SPLITS)])
    images = np.empty((count, size, size, 3), np.uint8)
    labels = np.zeros(count, np.int64)
    for i in range(count):
        shapes = (0, 0) if rng.random() < background else (1, 1)
        scene = render_scene(rng, size, size, num_shapes=shapes, **render_kwargs)
        images[i] = scene.image
        labels[i] = scene.shapes[0].label + 1 if scene.shapes else 0
    return images, labels


def render_split(seed: int, count: int, split_index: int, **render_kwargs) -> list[Scene]:
    """The scenes of one split (index into ``COCO_SPLITS`` / ``ADE20K_SPLITS``) for a seed."""
    rng = np.random.default_rng([seed, split_index])
    return [render_scene(rng, **render_kwargs) for _ in range(count)]


def _write_image(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 95]):
        raise OSError(f'could not write {path}')


def mask_bbox(mask: np.ndarray) -> list[float]:
    """COCO box ``[x, y, w, h]`` enclosing the true pixels of an H x W mask (pixel edges)."""
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()),
            float(xs.max() + 1 - xs.min()), float(ys.max() + 1 - ys.min())]


def coco_annotations(scenes: list[Scene], file_names: list[str]) -> dict:
    """The COCO instances dict for rendered scenes (one category per shape, ids from 1)."""
    images, annotations = [], []
    for image_id, (scene, file_name) in enumerate(zip(scenes, file_names, strict=True), 1):
        height, width = scene.instances.shape
        images.append(dict(id=image_id, file_name=file_name, height=height, width=width))
        for index, shape in enumerate(scene.shapes, 1):
            mask = scene.instances == index
            annotations.append(dict(
                id=len(annotations) + 1, image_id=image_id, category_id=shape.label + 1,
                bbox=mask_bbox(mask), area=float(mask.sum()), iscrowd=0,
                segmentation=[shape.coco_polygon()]))
    categories = [dict(id=i + 1, name=name, supercategory='shape') for i, name in enumerate(SHAPES)]
    return dict(images=images, annotations=annotations, categories=categories)


def make_coco(
    root: str | Path, num_train: int = 16, num_val: int = 8, seed: int = 0,
    progress: Callable[[], None] | None = None, **render_kwargs,
) -> Path:
    """Write a COCO-layout dataset under ``root`` (see the module docstring); returns ``root``.

    Args:
        root: output folder, created if needed.
        num_train, num_val: images in the ``train`` and ``val`` splits.
        seed: the same seed writes the same files.
        progress: called once per image written (e.g. a ProgressBar's ``update``).
        render_kwargs: passed to :func:`render_scene` (``height``, ``width``, ...).
    """
    root = Path(root)
    counts = (num_train, num_val)
    for split_index, (split, count) in enumerate(zip(COCO_SPLITS, counts, strict=True)):
        scenes = render_split(seed, count, split_index, **render_kwargs)
        names = [f'{i:06d}.jpg' for i in range(count)]
        for scene, name in zip(scenes, names, strict=True):
            _write_image(root / split / name, scene.image)
            if progress is not None:
                progress()
        ann_file = root / 'annotations' / f'instances_{split}.json'
        ann_file.parent.mkdir(parents=True, exist_ok=True)
        ann_file.write_text(json.dumps(coco_annotations(scenes, names)))
    return root


def ade20k_label_map(scene: Scene) -> np.ndarray:
    """The ADE20K label PNG content of a scene: background ``wall``, shapes by class, uint8."""
    lut = np.array(
        [ADE20K_LABEL_VALUES[ADE20K_CLASSES[0]]]
        + [ADE20K_LABEL_VALUES[ADE20K_CLASSES[s.label + 1]] for s in scene.shapes], np.uint8)
    return lut[scene.instances]


def make_ade20k(
    root: str | Path, num_train: int = 16, num_val: int = 8, seed: int = 0,
    progress: Callable[[], None] | None = None, **render_kwargs,
) -> Path:
    """Write an ADE20K-layout dataset under ``root`` (see the module docstring); returns ``root``.

    Args: as :func:`make_coco`.
    """
    root = Path(root)
    counts = (num_train, num_val)
    for split_index, (split, count) in enumerate(zip(ADE20K_SPLITS, counts, strict=True)):
        for i, scene in enumerate(render_split(seed, count, split_index, **render_kwargs)):
            _write_image(root / 'images' / split / f'{i:06d}.jpg', scene.image)
            label_path = root / 'annotations' / split / f'{i:06d}.png'
            label_path.parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(label_path), ade20k_label_map(scene)):
                raise OSError(f'could not write {label_path}')
            if progress is not None:
                progress()
    return root

