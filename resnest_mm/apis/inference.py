"""Predictions on any images through MMDetection's and MMSegmentation's own inferencers.

:func:`infer` (behind ``tools/infer.py``) picks ``mmdet.apis.DetInferencer`` or
``mmseg.apis.MMSegInferencer`` from the config's ``default_scope``; they read the images,
run the model, draw the predictions with the codebase's visualizer and write them (and the
raw predictions) under ``out_dir``.
"""

from __future__ import annotations

from pathlib import Path

from .config import codebase_of, load_config
from .mmengine_checkpoints import mmengine_checkpoint_globals

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def _check_inputs(inputs: str | Path, config: str | Path, checkpoint: str | Path) -> None:
    for what, path, ok in (
        ('image or folder', inputs, Path(inputs).exists()),
        ('config file', config, Path(config).is_file()),
        ('checkpoint file', checkpoint, Path(checkpoint).is_file()),
    ):
        if not ok:
            raise FileNotFoundError(f'{what} {str(path)!r} does not exist')
    if Path(inputs).is_dir() and not any(
            p.suffix.lower() in IMAGE_SUFFIXES for p in Path(inputs).iterdir()):
        raise FileNotFoundError(f'folder {str(inputs)!r} holds no image '
                                f'({", ".join(IMAGE_SUFFIXES)})')


def build_inferencer(config: str | Path, checkpoint: str | Path, device: str = 'cpu',
                     compile: bool = False):
    """The codebase's inferencer for ``config`` with the weights of ``checkpoint``; with
    ``compile``, its model's backbone, neck and decode head compiled
    (:func:`resnest_mm.deploy.compile_model`; the report is the inferencer's
    ``compile_report``)."""
    inferencer = _build_inferencer(config, checkpoint, device)
    if compile:
        from ..deploy import compile_model

        inferencer.compile_report = compile_model(inferencer.model)
    return inferencer


def _build_inferencer(config: str | Path, checkpoint: str | Path, device: str):
    import resnest_mm  # noqa: F401  (registers resnest_mm.ResNeSt)

    codebase = codebase_of(load_config(config))
    with mmengine_checkpoint_globals():  # the checkpoints mmengine writes, on torch >= 2.6
        if codebase == 'mmdet':
            from mmdet.apis import DetInferencer
            return DetInferencer(model=str(config), weights=str(checkpoint), device=device,
                                 show_progress=False)
        from mmseg.apis import MMSegInferencer
        return MMSegInferencer(model=str(config), weights=str(checkpoint), device=device)


def infer(inputs: str | Path, config: str | Path, checkpoint: str | Path,
          out_dir: str | Path = 'outputs', score_thr: float = 0.3, device: str = 'cpu',
          compile: bool = False) -> list[Path]:
    """Draw and save the predictions of a trained model for an image or a folder of images.

    Args:
        inputs: an image file or a folder of images.
        config: the model's config (mmdet or mmseg, by ``default_scope``).
        checkpoint: its trained weights (e.g. ``work_dirs/demo/faster_rcnn/iter_150.pth``).
        out_dir: pictures go to ``<out_dir>/vis/``, predictions to ``<out_dir>/preds/``
            (mmdet, JSON) or ``<out_dir>/pred/`` (mmseg, label PNGs).
        score_thr: boxes below this score are not drawn (mmdet).
        device: 'cpu' or 'cuda'.
        compile: compile the backbone, neck and decode head (:mod:`resnest_mm.deploy.compile`);
            the compile time is logged as one line.

    Returns:
        The files written, sorted.

    Raises:
        FileNotFoundError: the image or folder, config or checkpoint does not exist.
        resnest_mm.deploy.CompileUnavailableError: ``compile`` where torch cannot compile.
    """
    _check_inputs(inputs, config, checkpoint)
    if compile:
        from ..deploy import check_compiler

        check_compiler()
    inferencer = build_inferencer(config, checkpoint, device, compile)
    out_dir = Path(out_dir)
    before = set(out_dir.rglob('*')) if out_dir.exists() else set()
    if type(inferencer).__name__ == 'DetInferencer':
        inferencer(str(inputs), out_dir=str(out_dir), pred_score_thr=score_thr,
                   no_save_pred=False)
    else:
        inferencer(str(inputs), out_dir=str(out_dir))
    if compile:
        from mmengine.logging import print_log

        print_log(inferencer.compile_report.summary(), logger='current')
    return sorted(p for p in out_dir.rglob('*') if p.is_file() and p not in before)
