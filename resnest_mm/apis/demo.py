"""The embedded demo behind ``tools/demo.py``: three ResNeSt-50 models that learn, on a CPU.

The demo configs (``configs/demo/``) inherit the real configs. :func:`run_demo` generates their
scenes, pretrains the shared S-50 backbone on crops of them (:mod:`.pretrain`), fine-tunes
Faster R-CNN, Cascade Mask R-CNN and DeepLabV3 from it, evaluates each on the held-out val
split, draws ground truth next to predictions with the mm visualizers, and prints and saves
one table against the thresholds of ``DEMOS``.
"""

from __future__ import annotations

import json
import os.path as osp
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import mmcv
import numpy as np
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.utils import ProgressBar

from ..datasets import make_ade20k, make_coco
from .config import check_dataset_paths, codebase_of
from .mmengine_checkpoints import mmengine_checkpoint_globals
from .pretrain import PretrainResult, pretrain_backbone
from .runner import build_runner, build_train_config, prepare_run

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / 'configs' / 'demo'


@dataclass(frozen=True)
class Demo:
    """One demo model: its title, config (in ``CONFIG_DIR``) and thresholds on the val split
    (``{metric: least value}``, in the evaluator's names and units: COCO AP in [0, 1], mIoU
    in percent)."""

    title: str
    config: str
    thresholds: dict


DEMOS = {
    'faster_rcnn': Demo('Faster R-CNN S-50', 'faster_rcnn_resnest50_fpn_shapes.py',
                        {'coco/bbox_mAP_50': 0.5}),
    'cascade_mask_rcnn': Demo('Cascade Mask R-CNN S-50',
                              'cascade_mask_rcnn_resnest50_fpn_shapes.py',
                              {'coco/bbox_mAP_50': 0.4, 'coco/segm_mAP_50': 0.3}),
    'deeplabv3': Demo('DeepLabV3 S-50', 'deeplabv3_resnest50_d8_shapes.py', {'mIoU': 50.0}),
}
DATASETS = {  # codebase: folder under the data root, generator, the config's data section
    'mmdet': ('shapes_coco', make_coco),
    'mmseg': ('shapes_ade20k', make_ade20k),
}
PICTURES_PER_MODEL = 3
SCORE_THR = 0.3  # boxes drawn in the pictures (the evaluation uses every box)


class ProgressHook(Hook):
    """A progress bar over training iterations, then over test images."""

    priority = 'VERY_LOW'

    def before_train(self, runner) -> None:
        print('  training', flush=True)
        self._bar = ProgressBar(runner.max_iters - runner.iter)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self._bar.update()

    def before_test(self, runner) -> None:
        print('\n  evaluating on the val split', flush=True)
        self._bar = ProgressBar(len(runner.test_dataloader.dataset))

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        for _ in outputs or ():
            self._bar.update()

    def after_test(self, runner) -> None:
        print(flush=True)


class GroundTruthAndPredictionHook(Hook):
    """Draw the first ``count`` test images with the runner's visualizer: ground truth (left)
    next to the prediction (right), one PNG each under ``out_dir``."""

    def __init__(self, out_dir: str, count: int = PICTURES_PER_MODEL,
                 score_thr: float = SCORE_THR) -> None:
        self.out_dir, self.count, self.score_thr = out_dir, count, score_thr
        self.files: list[str] = []

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        for sample in outputs or ():
            if len(self.files) >= self.count:
                return
            image = mmcv.imread(sample.img_path, channel_order='rgb')
            out_file = osp.join(self.out_dir, Path(sample.img_path).stem + '.png')
            extra = {'pred_score_thr': self.score_thr} if 'pred_instances' in sample else {}
            runner.visualizer.add_datasample(
                Path(sample.img_path).stem, image, data_sample=sample, draw_gt=True,
                draw_pred=True, out_file=out_file, **extra)
            self.files.append(out_file)


@dataclass
class DemoResult:
    """What one demo model produced."""

    name: str
    title: str
    metrics: dict
    thresholds: dict
    iterations: int
    seconds: float
    checkpoint: str
    config: str
    images: str
    pictures: list[str] = field(default_factory=list)

    @property
    def met(self) -> dict:
        """``{metric: value >= threshold}``; a metric the evaluator did not return is not met."""
        return {k: self.metrics.get(k, -1.0) >= v for k, v in self.thresholds.items()}


# ----------------------------------------------------------------------------- data

def ensure_dataset(data_root: str | Path, codebase: str, scene: dict) -> str:
    """Generate the scenes of ``scene`` (``shapes_scene`` of the configs) in the layout of
    ``codebase`` under ``data_root`` unless the same settings are already there."""
    folder, make = DATASETS[codebase]
    root = Path(data_root) / folder
    settings = json.dumps(scene, sort_keys=True)
    marker = root / '.complete'
    if not marker.exists() or marker.read_text() != settings:
        shutil.rmtree(root, ignore_errors=True)
        options = dict(scene)
        num_train, num_val = options.pop('num_train'), options.pop('num_val')
        print(f'Generating {num_train} + {num_val} scenes in {root}', flush=True)
        bar = ProgressBar(num_train + num_val)
        make(root, num_train=num_train, num_val=num_val, progress=bar.update, **options)
        print(flush=True)
        marker.write_text(settings)
    return str(root) + '/'


