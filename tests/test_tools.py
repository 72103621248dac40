"""tools/train.py and tools/test.py: arguments, clear errors, training, testing, resume, and the
files --out and --show-dir write."""

import copy
import shutil

import mmcv
import mmengine
import numpy as np
import pytest
import torch
from helpers import load_tool
from mmengine.hooks import Hook
from mmengine.optim import build_optim_wrapper
from tiny import (
    DEEPLABV3,
    FASTER_RCNN,
    as_cli,
    tiny_detection_options,
    tiny_segmentation_options,
)

from resnest_mm.apis import (
    DatasetNotFoundError,
    build_runner,
    build_test_config,
    build_train_config,
    check_dataset_paths,
    codebase_of,
    load_config,
    mmengine_checkpoint_globals,
    prepare_run,
    run_test,
    run_train,
)
from resnest_mm.compat import cpu_fused_optimizers
from resnest_mm.datasets import make_coco

train_tool, test_tool = load_tool('train'), load_tool('test')


def _tool_error(tool, argv: list[str]) -> str:
    """The one-line message a tool exits with (it must exit, not raise)."""
    with pytest.raises(SystemExit) as stop:
        tool.main(argv)
    assert isinstance(stop.value.code, str), stop.value.code
    return stop.value.code


def test_unknown_config_path_is_named(tmp_path):
    message = _tool_error(train_tool, [str(tmp_path / 'no_such_config.py')])
    assert f"config file '{tmp_path / 'no_such_config.py'}' does not exist" in message
    message = _tool_error(test_tool, ['configs/nope.py', str(FASTER_RCNN)])
    assert "config file 'configs/nope.py' does not exist" in message


def test_missing_data_root_stops_before_the_runner_with_the_fix(tmp_path):
    missing = str(tmp_path / 'nowhere') + '/'
    message = _tool_error(train_tool, [
        str(FASTER_RCNN), '--work-dir', str(tmp_path / 'w'),
        '--cfg-options', f'train_dataloader.dataset.data_root={missing}'])
    assert f"data_root {missing!r} does not exist" in message
    assert '--cfg-options train_dataloader.dataset.data_root=' in message
    assert not (tmp_path / 'w').exists()  # stopped before the Runner made its work dir


def test_missing_annotation_file_is_named(tmp_path):
    root = make_coco(tmp_path / 'coco', num_train=1, num_val=1, height=32, width=32)
    (root / 'annotations' / 'instances_val.json').unlink()
    cfg = load_config(FASTER_RCNN, {f'{loader}.dataset.data_root': f'{root}/' for loader in (
        'train_dataloader', 'val_dataloader', 'test_dataloader')})
    with pytest.raises(DatasetNotFoundError, match=r'annotation file .*instances_val\.json'):
        check_dataset_paths(cfg, 'test')
    with pytest.raises(DatasetNotFoundError, match=r'val_dataloader\.dataset\.data_root='):
        check_dataset_paths(cfg, 'train')


def test_codebase_follows_default_scope():
    assert codebase_of(load_config(FASTER_RCNN)) == 'mmdet'
    assert codebase_of(load_config(DEEPLABV3)) == 'mmseg'


def test_cli_arguments_become_config_entries(tmp_path):
    args = train_tool.parse_args([str(FASTER_RCNN), '--resume', '--auto-scale-lr',
                                  '--cfg-options', 'train_cfg.max_iters=7'])
    assert args.resume == 'auto' and args.launcher == 'none'
    cfg = build_train_config(args.config, work_dir=str(tmp_path), resume=args.resume,
                             auto_scale_lr=args.auto_scale_lr, cfg_options=args.cfg_options)
    assert cfg.resume is False and cfg.load_from is None  # nothing saved yet: from the start
    assert cfg.auto_scale_lr.enable is True and cfg.train_cfg.max_iters == 7
    with pytest.raises(ValueError, match=r"launcher='gloo' is invalid"):
        build_train_config(FASTER_RCNN, launcher='gloo')
    if not torch.cuda.is_available():  # --amp on the CPU: bf16 autocast (test_precision.py)
        assert build_train_config(FASTER_RCNN, amp=True).optim_wrapper.type == (
            'resnest_mm.CPUAmpOptimWrapper')

    checkpoint = tmp_path / 'model.pth'
    checkpoint.write_bytes(b'')
    args = test_tool.parse_args([str(FASTER_RCNN), str(checkpoint), '--out', 'preds.pkl',
                                 '--show-dir', 'pictures'])
    cfg = build_test_config(args.config, args.checkpoint, out=args.out, show_dir=args.show_dir)
    assert cfg.load_from == str(checkpoint)
    assert cfg.test_evaluator[-1] == dict(type='DumpDetResults', out_file_path='preds.pkl')
    assert cfg.default_hooks.visualization.draw is True
    assert cfg.default_hooks.visualization.test_out_dir == 'pictures'
    cfg = build_test_config(DEEPLABV3, str(checkpoint), out='labels', show_dir='pictures')
    assert cfg.test_evaluator.output_dir == 'labels' and cfg.visualizer.save_dir == 'pictures'
    with pytest.raises(ValueError, match=r'--tta needs tta_model and tta_pipeline'):
        build_test_config(FASTER_RCNN, str(checkpoint), tta=True)


