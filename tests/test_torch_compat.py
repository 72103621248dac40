"""The supported torch range (2.1 to 2.13): resnest_mm.compat, weights-only loading on every
torch, resume with a pretrained backbone, fused optimizers, and tools/setup_env.py's checks.

These run on whichever torch the suite runs on; `make test-compat` runs them on torch 2.1.2.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import load_tool
from mmengine.logging import HistoryBuffer
from tiny import (
    BACKBONE,
    DEEPLABV3,
    FASTER_RCNN,
    REPO,
    as_cli,
    tiny_detection_options,
    tiny_segmentation_options,
)

from resnest_mm import ResNeSt, compat
from resnest_mm.apis import build_train_config
from resnest_mm.datasets import make_ade20k, make_coco
from resnest_mm.pretrained import (
    CorruptCheckpointError,
    UnsafeCheckpointError,
    load_checkpoint_file,
    mmengine_safe_globals,
)
from resnest_mm.pretrained import reading as reading_module

NEW_TORCH = compat.torch_version() >= (2, 5)


def _mmengine_like_checkpoint(path: Path) -> dict:
    """A file holding what mmengine's training checkpoints hold beside the tensors."""
    buffer = HistoryBuffer()
    buffer.update(0.5)
    payload = {'state_dict': {'w': torch.arange(4.0)}, 'meta': {'iter': 3, 'seed': np.int64(7)},
               'message_hub': {'log_scalars': {'loss': buffer}}, 'array': np.ones(3)}
    torch.save(payload, path)
    return payload


def test_torch_version_and_require():
    assert compat.torch_version('2.1.2+cu121') == (2, 1)
    assert compat.torch_version('2.13.0') == (2, 13)
    compat.require('a feature', '2.1')
    expected = rf'^a feature needs torch >= 99\.0; this is torch {re.escape(torch.__version__)}\.'
    with pytest.raises(compat.TorchTooOldError, match=expected):
        compat.require('a feature', '99.0')


def test_graph_capture_flags_are_false_in_eager_and_true_under_compile():
    assert not compat.is_compiling() and not compat.is_exporting()
    assert not compat.is_graph_capture()
    seen = []

    def probe(x):
        seen.append(compat.is_compiling())
        return x + 1

    torch.compile(probe, backend='eager')(torch.ones(1))
    assert seen == [True]


def test_autocast_enabled_follows_the_cpu_autocast_block():
    assert not compat.autocast_enabled('cpu')
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert compat.autocast_enabled('cpu')
        assert not compat.autocast_enabled('cuda')


@pytest.fixture
def empty_allow_list():
    """torch's allow-list emptied for the test (importing resnest_mm fills it), then restored."""
    saved = list(torch.serialization.get_safe_globals())
    torch.serialization.clear_safe_globals()
    yield
    torch.serialization.clear_safe_globals()
    torch.serialization.add_safe_globals(saved)


@pytest.mark.skipif(not NEW_TORCH, reason='torch < 2.5 has no allow-list to nest')
def test_allow_list_survives_nested_blocks(empty_allow_list):
    """torch's own safe_globals empties the list on leaving an inner block with the same
    entries (the resume crash); ours restores what the outer block had, at any depth."""
    entries = mmengine_safe_globals()
    with torch.serialization.safe_globals(entries):
        with torch.serialization.safe_globals(entries):
            pass
        assert HistoryBuffer not in torch.serialization.get_safe_globals()  # torch's: gone
    with compat.allowed_globals(entries):
        with compat.allowed_globals(entries), compat.allowed_globals(entries[:1]):
            pass
        assert HistoryBuffer in torch.serialization.get_safe_globals()
    assert torch.serialization.get_safe_globals() == []


def test_mmengine_checkpoint_reads_weights_only_on_this_torch(tmp_path):
    path = tmp_path / 'iter_3.pth'
    payload = _mmengine_like_checkpoint(path)
    loaded = load_checkpoint_file(path)
    assert loaded['meta'] == payload['meta']
    assert loaded['message_hub']['log_scalars']['loss'].current() == 0.5
    torch.testing.assert_close(loaded['state_dict']['w'], payload['state_dict']['w'])