def _data_options(codebase: str, root: str) -> dict:
    """cfg-options pointing every split of a demo config at the dataset under ``root``."""
    options = {f'{loader}.dataset.data_root': root
               for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')}
    if codebase == 'mmdet':
        for evaluator in ('val_evaluator', 'test_evaluator'):
            options[f'{evaluator}.ann_file'] = f'{root}annotations/instances_val.json'
    return options


def _scene_settings(cfg: Config) -> dict:
    scene = cfg.shapes_scene.to_dict()
    return {k: list(v) if isinstance(v, tuple) else v for k, v in scene.items()}


# ----------------------------------------------------------------------------- runs

def demo_config(name: str, work_dir: str, data_root: str, cfg_options: dict | None = None
                ) -> Config:
    """The training config of demo ``name``: its data under ``data_root``, its run under
    ``<work_dir>/<name>``, the pretrained backbone from ``<work_dir>/pretrain/``."""
    path = CONFIG_DIR / DEMOS[name].config
    cfg = build_train_config(path, cfg_options=cfg_options)
    codebase = codebase_of(cfg)
    root = str(Path(data_root) / DATASETS[codebase][0]) + '/'
    checkpoint = osp.join(osp.abspath(work_dir), 'pretrain', Path(
        cfg.shapes_pretrain.checkpoint).name)
    # The demo's checkpoints hold the weights only: they are for tools/infer.py, and AdamW's
    # two moments would triple them (Cascade Mask R-CNN's: 902 MiB and 2.9 s to write, against
    # 301 MiB and 0.3 s). The configs keep mmengine's default, so tools/train.py resumes them.
    options = {**_data_options(codebase, root), 'log_level': 'WARNING',
               'default_hooks.checkpoint.save_optimizer': False,
               'model.backbone.init_cfg.checkpoint': checkpoint,
               'shapes_pretrain.checkpoint': checkpoint, **(cfg_options or {})}
    cfg = build_train_config(path, work_dir=osp.abspath(osp.join(work_dir, name)),
                             cfg_options=options)
    # No validation while training: the val split is evaluated once, after training.
    cfg.update(val_dataloader=None, val_cfg=None, val_evaluator=None)
    return cfg


def pretrain(cfg: Config) -> PretrainResult:
    """The shared backbone pretraining of a demo config (its ``shapes_pretrain``)."""
    settings = cfg.shapes_pretrain.to_dict()
    preprocessor = cfg.model.data_preprocessor
    print(f'\nPretraining the S-50 backbone on {settings["iterations"]} x '
          f'{settings["batch_size"]} generated crops -> {settings["checkpoint"]}', flush=True)
    return pretrain_backbone(
        settings['checkpoint'], cfg.model.backbone.to_dict(), mean=preprocessor.mean,
        std=preprocessor.std, iterations=settings['iterations'],
        batch_size=settings['batch_size'], size=settings['size'], lr=settings['lr'],
        warmup=settings['warmup'], seed=cfg.shapes_scene.seed,
        render_kwargs=settings.get('crops'))


def train_and_test(name: str, cfg: Config) -> DemoResult:
    """Train demo ``name`` with ``cfg`` (from :func:`demo_config`), evaluate it on the val
    split and draw ground truth next to predictions for a few val images."""
    demo = DEMOS[name]
    prepare_run(cfg, 'train')
    check_dataset_paths(cfg, 'test')
    start = time.perf_counter()
    iterations = cfg.train_cfg.max_iters
    print(f'\n{demo.title}: {iterations} iterations from the pretrained backbone '
          f'({cfg.work_dir})', flush=True)
    runner = build_runner(cfg)
    pictures = GroundTruthAndPredictionHook(osp.join(cfg.work_dir, 'predictions'))
    runner.register_hook(ProgressHook())
    runner.register_hook(pictures)
    with mmengine_checkpoint_globals():
        runner.train()
        metrics = runner.test()
    checkpoint = osp.join(cfg.work_dir, f'iter_{iterations}.pth')
    config = osp.join(cfg.work_dir, demo.config)  # as trained: the Runner dumps it there
    metrics = {k: float(v) for k, v in metrics.items()}  # mmseg's are numpy scalars
    return DemoResult(name, demo.title, metrics, demo.thresholds, iterations,
                      time.perf_counter() - start, checkpoint, config, _test_images(cfg),
                      pictures.files)


# ----------------------------------------------------------------------------- report

def summary(results: list[DemoResult], total_seconds: float) -> dict:
    """The content of ``summary.json`` (metric names are the evaluators' own)."""
    return {
        'models': {r.name: {'metrics': {k: r.metrics.get(k) for k in r.thresholds},
                            'seconds': round(r.seconds, 1), 'iterations': r.iterations}
                   for r in results},
        'total_seconds': round(total_seconds, 1),
    }


def format_table(results: list[DemoResult], pretrained: PretrainResult | None = None) -> str:
    """One row per model and metric: iterations, seconds, value, threshold, met."""
    header = ('model', 'iterations', 'seconds', 'metric', 'value', 'threshold', 'met')
    rows = []
    if pretrained is not None:
        rows.append(('S-50 pretraining (crops)', str(pretrained.iterations),
                     f'{pretrained.seconds:.0f}', 'accuracy', f'{pretrained.accuracy:.3f}',
                     '-', '-'))
    for r in results:
        for metric, threshold in r.thresholds.items():
            value = r.metrics.get(metric)
            rows.append((r.title, str(r.iterations), f'{r.seconds:.0f}', metric,
                         'none' if value is None else f'{value:.3f}', f'{threshold:g}',
                         'yes' if r.met[metric] else 'NO'))
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(row: tuple) -> str:
        return '  '.join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()

    return '\n'.join([line(header), line(tuple('-' * w for w in widths)), *map(line, rows)])


def save_overview(results: list[DemoResult], path: str, height: int = 200
                  ) -> str | None:
    """Tile each model's pictures (ground truth | prediction), one row per model."""
    rows = []
    for result in results:
        tiles = [cv2.imread(f) for f in result.pictures]
        tiles = [cv2.resize(t, (round(t.shape[1] * height / t.shape[0]), height))
                 for t in tiles if t is not None]
        if not tiles:
            continue
        gap = np.full((height, 8, 3), 255, np.uint8)
        row = np.concatenate([x for t in tiles for x in (t, gap)][:-1], axis=1)
        banner = np.full((26, row.shape[1], 3), 255, np.uint8)
        cv2.putText(banner, f'{result.title}: ground truth | prediction (held-out images)',
                    (4, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(np.concatenate([banner, row], axis=0))
    if not rows:
        return None
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255)
            for r in rows]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(path, np.concatenate(rows, axis=0))
    return path


def _relative(path: str) -> str:
    try:
        return osp.relpath(path)
    except ValueError:
        return path


def infer_commands(results: list[DemoResult], work_dir: str) -> list[str]:
    """``tools/infer.py`` command lines for each demo checkpoint on its val images."""
    return [f'python tools/infer.py {_relative(r.images)} {_relative(r.config)} '
            f'{_relative(r.checkpoint)} --out-dir {_relative(osp.join(work_dir, "infer", r.name))}'
            for r in results]


def _test_images(cfg: Config) -> str:
    """The folder of the test split's images."""
    dataset = cfg.test_dataloader.dataset
    prefix = dataset.data_prefix
    return osp.join(dataset.data_root, prefix.get('img') or prefix.get('img_path'))


def run_demo(work_dir: str, data_root: str, names: list[str] | None = None,
             cfg_options: dict[str, dict] | None = None) -> dict:
    """Run the demo models ``names`` (keys of ``DEMOS``, default all); print the table, write
    ``<work_dir>/summary.json`` and ``<work_dir>/overview.png``; return the summary.

    Args:
        work_dir: runs, logs, checkpoints and pictures.
        data_root: where the scenes are generated (when absent or of other settings).
        names: which models.
        cfg_options: per model name, further config overrides (the tests shrink the models).
    """
    start = time.perf_counter()
    names = names or list(DEMOS)
    cfgs = {name: demo_config(name, work_dir, data_root, (cfg_options or {}).get(name))
            for name in names}
    for codebase in sorted({codebase_of(cfg) for cfg in cfgs.values()}):
        ensure_dataset(data_root, codebase, _scene_settings(
            next(c for c in cfgs.values() if codebase_of(c) == codebase)))
    pretrained = pretrain(cfgs[names[0]])
    print(f'  held-out crop accuracy {pretrained.accuracy:.3f} ({pretrained.seconds:.0f} s)')
    results = [train_and_test(name, cfg) for name, cfg in cfgs.items()]
    overview = save_overview(results, osp.join(work_dir, 'overview.png'))
    total = time.perf_counter() - start
    report = summary(results, total)
    Path(work_dir, 'summary.json').write_text(json.dumps(report, indent=2) + '\n')
    print('\nResults on the held-out val split (images never seen in training):\n')
    print(format_table(results, pretrained))
    met = all(all(r.met.values()) for r in results)
    print(f'\nAll thresholds met: {"yes" if met else "NO"}. Total {total:.0f} s. '
          f'Summary: {_relative(osp.join(work_dir, "summary.json"))}; pictures (ground truth | '
          f'prediction): {_relative(overview)}')
    print('\nDraw predictions of these checkpoints on any images:')
    for command in infer_commands(results, work_dir):
        print(f'  {command}')
    return report
