"""Dataset helpers: the deterministic synthetic generator used by the demo and the tests."""

from .synthetic import make_ade20k, make_coco, render_crops, render_scene, render_split

__all__ = ['make_ade20k', 'make_coco', 'render_crops', 'render_scene', 'render_split']