def test_without_the_allow_list_api_the_restricted_unpickler_reads_it(tmp_path, monkeypatch):
    """torch < 2.5's path (no allow-list API), taken on this torch too: the same file reads,
    a file with a foreign object is refused as unsafe, not reported as damaged."""
    monkeypatch.setattr(reading_module, 'has_safe_globals_api', lambda: False)
    monkeypatch.setattr(reading_module, 'allowed_globals', _no_allow_list)
    path = tmp_path / 'iter_3.pth'
    payload = _mmengine_like_checkpoint(path)
    loaded = reading_module._load_restricted(path, 'cpu')
    assert loaded['meta'] == payload['meta']
    assert loaded['message_hub']['log_scalars']['loss'].current() == 0.5

    evil = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'x': _Evil()}, evil)
    with pytest.raises(UnsafeCheckpointError, match=r'evil\.pth.*builtins\.print'):
        load_checkpoint_file(evil)
    broken = tmp_path / 'broken.pth'
    broken.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CorruptCheckpointError, match=r'broken\.pth'):
        load_checkpoint_file(broken)


class _Evil:
    def __reduce__(self):
        return (print, ('pwned',))


class _no_allow_list:
    def __init__(self, entries):
        pass

    def __enter__(self):
        if NEW_TORCH:  # let this torch's weights-only unpickler refuse as torch 2.1's does
            self.saved = list(torch.serialization.get_safe_globals())
            torch.serialization.clear_safe_globals()

    def __exit__(self, *exc):
        if NEW_TORCH:
            torch.serialization.add_safe_globals(self.saved)


@pytest.mark.skipif(not NEW_TORCH, reason='torch < 2.6 loads mmengine checkpoints in full')
def test_importing_the_plugin_lets_mmengine_load_its_checkpoints_weights_only(tmp_path):
    """mmengine 0.10.7's plain torch.load of its own checkpoint fails on torch >= 2.6 unless
    resnest_mm is imported (as custom_imports does); other pickled objects stay refused."""
    path = tmp_path / 'iter_3.pth'
    _mmengine_like_checkpoint(path)
    plain = subprocess.run([sys.executable, '-c', 'import sys, torch; torch.load(sys.argv[1])',
                            str(path)], capture_output=True, text=True)
    assert plain.returncode != 0 and 'Weights only load failed' in plain.stderr
    assert torch.load(path)['meta']['iter'] == 3  # this process imported resnest_mm
    torch.save({'x': _Evil()}, tmp_path / 'evil.pth')
    with pytest.raises(pickle.UnpicklingError, match='Weights only load failed'):
        torch.load(tmp_path / 'evil.pth')


def _pretrained_config(base: Path, folder: Path, extra: str = '') -> Path:
    """``base`` (a tiny demo config) with its backbone loading a pretrained file written here
    through init_cfg, as every real config's does; ``extra`` is added to the config file."""
    weights = folder / 'resnest14_tiny.pth'
    torch.manual_seed(0)
    torch.save({'state_dict': ResNeSt(**BACKBONE).state_dict()}, weights)
    config = folder / f'{base.stem}_pretrained.py'
    config.write_text(f"_base_ = {str(base)!r}\n{extra}"
                      "model = dict(backbone=dict(init_cfg=dict(\n"
                      f"    type='Pretrained', checkpoint={str(weights)!r})))\n")
    return config


@pytest.fixture(scope='module')
def pretrained_config(tmp_path_factory) -> Path:
    """The tiny DeepLabV3 with a pretrained backbone."""
    return _pretrained_config(DEEPLABV3, tmp_path_factory.mktemp('pretrained'))


def _train(config: Path, work_dir: Path, options: dict, *extra: str):
    opts = {k: v for k, v in options.items() if k != 'model.backbone.init_cfg'}
    return subprocess.run(
        [sys.executable, str(REPO / 'tools' / 'train.py'), str(config), '--work-dir',
         str(work_dir), *extra, *as_cli(opts)],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, 'PYTHONPATH': str(REPO)})


def test_mmdetections_own_train_tool_resumes_with_custom_imports(tmp_path):
    """MMDetection's own tools/train.py (from the installed mmdet) with a config that imports
    resnest_mm through custom_imports and loads a pretrained backbone: --resume continues."""
    import mmdet
    tool = Path(mmdet.__file__).parent / '.mim' / 'tools' / 'train.py'
    assert tool.is_file(), f'mmdet ships no tools/train.py at {tool}'
    config = _pretrained_config(
        FASTER_RCNN, tmp_path,
        "custom_imports = dict(imports=['resnest_mm'], allow_failed_imports=False)\n")
    root = str(make_coco(tmp_path / 'coco', num_train=2, num_val=1, height=64, width=64)) + '/'

    def run(iters: int, *extra: str):
        options = {k: v for k, v in tiny_detection_options(root, iters).items()
                   if k != 'model.backbone.init_cfg'}
        options.update({'default_hooks.checkpoint.interval': 1, 'log_level': 'INFO'})
        if not compat.cpu_fused_optimizers():  # mm's own tools build what the config says
            options['optim_wrapper.optimizer.fused'] = False
        return subprocess.run(
            [sys.executable, str(tool), str(config), '--work-dir', str(tmp_path / 'w'), *extra,
             *as_cli(options)], capture_output=True, text=True, cwd=tmp_path)

    first = run(1)
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = run(2, '--resume')
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'resumed epoch: 0, iter: 1' in resumed.stdout + resumed.stderr
    assert (tmp_path / 'w' / 'iter_2.pth').exists()


