"""A missing Cityscapes / ADE20K root, image folder or annotation folder stops the tools with the
one-line error COCO gets: the loader, what is missing, its path, and how to point elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_tools import _tool_error, test_tool, train_tool
from tiny import REPO

from resnest_mm.apis import DatasetNotFoundError, check_dataset_paths, load_config

CITYSCAPES = str(REPO / 'configs' / 'fcn_resnest101_d8_cityscapes.py')
ADE20K = str(REPO / 'configs' / 'deeplabv3_resnest101_d8_ade20k.py')
# the folders mmseg's Cityscapes and ADE20K configs read, per split
LAYOUTS = {
    CITYSCAPES: {'train': ('leftImg8bit/train', 'gtFine/train'),
                 'val': ('leftImg8bit/val', 'gtFine/val')},
    ADE20K: {'train': ('images/training', 'annotations/training'),
             'val': ('images/validation', 'annotations/validation')},
}
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def make_layout(root: Path, config: str, skip: str | None = None) -> str:
    """The dataset's folders under ``root`` (empty: the check runs before any file is read),
    all but ``skip``; returns the root as a config's ``data_root``."""
    for folders in LAYOUTS[config].values():
        for folder in folders:
            if folder != skip:
                (root / folder).mkdir(parents=True)
    return f'{root}/'


def roots(data_root: str) -> list[str]:
    return ['--cfg-options', *(f'{loader}.dataset.data_root={data_root}' for loader in LOADERS)]


def expected(loader: str, what: str, path: str) -> str:
    return (f'{loader}.dataset: {what} {path!r} does not exist. Put the dataset there or set '
            f'its root, e.g. --cfg-options {loader}.dataset.data_root=/path/to/dataset/')


IMAGES = 'image folder (data_prefix.img_path)'
ANNOTATIONS = 'annotation folder (data_prefix.seg_map_path)'


@pytest.mark.parametrize(('config', 'folder', 'what'), [
    pytest.param(CITYSCAPES, 'leftImg8bit/train', IMAGES, id='cityscapes-train-images'),
    pytest.param(CITYSCAPES, 'gtFine/train', ANNOTATIONS, id='cityscapes-train-annotations'),
    pytest.param(CITYSCAPES, 'gtFine/val', ANNOTATIONS, id='cityscapes-val-annotations'),
    pytest.param(ADE20K, 'images/training', IMAGES, id='ade20k-train-images'),
    pytest.param(ADE20K, 'annotations/validation', ANNOTATIONS, id='ade20k-val-annotations'),
])
def test_train_names_the_missing_folder(tmp_path, config, folder, what):
    data_root = make_layout(tmp_path / 'data', config, skip=folder)
    work_dir = tmp_path / 'w'
    message = _tool_error(train_tool, [config, '--work-dir', str(work_dir), *roots(data_root)])
    loader = 'train_dataloader' if folder in LAYOUTS[config]['train'] else 'val_dataloader'
    assert message.startswith('train.py: error: ' + expected(loader, what, data_root + folder))
    assert '\n' not in message
    assert not work_dir.exists()  # stopped before the Runner made its work dir


def test_test_names_the_missing_cityscapes_image_folder(tmp_path):
    data_root = make_layout(tmp_path / 'data', CITYSCAPES, skip='leftImg8bit/val')
    checkpoint = tmp_path / 'model.pth'
    torch.save({'state_dict': {}}, checkpoint)  # readable: the data folders are checked next
    message = _tool_error(test_tool, [CITYSCAPES, str(checkpoint), *roots(data_root)])
    assert message.startswith('test.py: error: ' + expected(
        'test_dataloader', IMAGES, data_root + 'leftImg8bit/val'))


def test_testing_needs_only_the_test_split(tmp_path):
    data_root = make_layout(tmp_path / 'data', CITYSCAPES, skip='leftImg8bit/train')
    cfg = load_config(CITYSCAPES, {f'{loader}.dataset.data_root': data_root
                                          for loader in LOADERS})
    check_dataset_paths(cfg, 'test')
    with pytest.raises(DatasetNotFoundError, match='leftImg8bit/train'):
        check_dataset_paths(cfg, 'train')


def test_missing_cityscapes_root_from_the_command_line(tmp_path):
    """As a user runs it: one line on stderr, exit status 1, no traceback."""
    missing = f'{tmp_path}/cityscapes/'
    run = subprocess.run(
        [sys.executable, 'tools/train.py', CITYSCAPES, '--work-dir', str(tmp_path / 'w'),
         '--cfg-options', f'train_dataloader.dataset.data_root={missing}'],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, 'PYTHONPATH': str(REPO)})
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [run.stderr.strip()]
    assert run.stderr.startswith(
        'train.py: error: ' + expected('train_dataloader', 'data_root', missing))
    assert not (tmp_path / 'w').exists()
