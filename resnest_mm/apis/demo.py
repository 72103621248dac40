"""The embedded demo and the learning check behind ``tools/demo.py``.

Both train the S-50 demo configs (``configs/demo/``, which inherit the real configs) from
scratch on the synthetic shapes, evaluate them and save pictures of the predictions.
"""

from __future__ import annotations

import os.path as osp
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from mmengine.hooks import Hook
from mmengine.utils import ProgressBar

from ..datasets import make_ade20k, make_coco
from .checkpoint import mmengine_checkpoint_globals
from .config import check_dataset_paths
from .runner import build_runner, build_train_config, enable_prediction_pictures, prepare_run

CONFIG_DIR = Path(__file__).resolve().parents[2] / 'configs' / 'demo'
DEMOS = {
    'faster_rcnn': ('Faster R-CNN S-50', 'faster_rcnn_resnest50_fpn_shapes.py', 'coco'),
    'cascade_mask_rcnn': (
        'Cascade Mask R-CNN S-50', 'cascade_mask_rcnn_resnest50_fpn_shapes.py', 'coco'),
    'deeplabv3': ('DeepLabV3 S-50', 'deeplabv3_resnest50_d8_shapes.py', 'ade20k'),
}
# Which metrics to print, per dataset layout (COCO AP in [0, 1], mmseg's in percent).
SHOWN_METRICS = {
    'coco': ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP', 'coco/segm_mAP_50'),
    'ade20k': ('mIoU', 'mAcc', 'aAcc'),
}
IMAGE_SIZE = dict(height=128, width=128)  # what the demo configs train and test on
DATASETS = {  # folder under the data root, generator, images (train, val), seed
    'coco': ('shapes_coco', make_coco, (16, 8), 0),
    'ade20k': ('shapes_ade20k', make_ade20k, (16, 8), 0),
}
# The learning check: a handful of images with two shapes each, evaluated on themselves.
CHECK_DATASETS = {
    'coco': ('shapes_overfit_coco', make_coco, (4, 0), 1),
    'ade20k': ('shapes_overfit_ade20k', make_ade20k, (4, 0), 1),
}
CHECKS = {  # model: iterations, batch size, metric, threshold (in the metric's own unit)
    'faster_rcnn': (150, 2, 'coco/bbox_mAP_50', 0.9),
    'deeplabv3': (80, 2, 'mIoU', 70.0),
}
# Overfitting from scratch needs a faster optimiser than the recipe's: DeepLabV3 with SGD
# (lr 0.01, poly) reached only 28 mIoU after 80 iterations here, mostly background.
CHECK_OPTIONS = {
    'deeplabv3': {
        'optim_wrapper.optimizer': dict(_delete_=True, type='AdamW', lr=1e-3, weight_decay=0.0),
        'param_scheduler': [
            dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=10)],
    },
}


class ProgressHook(Hook):
    """A progress bar over training iterations, then over test images."""

    priority = 'VERY_LOW'

    def before_train(self, runner) -> None:
        self._bar = ProgressBar(runner.max_iters - runner.iter)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self._bar.update()

    def before_test(self, runner) -> None:
        print('\n  evaluating', flush=True)
        self._bar = ProgressBar(len(runner.test_dataloader.dataset))

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        for _ in outputs or ():
            self._bar.update()


@dataclass
class DemoResult:
    """What one demo run produced."""

    title: str
    metrics: dict
    pictures: str
    seconds: float
    shown: tuple = field(default_factory=tuple)


def ensure_dataset(data_root: str | Path, layout: str, check: bool = False) -> str:
    """Generate the synthetic dataset of a layout under ``data_root`` when it is absent."""
    folder, make, (num_train, num_val), seed = (CHECK_DATASETS if check else DATASETS)[layout]
    root = Path(data_root) / folder
    if not (root / '.complete').exists():
        print(f'Generating {root} ...', flush=True)
        shapes = (2, 2) if check else (1, 3)
        make(root, num_train=num_train, num_val=num_val, seed=seed, num_shapes=shapes,
             **IMAGE_SIZE)
        (root / '.complete').touch()
    return str(root) + '/'


def _data_options(layout: str, root: str, check: bool) -> dict:
    """cfg-options pointing all splits at ``root`` (the train split for the check)."""
    if layout == 'coco':
        split = 'train' if check else 'val'
        options = {'train_dataloader.dataset.data_root': root}
        for loader in ('val_dataloader', 'test_dataloader'):
            options.update({
                f'{loader}.dataset.data_root': root,
                f'{loader}.dataset.ann_file': f'annotations/instances_{split}.json',
                f'{loader}.dataset.data_prefix.img': f'{split}/'})
        for evaluator in ('val_evaluator', 'test_evaluator'):
            options[f'{evaluator}.ann_file'] = f'{root}annotations/instances_{split}.json'
        return options
    split = 'training' if check else 'validation'
    options = {'train_dataloader.dataset.data_root': root}
    for loader in ('val_dataloader', 'test_dataloader'):
        options.update({
            f'{loader}.dataset.data_root': root,
            f'{loader}.dataset.data_prefix.img_path': f'images/{split}',
            f'{loader}.dataset.data_prefix.seg_map_path': f'annotations/{split}'})
    return options