def test_resume_with_a_pretrained_backbone(tmp_path, pretrained_config):
    """The user's path: train a config whose backbone loads pretrained weights, stop after a
    checkpoint, run again with --resume. It crashed with 'Weights only load failed ...
    HistoryBuffer' when the backbone's reader left torch's allow-list empty."""
    root = str(make_ade20k(tmp_path / 'ade', num_train=4, num_val=2, height=64, width=64)) + '/'
    first = _train(pretrained_config, tmp_path / 'w', tiny_segmentation_options(root, 1))
    assert first.returncode == 0, first.stderr[-3000:]
    saved = (tmp_path / 'w' / 'iter_1.pth').stat().st_mtime_ns
    resumed = _train(pretrained_config, tmp_path / 'w', tiny_segmentation_options(root, 2),
                     '--resume')
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (tmp_path / 'w' / 'iter_2.pth').exists()
    # continued after iteration 1 rather than starting again (which rewrites iter_1.pth)
    assert (tmp_path / 'w' / 'iter_1.pth').stat().st_mtime_ns == saved


def test_fused_optimizer_takes_the_loop_where_torch_lacks_it(monkeypatch):
    """On a torch without fused CPU optimizers (< 2.4), fused=True becomes the plain loop with
    one line naming the option and the torch it needs; with them, it stays fused."""
    options = {'optim_wrapper.optimizer.fused': True}
    if compat.cpu_fused_optimizers():
        cfg = build_train_config(DEEPLABV3, cfg_options=options)
        assert cfg.optim_wrapper.optimizer.fused is True
    monkeypatch.setattr('resnest_mm.apis.runner.cpu_fused_optimizers', lambda: False)
    lines = []
    monkeypatch.setattr('resnest_mm.apis.runner.print_log', lambda msg, **kw: lines.append(msg))
    cfg = build_train_config(DEEPLABV3, cfg_options=options)
    assert cfg.optim_wrapper.optimizer.fused is None
    assert len(lines) == 1 and '\n' not in lines[0]
    assert lines[0].startswith('optim_wrapper.optimizer.fused=True needs torch >= 2.4 on the CPU')


def test_cpu_fused_optimizers_matches_the_torch_version():
    assert compat.cpu_fused_optimizers() == (compat.torch_version() >= (2, 4))


def _setup_env():
    return load_tool('setup_env')


@pytest.mark.parametrize('version, message', [
    ('2.14.1', r'mmcv 2\.1\.0 cannot be compiled against torch >= 2\.14.*torch<=2\.13'),
    ('2.0.1', r'torch 2\.0\.1 is installed; resnest_mm needs torch 2\.1 to 2\.13'),
])
def test_setup_env_stops_on_a_torch_outside_the_range(version, message, capsys):
    with pytest.raises(SystemExit) as stop:
        _setup_env().check_torch_range(version)
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and re.search(message, err)


def test_setup_env_accepts_both_ends_of_the_range():
    setup_env = _setup_env()
    for version in ('2.1.2+cu121', '2.13.0+cpu', torch.__version__):
        setup_env.check_torch_range(version)


def test_setup_env_rebuilds_mmcv_whose_ops_do_not_load(monkeypatch):
    """mmcv's compiled ops load with this torch; where ``import mmcv._ext`` fails (an mmcv
    compiled for another torch), setup_env sees it and rebuilds."""
    setup_env = _setup_env()
    assert setup_env.mmcv_has_ops()
    monkeypatch.setattr(sys, 'executable', '/bin/false')  # the import check's interpreter fails
    assert not setup_env.mmcv_has_ops()


def test_setup_py_declares_the_supported_range():
    text = (REPO / 'setup.py').read_text()
    assert "'torch>=2.1,<2.14'" in text


def test_restricted_unpickler_refuses_unknown_globals():
    with pytest.raises(pickle.UnpicklingError, match=r'os\.system'):
        reading_module._RestrictedUnpickler(io.BytesIO(b'cos\nsystem\n.')).load()