@pytest.mark.parametrize('config', [FASTER_RCNN, DEEPLABV3])
def test_fused_optimizer_option_reaches_the_recipes_optimizer(config):
    """README: ``--cfg-options optim_wrapper.optimizer.fused=True`` gives the recipe's own
    optimizer as one fused kernel on the CPU (torch >= 2.4; before, PyTorch's loop), taking
    the same step as PyTorch's loop."""
    fused_kernel = cpu_fused_optimizers()
    steps = {}
    for fused in (False, True):
        cfg = build_train_config(config, cfg_options={'optim_wrapper.optimizer.fused': fused})
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8))
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
        assert type(wrapper.optimizer).__name__ == cfg.optim_wrapper.optimizer.type
        assert wrapper.optimizer.defaults['fused'] is (fused if fused_kernel or not fused else None)
        for _ in range(2):  # the second step uses the momentum buffers
            wrapper.update_params(model(torch.ones(2, 3, 8, 8)).square().mean())
        steps[fused] = [p.detach().clone() for p in model.parameters()]
    for loop, fused in zip(steps[False], steps[True], strict=True):
        torch.testing.assert_close(fused, loop, rtol=1e-5, atol=1e-6)


def test_train_then_test_a_detector(tmp_path):
    root = str(make_coco(tmp_path / 'coco', num_train=2, num_val=2, height=64, width=64)) + '/'
    options = tiny_detection_options(root, max_iters=2)
    runner = run_train(build_train_config(FASTER_RCNN, work_dir=str(tmp_path / 'w'),
                                      cfg_options=options))
    assert runner.iter == 2
    metrics = run_test(build_test_config(
        FASTER_RCNN, str(tmp_path / 'w' / 'iter_2.pth'), work_dir=str(tmp_path / 'w'),
        cfg_options=options))
    assert {'coco/bbox_mAP', 'coco/bbox_mAP_50'} <= set(metrics)


def test_resume_continues_from_the_saved_iteration_and_optimizer(tmp_path, ade20k):
    options = tiny_segmentation_options(ade20k, max_iters=2)
    first = run_train(build_train_config(DEEPLABV3, work_dir=str(tmp_path / 'a'),
                                     cfg_options=options))
    assert first.iter == 2
    saved = tmp_path / 'a' / 'iter_1.pth'
    with mmengine_checkpoint_globals():
        checkpoint = torch.load(saved)
    assert checkpoint['meta']['iter'] == 1

    cfg = build_train_config(DEEPLABV3, work_dir=str(tmp_path / 'b'), resume=str(saved),
                             cfg_options=options)
    prepare_run(cfg, 'train')
    runner = build_runner(cfg)
    snapshot = _Snapshot()
    runner.register_hook(snapshot)
    with mmengine_checkpoint_globals():
        runner.train()
    assert snapshot.iter == 1  # training restarted after the saved iteration
    assert runner.iter == 2
    state, expected = snapshot.optimizer, checkpoint['optimizer']
    assert state['param_groups'][0]['lr'] == expected['param_groups'][0]['lr']
    assert len(state['state']) == len(expected['state']) > 0
    for key, value in expected['state'].items():  # e.g. AdamW's step, exp_avg, exp_avg_sq
        assert state['state'][key].keys() == value.keys()
        for name in value:
            torch.testing.assert_close(state['state'][key][name], value[name], rtol=0, atol=0)
    for name, tensor in snapshot.weights.items():
        torch.testing.assert_close(tensor, checkpoint['state_dict'][name], rtol=0, atol=0)
    assert (tmp_path / 'b' / 'iter_2.pth').exists()
    assert not (tmp_path / 'b' / 'iter_1.pth').exists()  # iteration 1 was not trained again