def train_and_test(
    name: str, work_dir: str, data_root: str, check: bool = False,
    cfg_options: dict | None = None,
) -> DemoResult:
    """Train one demo model, then evaluate it and draw its predictions.

    Args:
        name: a key of ``DEMOS``.
        work_dir: the parent work dir; this run uses ``<work_dir>/<name>``.
        data_root: where the datasets are (generated when absent).
        check: use the learning-check dataset and evaluate on the training images.
        cfg_options: further overrides.
    """
    title, config, layout = DEMOS[name]
    root = ensure_dataset(data_root, layout, check)
    options = _data_options(layout, root, check)
    options.update({'log_level': 'WARNING'})
    options.update(cfg_options or {})
    run_dir = osp.abspath(osp.join(work_dir, name))
    cfg = build_train_config(CONFIG_DIR / config, work_dir=run_dir, cfg_options=options)
    pictures = osp.join(run_dir, 'predictions')
    enable_prediction_pictures(cfg, pictures)
    # No validation while training: the test split (the validation images) is evaluated after.
    cfg.update(val_dataloader=None, val_cfg=None, val_evaluator=None)
    prepare_run(cfg, 'train')
    check_dataset_paths(cfg, 'test')
    start = time.perf_counter()
    print(f'\n{title}: training {cfg.train_cfg.max_iters} iterations from scratch '
          f'({run_dir})', flush=True)
    runner = build_runner(cfg)
    runner.register_hook(ProgressHook())
    with mmengine_checkpoint_globals():
        runner.train()
        metrics = runner.test()
    return DemoResult(title, metrics, pictures, time.perf_counter() - start,
                      SHOWN_METRICS[layout])


def _print_result(result: DemoResult) -> None:
    shown = ', '.join(f'{k} {result.metrics[k]:.3f}' for k in result.shown
                      if k in result.metrics)
    # mmdet returns no metrics when no box scored above the test threshold (early training)
    shown = shown or 'no predictions above the score threshold yet (train longer)'
    print(f'  {result.title} ({result.seconds:.0f} s): {shown}')
    print(f'    pictures: {result.pictures}')


def save_overview(results: list[DemoResult], path: str, per_model: int = 2,
                  height: int = 160) -> str:
    """Tile the first ``per_model`` prediction pictures of each result, one row per model.

    Each picture is the visualizer's ground truth (left) next to the prediction (right).
    """
    rows = []
    for result in results:
        files = sorted(p for p in Path(result.pictures).rglob('*')
                       if p.suffix.lower() in ('.png', '.jpg'))[:per_model]
        tiles = [cv2.imread(str(f)) for f in files]
        tiles = [cv2.resize(t, (round(t.shape[1] * height / t.shape[0]), height)) for t in tiles]
        if not tiles:
            continue
        row = np.concatenate(tiles, axis=1)
        banner = np.full((24, row.shape[1], 3), 255, np.uint8)
        cv2.putText(banner, f'{result.title}: ground truth | prediction', (4, 17),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(np.concatenate([banner, row], axis=0))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255)
            for r in rows]
    cv2.imwrite(path, np.concatenate(rows, axis=0))
    return path


def run_demo(work_dir: str, data_root: str, names: list[str]) -> list[DemoResult]:
    """Run the demo models ``names`` (keys of ``DEMOS``); print and return their results."""
    results = [train_and_test(name, work_dir, data_root) for name in names]
    print('\nResults on the generated validation images (short runs from scratch):')
    for result in results:
        _print_result(result)
    overview = save_overview(results, osp.join(osp.abspath(work_dir), 'overview.png'))
    print(f'  overview of the pictures: {overview}')
    return results


def run_learning_check(work_dir: str, data_root: str, names: list[str] | None = None) -> bool:
    """Overfit a handful of images with Faster R-CNN and DeepLabV3; print and return pass/fail.

    Args:
        work_dir, data_root: as :func:`run_demo`.
        names: which of ``CHECKS`` to run (default all).
    """
    passed = True
    results = []
    for name in names or list(CHECKS):
        iters, batch_size, metric, threshold = CHECKS[name]
        options = {
            'train_cfg.max_iters': iters, 'train_cfg.val_interval': iters,
            'default_hooks.checkpoint.interval': iters,
            'train_dataloader.batch_size': batch_size, **CHECK_OPTIONS.get(name, {})}
        result = train_and_test(name, osp.join(work_dir, 'check'), data_root, True, options)
        ok = result.metrics[metric] >= threshold
        passed &= ok
        results.append((result, metric, threshold, ok))
    print('\nLearning check (from scratch, evaluated on the training images):')
    for result, metric, threshold, ok in results:
        _print_result(result)
        print(f'    {metric} {result.metrics[metric]:.3f} >= {threshold}: '
              f'{"PASS" if ok else "FAIL"}')
    return passed