class _Snapshot(Hook):
    """Copies iteration, optimizer state and weights when training (re)starts."""

    def before_train(self, runner) -> None:
        self.iter = runner.iter
        self.optimizer = copy.deepcopy(runner.optim_wrapper.state_dict())
        self.weights = copy.deepcopy(runner.model.state_dict())


def _random_checkpoint(cfg, path) -> str:
    """The config's model with its fresh initialisation, saved as a test checkpoint."""
    from mmengine.registry import MODELS, init_default_scope

    import resnest_mm  # noqa: F401

    init_default_scope(cfg.default_scope)
    torch.save({'state_dict': MODELS.build(cfg.model).state_dict()}, path)
    return str(path)


def test_missing_image_folder_is_named(tmp_path):
    root = make_coco(tmp_path / 'coco', num_train=1, num_val=1, height=32, width=32)
    shutil.rmtree(root / 'val')
    checkpoint = tmp_path / 'model.pth'
    torch.save({'state_dict': {}}, checkpoint)  # readable: the data folder is checked next
    message = _tool_error(test_tool, [
        str(FASTER_RCNN), str(checkpoint), '--work-dir', str(tmp_path / 'w'),
        *as_cli(tiny_detection_options(f'{root}/'))])
    assert f"image folder (data_prefix.img) '{root}/val/' does not exist" in message
    assert '--cfg-options test_dataloader.dataset.data_root=' in message
    assert '\n' not in message


def test_detector_test_writes_the_pkl_and_the_pictures(tmp_path):
    root = make_coco(tmp_path / 'coco', num_train=1, num_val=2, height=64, width=48)
    options = tiny_detection_options(f'{root}/')
    checkpoint = _random_checkpoint(load_config(FASTER_RCNN, options), tmp_path / 'det.pth')
    work_dir, out = tmp_path / 'w', tmp_path / 'predictions.pkl'
    test_tool.main([str(FASTER_RCNN), checkpoint, '--work-dir', str(work_dir), '--out', str(out),
                    '--show-dir', 'pictures', *as_cli(options)])
    predictions = mmengine.load(out)
    assert sorted(p['img_path'] for p in predictions) == [
        f'{root}/val/{i:06d}.jpg' for i in range(2)]
    for prediction in predictions:
        instances = prediction['pred_instances']
        boxes, scores = instances['bboxes'], instances['scores']
        assert boxes.shape == (len(scores), 4) and prediction['ori_shape'] == (64, 48)
    pictures = sorted(work_dir.glob('*/pictures/*.jpg'))
    assert [p.name for p in pictures] == ['000000.jpg', '000001.jpg']
    for picture in pictures:  # ground truth and prediction side by side, at the image size
        assert mmcv.imread(str(picture)).shape == (64, 96, 3)


def test_segmentor_test_writes_label_pngs_and_pictures(tmp_path, ade20k):
    options = tiny_segmentation_options(ade20k)
    checkpoint = _random_checkpoint(load_config(DEEPLABV3, options), tmp_path / 'seg.pth')
    labels, pictures = tmp_path / 'labels', tmp_path / 'pictures'
    test_tool.main([str(DEEPLABV3), checkpoint, '--work-dir', str(tmp_path / 'w'),
                    '--out', str(labels), '--show-dir', str(pictures), *as_cli(options)])
    written = sorted(labels.glob('*.png'))
    assert [p.name for p in written] == ['000000.png', '000001.png']
    for path in written:
        label = mmcv.imread(str(path), flag='unchanged')
        assert label.shape == (64, 64) and label.dtype == np.uint8 and label.max() <= 4
    drawn = sorted((pictures / 'vis_data' / 'vis_image').glob('*.png'))
    assert len(drawn) == 2
    for path in drawn:
        assert mmcv.imread(str(path)).shape[0] == 64
