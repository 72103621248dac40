"""Pretrained weights: layouts, strict and partial loading, short names, safety, conversion.

Every checkpoint is written here, in tmp_path; nothing is downloaded (the download function is
replaced by one that fails, or that copies a local file).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import load_tool, randomize_
from mmengine.logging import MessageHub, MMLogger
from mmengine.runner.checkpoint import get_external_models, save_checkpoint

from resnest_mm import ResNeSt
from resnest_mm import pretrained as ckpt

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(depth=14, stem_channels=32, base_channels=16)


def small_model(seed: int = 0, **kwargs) -> ResNeSt:
    return randomize_(ResNeSt(**{**SMALL, **kwargs}), seed).eval()


def official_model(stem_width: int = 16):
    """The authors' architecture (resnest==0.0.5) at depth 14: official-layout keys and ``fc``."""
    from resnest.torch.resnet import Bottleneck, ResNet
    model = ResNet(Bottleneck, [1, 1, 1, 1], radix=2, groups=1, bottleneck_width=64,
                   deep_stem=True, stem_width=stem_width, avg_down=True, avd=True,
                   avd_first=False, num_classes=10)
    return randomize_(model, 3).eval()


# Detectron2 names, from the authors' resnest/d2/resnest.py (BasicStem conv1_1..3 with .norm,
# stages res2..res5, conv1/conv3 with .norm, shortcut with .norm; split attention unchanged).
D2_STEM = {'stem.0.': 'stem.conv1_1.', 'stem.1.': 'stem.conv1_1.norm.',
           'stem.3.': 'stem.conv1_2.', 'stem.4.': 'stem.conv1_2.norm.',
           'stem.6.': 'stem.conv1_3.', 'stem.7.': 'stem.conv1_3.norm.'}
D2_BLOCK = {'bn1.': 'conv1.norm.', 'bn3.': 'conv3.norm.',
            'downsample.1.': 'shortcut.', 'downsample.2.': 'shortcut.norm.'}


def d2_key(key: str) -> str:
    for ours, theirs in D2_STEM.items():
        if key.startswith(ours):
            return theirs + key[len(ours):]
    stage, block, rest = key.split('.', 2)
    for ours, theirs in D2_BLOCK.items():
        if rest.startswith(ours):
            rest = theirs + rest[len(ours):]
    return f'res{int(stage[len("layer"):]) + 1}.{block}.{rest}'


def d2_state_dict(model: ResNeSt) -> dict[str, torch.Tensor]:
    # Detectron2's FrozenBN has no num_batches_tracked.
    return {d2_key(k): v for k, v in model.state_dict().items()
            if not k.endswith('num_batches_tracked')}


def mmengine_checkpoint(backbone: dict[str, torch.Tensor], path: Path) -> Path:
    """A detector checkpoint as mmengine's Runner saves it: meta, message hub, optimizer."""
    hub = MessageHub.get_instance('test_checkpoint')
    hub.update_scalar('train/loss', 0.5)
    hub.update_scalar('train/lr', np.float64(0.02))
    hub.update_info('iter', 3)
    weights = {f'backbone.{k}': v for k, v in backbone.items()}
    weights['neck.lateral_convs.0.conv.weight'] = torch.ones(4, 4, 1, 1)
    weights['rpn_head.rpn_cls.weight'] = torch.ones(3, 4, 1, 1)
    params = [torch.nn.Parameter(torch.ones(2))]
    checkpoint = {
        'meta': {'epoch': 1, 'iter': 3, 'seed': np.int64(7), 'mmengine': '0.10.7',
                 'dataset_meta': {'classes': ('a', 'b')}, 'cfg': 'model = dict()'},
        'state_dict': weights,
        'message_hub': hub.state_dict(),
        'optimizer': torch.optim.SGD(params, lr=0.1, momentum=0.9).state_dict(),
    }
    save_checkpoint(checkpoint, str(path))
    return path


@contextlib.contextmanager
def captured_log():
    """Messages sent to the current MMLogger while the block runs."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def assert_same_weights(model: torch.nn.Module, reference: dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    for key, value in reference.items():
        assert torch.equal(state[key], value), key


# ----------------------------------------------------------------------------- layouts

def test_official_layout_from_the_authors_package_loads(tmp_path):
    official = official_model()
    path = tmp_path / 'official.pth'
    torch.save(official.state_dict(), path)
    model = ResNeSt(depth=14, stem_channels=32, base_channels=64)
    report = ckpt.load_pretrained(model, path)
    assert report.weights.layout == 'official'
    assert sorted(report.weights.dropped) == ['fc.bias', 'fc.weight']
    assert report.complete
    state = model.state_dict()
    assert torch.equal(state['stem.7.running_var'], official.bn1.running_var)
    assert torch.equal(state['stem.6.weight'], official.conv1[6].weight)
    assert torch.equal(state['layer2.0.conv2.fc2.bias'], official.layer2[0].conv2.fc2.bias)
    assert torch.equal(state['layer3.0.downsample.2.weight'],
                       official.layer3[0].downsample[2].weight)


@pytest.mark.parametrize('layout', ['openmmlab', 'state_dict', 'model', 'module', 'detectron2',
                                    'detectron2_detector', 'mmdet_detector'])
def test_every_layout_and_wrapper_loads_exactly(tmp_path, layout):
    source = small_model(seed=1)
    weights = source.state_dict()
    obj = {
        'openmmlab': weights,
        'state_dict': {'state_dict': weights, 'meta': {'note': 'x'}},
        'model': {'model': weights},
        'module': {f'module.{k}': v for k, v in weights.items()},
        'detectron2': d2_state_dict(source) | {'linear.weight': torch.ones(3, 256)},
        'detectron2_detector': {'model': {
            **{f'backbone.bottom_up.{k}': v for k, v in d2_state_dict(source).items()},
            'backbone.fpn_lateral2.weight': torch.ones(4, 4, 1, 1),
            'roi_heads.box_predictor.cls_score.weight': torch.ones(3, 4)}},
    }.get(layout)
    path = tmp_path / f'{layout}.pth'
    if obj is None:
        mmengine_checkpoint(weights, path)
    else:
        torch.save(obj, path)

    model = small_model(seed=2)
    with captured_log() as records:
        report = ckpt.load_pretrained(model, path)
    expected_layout = 'detectron2' if layout.startswith('detectron2') else 'openmmlab'
    assert report.weights.layout == expected_layout
    assert report.complete
    assert_same_weights(model, {k: v for k, v in weights.items()
                                if not (layout.startswith('detectron2')
                                        and k.endswith('num_batches_tracked'))})
    message = '\n'.join(r.getMessage() for r in records)
    num_tensors = len(model.state_dict())
    expected_count = num_tensors - (sum(k.endswith('num_batches_tracked') for k in weights)
                                    if layout.startswith('detectron2') else 0)
    assert f'loaded {expected_count}/{num_tensors} backbone tensors' in message
    assert ckpt.LAYOUTS[expected_layout] in message
    if layout.endswith('detector'):
        assert len(report.weights.ignored) == 2 and 'ignored 2 non-backbone tensors' in message


def test_detectron2_keys_follow_the_authors_d2_naming():
    source = small_model()
    converted = ckpt.to_openmmlab(d2_state_dict(source)).state_dict
    assert set(converted) == {k for k in source.state_dict() if not k.endswith('tracked')}
    # Spot checks against names written out by hand from resnest/d2/resnest.py.
    keys = set(d2_state_dict(source))
    assert {'stem.conv1_1.weight', 'stem.conv1_3.norm.running_mean', 'res2.0.conv1.norm.weight',
            'res3.0.shortcut.weight', 'res3.0.shortcut.norm.bias', 'res5.0.conv2.fc1.weight',
            'res4.0.conv2.bn0.weight', 'res2.0.conv3.norm.running_var'} <= keys


def test_unknown_layout_names_the_file_and_keys(tmp_path):
    path = tmp_path / 'vit.pth'
    torch.save({'patch_embed.proj.weight': torch.ones(2), 'blocks.0.qkv.weight': torch.ones(2)},
               path)
    with pytest.raises(ckpt.UnknownLayoutError, match=r'vit\.pth.*patch_embed\.proj\.weight'):
        ckpt.load_pretrained(small_model(), path)


def test_non_tensor_entries_outside_the_backbone_are_ignored(tmp_path):
    weights = small_model(seed=1).state_dict()
    path = tmp_path / 'extra.pth'
    torch.save({'state_dict': {**{f'backbone.{k}': v for k, v in weights.items()},
                               'head.version': 2}}, path)
    model = small_model(seed=2)
    assert ckpt.load_pretrained(model, path).weights.ignored == ['head.version']
    assert_same_weights(model, weights)
    torch.save({**weights, 'layer1.0.conv1.weight': 'not a tensor'}, path)
    with pytest.raises(TypeError, match=r"extra\.pth.*'layer1\.0\.conv1\.weight' holds a str"):
        ckpt.load_pretrained(model, path)


def test_explicit_prefix_selects_the_backbone(tmp_path):
    weights = small_model(seed=1).state_dict()
    path = tmp_path / 'prefixed.pth'
    torch.save({f'teacher.backbone.{k}': v for k, v in weights.items()}, path)
    model = small_model(seed=2)
    ckpt.load_pretrained(model, path, prefix='teacher.backbone.')
    assert_same_weights(model, weights)
    with pytest.raises(ckpt.UnknownLayoutError, match=r"prefix='student\.'"):
        ckpt.load_pretrained(model, path, prefix='student.')


# ----------------------------------------------------------------------------- loud loading

def test_stem_width_mismatch_names_keys_shapes_and_cause(tmp_path):
    # S-50 weights (official stem_width 32 -> 64 channels) into a model with stem_channels 128,
    # at the scale of the small preset: stem 32 into a model built with stem_channels 64.
    path = tmp_path / 's.pth'
    torch.save(small_model().state_dict(), path)
    model = small_model(stem_channels=64)
    with pytest.raises(ckpt.WeightMismatchError) as info:
        ckpt.load_pretrained(model, path)
    message = str(info.value)
    assert 's.pth' in message
    assert 'stem.0.weight: checkpoint [16, 3, 3, 3] vs model [32, 3, 3, 3]' in message
    assert 'official stem_width 16' in message and 'stem_channels=32' in message


def test_depth_mismatch_is_an_error_with_the_depth(tmp_path):
    path = tmp_path / 'd26.pth'
    torch.save(small_model(depth=26).state_dict(), path)
    with pytest.raises(ckpt.WeightMismatchError) as info:
        ckpt.load_pretrained(small_model(depth=14), path)
    message = str(info.value)
    assert 'unexpected checkpoint tensors' in message and 'layer1.1.conv1.weight' in message
    assert '(2, 2, 2, 2) blocks per stage (depth=26)' in message


def test_dcn_offsets_may_be_missing_and_stay_zero(tmp_path):
    """ImageNet weights have no DCN offsets; mmcv builds them at zero, and they stay so."""
    weights = small_model(seed=1).state_dict()
    path = tmp_path / 'imagenet.pth'
    torch.save(weights, path)
    dcn = dict(type='DCNv2', deform_groups=1, fallback_on_stride=False)
    model = ResNeSt(**SMALL, dcn=dcn, stage_with_dcn=(False, True, True, True),
                    init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    offsets = {k: v for k, v in model.state_dict().items() if '.conv_offset.' in k}
    assert len(offsets) == 6
    with captured_log() as records:
        model.init_weights()
    assert_same_weights(model, {k: v for k, v in weights.items() if 'conv2.conv.' not in k})
    assert torch.equal(model.layer2[0].conv2.conv.weight, weights['layer2.0.conv2.conv.weight'])
    assert all(not v.any() for k, v in model.state_dict().items() if k in offsets)
    assert '6 DCN offset tensors keep their zero initialisation' in records[-1].getMessage()


def test_missing_backbone_tensor_is_an_error(tmp_path):
    weights = small_model().state_dict()
    del weights['layer3.0.conv2.fc1.weight']
    path = tmp_path / 'missing.pth'
    torch.save(weights, path)
    with pytest.raises(ckpt.WeightMismatchError, match=r"missing.*layer3\.0\.conv2\.fc1\.weight"):
        ckpt.load_pretrained(small_model(), path)


def test_partial_load_is_explicit_and_logged(tmp_path):
    source = small_model(seed=1, depth=26)
    path = tmp_path / 'd26.pth'
    torch.save(source.state_dict(), path)
    model = small_model(seed=2, stem_channels=64, depth=14)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with captured_log() as records:
        report = ckpt.load_pretrained(model, path, strict=False)
    state = model.state_dict()
    assert torch.equal(state['layer2.0.conv1.weight'], source.state_dict()['layer2.0.conv1.weight'])
    assert torch.equal(state['stem.0.weight'], before['stem.0.weight'])  # shape differs: skipped
    assert ('stem.0.weight', (16, 3, 3, 3), (32, 3, 3, 3)) in report.mismatched
    assert 'layer1.1.conv1.weight' in report.unexpected
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert warnings and 'partial load (strict=False)' in warnings[0]
    assert f'{len(report.unexpected)} checkpoint tensors unused' in warnings[0]
    assert f'{len(report.mismatched)} shape mismatches skipped' in warnings[0]
    assert 'stem.0.weight' in warnings[0]


# ----------------------------------------------------------------------------- init_cfg route

def test_init_cfg_pretrained_loads_strictly_through_init_weights(tmp_path):
    weights = small_model(seed=1).state_dict()
    path = tmp_path / 'b.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in weights.items()}}, path)
    model = ResNeSt(**SMALL, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    assert_same_weights(model, weights)

    with pytest.warns(DeprecationWarning):
        deprecated = ResNeSt(**SMALL, pretrained=str(path))
    deprecated.init_weights()
    assert_same_weights(deprecated, weights)

    wrong = ResNeSt(**{**SMALL, 'stem_channels': 64},
                    init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(ckpt.WeightMismatchError, match='stem_channels'):
        wrong.init_weights()


def test_pretrained_backbone_inside_a_model_loads_through_our_loader(tmp_path):
    """As in a detector: the parent's init_weights reaches the backbone's, which loads strictly."""
    from mmengine.model import BaseModule

    weights = small_model(seed=1).state_dict()
    path = tmp_path / 'det.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in weights.items()},
                'meta': {'epoch': 12}}, path)

    class Detector(BaseModule):
        def __init__(self, backbone_cfg):
            super().__init__()
            self.backbone = ResNeSt(**backbone_cfg)
            self.head = torch.nn.Conv2d(4, 4, 1)

    model = Detector({**SMALL, 'init_cfg': dict(type='Pretrained', checkpoint=str(path))})
    model.init_weights()
    assert_same_weights(model.backbone, weights)
    wrong = Detector({**SMALL, 'depth': 26,
                      'init_cfg': dict(type='Pretrained', checkpoint=str(path))})
    with pytest.raises(ckpt.WeightMismatchError, match='depth'):
        wrong.init_weights()


def test_init_cfg_partial_load_keeps_default_init_elsewhere(tmp_path):
    path = tmp_path / 'b.pth'
    torch.save(small_model(seed=1).state_dict(), path)
    model = ResNeSt(**{**SMALL, 'stem_channels': 64},
                    init_cfg=dict(type='Pretrained', checkpoint=str(path), strict=False))
    model.init_weights()
    stem_bn = model.stem[1]
    assert torch.equal(stem_bn.weight, torch.ones_like(stem_bn.weight))  # default Constant init
    assert torch.equal(model.layer2[0].conv1.weight,
                       torch.load(path, weights_only=True)['layer2.0.conv1.weight'])


def test_init_cfg_without_pretrained_keeps_mmengine_init():
    model = ResNeSt(**SMALL)
    model.init_weights()
    assert torch.equal(model.layer1[0].norm3.weight, torch.zeros_like(model.layer1[0].norm3.weight))
    assert torch.equal(model.stem[1].weight, torch.ones_like(model.stem[1].weight))


def test_init_cfg_unknown_option_is_rejected(tmp_path):
    model = ResNeSt(**SMALL, init_cfg=dict(type='Pretrained', checkpoint='x.pth', strct=False))
    with pytest.raises(ValueError, match=r"unknown keys \['strct'\].*strict"):
        model.init_weights()


# ----------------------------------------------------------------------------- short names

def test_short_names_match_the_published_addresses():
    from resnest.torch.resnest import _model_sha256
    for name in ckpt.OFFICIAL_FILES:
        url = ckpt.checkpoint_url(name)
        assert url.endswith(f'/{name}-{_model_sha256[name][:8]}.pth')
        assert url.startswith('https://github.com/zhanghang1989/ResNeSt/releases/download/')
    for name in ('resnest50', 'resnest101', 'resnest200'):
        assert ckpt.checkpoint_url(f'open-mmlab://{name}') == get_external_models()[name]


def test_short_name_resolves_into_the_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    url = ckpt.checkpoint_url('resnest101')
    cached = ckpt.hub_cache_path(url)
    assert cached == tmp_path / 'torch' / 'hub' / 'checkpoints' / 'resnest101-22405ba7.pth'
    assert cached.parent == Path(torch.hub.get_dir()) / 'checkpoints'


def test_cached_file_is_used_without_download(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    weights = small_model(seed=1).state_dict()
    staging = tmp_path / 'w.pth'
    torch.save(weights, staging)
    # A real hash prefix for this file, so the SHA-256 check passes.
    file = f'resnest50-{ckpt.sha256_of(staging)[:8]}'
    monkeypatch.setitem(ckpt.OFFICIAL_FILES, 'resnest50', file)
    cached = ckpt.hub_cache_path(ckpt.checkpoint_url('resnest50'))
    cached.parent.mkdir(parents=True)
    staging.rename(cached)

    def no_download(url, dst):
        raise AssertionError(f'downloaded {url}')

    monkeypatch.setattr(ckpt.files, 'download', no_download)
    model = small_model(seed=2)
    report = ckpt.load_pretrained(model, 'resnest50')
    assert report.path == cached
    assert_same_weights(model, weights)


def test_missing_file_is_downloaded_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    weights = small_model(seed=1).state_dict()
    served = tmp_path / 'served.pth'
    torch.save(weights, served)
    monkeypatch.setitem(ckpt.OPENMMLAB_URLS, 'resnest50',
                        f'https://example.invalid/resnest50_d2-{ckpt.sha256_of(served)[:8]}.pth')
    calls = []

    def fake_download(url, dst):
        calls.append((url, dst))
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(served.read_bytes())

    monkeypatch.setattr(ckpt.files, 'download', fake_download)
    model = small_model(seed=2)
    ckpt.load_pretrained(model, 'open-mmlab://resnest50')
    ckpt.load_pretrained(model, 'open-mmlab://resnest50')
    assert len(calls) == 1
    assert calls[0][1].parent == Path(torch.hub.get_dir()) / 'checkpoints'
    assert_same_weights(model, weights)


@pytest.mark.parametrize('name', ['resnest269', 'open-mmlab://resnest200'])
def test_offline_without_cache_says_which_file_to_put_where(tmp_path, monkeypatch, name):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))

    def offline(url, dst):
        raise urllib.error.URLError('no network')

    monkeypatch.setattr(ckpt.files, 'download', offline)
    cached = ckpt.hub_cache_path(ckpt.checkpoint_url(name))
    with pytest.raises(ckpt.CheckpointNotFoundError) as info:
        ckpt.resolve_checkpoint(name)
    message = str(info.value)
    assert cached.name in message and str(cached) in message and 'no network' in message
    assert not cached.exists()


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(FileNotFoundError, match=r"'resnest77'.*resnest50.*open-mmlab://resnest50"):
        ckpt.resolve_checkpoint('resnest77')


def test_hash_in_the_file_name_is_checked(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    cached = ckpt.hub_cache_path(ckpt.checkpoint_url('resnest50'))
    cached.parent.mkdir(parents=True)
    torch.save(small_model().state_dict(), cached)  # right name, other content
    with pytest.raises(ckpt.ChecksumMismatchError, match=r'resnest50-528c19ca\.pth.*528c19ca'):
        ckpt.resolve_checkpoint('resnest50')

    local = tmp_path / 'mine-deadbeef.pth'
    torch.save(small_model().state_dict(), local)
    with pytest.raises(ckpt.ChecksumMismatchError, match='mine-deadbeef'):
        ckpt.load_pretrained(small_model(), local)
    good = local.with_name(f'mine-{ckpt.sha256_of(local)[:8]}.pth')
    local.rename(good)
    assert ckpt.load_pretrained(small_model(), good).complete


# ----------------------------------------------------------------------------- safety

class Payload:
    """Any class instance: weights-only loading must refuse it."""

    def __init__(self):
        self.note = 'not a tensor'


class CallsGetattr:
    def __reduce__(self):
        return getattr, (np.ndarray, 'tofile')


@pytest.mark.parametrize('payload, refused', [
    (Payload(), 'Payload'), (CallsGetattr(), 'tofile')])
def test_pickled_objects_are_refused(tmp_path, payload, refused):
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': small_model().state_dict(), 'extra': payload}, path)
    with pytest.raises(ckpt.UnsafeCheckpointError, match=rf'evil\.pth.*{refused}.*weights_only'):
        ckpt.load_pretrained(small_model(), path)


@pytest.mark.parametrize('damage', ['truncated', 'garbage', 'empty'])
def test_damaged_file_error_names_the_file(tmp_path, damage):
    path = tmp_path / f'{damage}.pth'
    torch.save(small_model().state_dict(), path)
    data = path.read_bytes()
    path.write_bytes({'truncated': data[:len(data) // 2], 'garbage': b'not a checkpoint' * 64,
                      'empty': b''}[damage])
    with pytest.raises(ckpt.CorruptCheckpointError, match=rf'{damage}\.pth.*truncated, damaged'):
        ckpt.load_pretrained(small_model(), path)


def test_mmengine_training_checkpoint_loads_safely(tmp_path):
    weights = small_model(seed=4).state_dict()
    path = mmengine_checkpoint(weights, tmp_path / 'epoch_1.pth')
    loaded = ckpt.load_checkpoint_file(path)
    assert loaded['meta']['seed'] == 7
    assert loaded['message_hub']['log_scalars']['train/loss'].current() == 0.5
    model = small_model()
    ckpt.load_pretrained(model, path)
    assert_same_weights(model, weights)


def test_missing_file_error():
    with pytest.raises(FileNotFoundError, match=r'nowhere\.pth'):
        ckpt.load_pretrained(small_model(), '/nonexistent/nowhere.pth')


# ----------------------------------------------------------------------------- conversion

def test_convert_official_to_openmmlab_and_back(tmp_path):
    official = official_model()
    src = tmp_path / 'official.pth'
    torch.save(official.state_dict(), src)
    summary = ckpt.convert_checkpoint(src, tmp_path / 'out' / 'resnest14_mm.pth')
    digest = ckpt.sha256_of(summary.path)
    assert summary.path.name == f'resnest14_mm-{digest[:8]}.pth'
    assert summary.weights.layout == 'official'
    model = ResNeSt(depth=14, stem_channels=32, base_channels=64)
    assert summary.num_tensors == len(model.state_dict())
    assert summary.num_params == sum(p.numel() for p in model.parameters())
    report = ckpt.load_pretrained(model, summary.path)  # the hash in the name is verified
    assert report.weights.layout == 'openmmlab' and report.complete

    back = ckpt.convert_checkpoint(summary.path, tmp_path / 'back.pth', to='official')
    restored = torch.load(back.path, weights_only=True)
    expected = {k: v for k, v in official.state_dict().items() if not k.startswith('fc.')}
    assert set(restored) == set(expected)
    assert all(torch.equal(restored[k], v) for k, v in expected.items())


def test_convert_cli(tmp_path):
    source = small_model(seed=5)
    src = tmp_path / 'det.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in source.state_dict().items()},
                'meta': {'epoch': 12}}, src)
    def convert(*args):
        return subprocess.run(
            [sys.executable, str(REPO / 'tools' / 'convert_weights.py'), *map(str, args)],
            capture_output=True, text=True, timeout=180, check=False,
            env={**os.environ, 'PYTHONPATH': str(REPO)})

    result = convert(src, tmp_path / 'bb.pth')
    assert result.returncode == 0, result.stderr
    written = list(tmp_path.glob('bb-*.pth'))
    assert len(written) == 1 and written[0].name == f'bb-{ckpt.sha256_of(written[0])[:8]}.pth'
    assert 'layout detected: OpenMMLab backbone' in result.stdout
    num_tensors = len(source.state_dict())
    assert f'{num_tensors}/{num_tensors}' in result.stdout  # the progress bar
    assert f'tensors: {num_tensors}' in result.stdout
    assert f'parameters: {sum(p.numel() for p in source.parameters()):,}' in result.stdout
    model = small_model(seed=6)
    ckpt.load_pretrained(model, written[0])
    assert_same_weights(model, source.state_dict())

    # A bad input ends the tool with a one-line message, not a traceback (in-process: faster).
    tool = load_tool('convert_weights')
    src.write_bytes(b'not a checkpoint')
    with pytest.raises(SystemExit) as info:
        tool.main([str(src), str(tmp_path / 'again.pth'), '--quiet'])
    assert str(info.value.code).startswith('convert_weights.py: error: cannot read checkpoint')
    assert 'det.pth' in str(info.value.code)


def test_convert_rejects_unknown_target(tmp_path):
    with pytest.raises(ValueError, match=r"to='timm'.*'openmmlab', 'official'"):
        ckpt.convert_checkpoint(tmp_path / 'x.pth', tmp_path / 'y.pth', to='timm')


def _convert_tool():
    return load_tool('convert_weights')


@pytest.mark.parametrize('name', ['resnest50', 'open-mmlab://resnest50'])
def test_convert_cli_from_a_short_name_to_official(tmp_path, monkeypatch, capsys, name):
    """``convert_weights.py NAME DST --to official``: the short name resolves (the official one
    from the hub cache, the OpenMMLab one by a download) and the file written loads into the
    authors' model with the source's tensors and outputs (only its classifier is missing)."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    official = official_model()
    served = tmp_path / 'served.pth'
    torch.save(official.state_dict(), served)
    digest = ckpt.sha256_of(served)[:8]
    if name == 'resnest50':
        monkeypatch.setitem(ckpt.OFFICIAL_FILES, 'resnest50', f'resnest50-{digest}')
        cached = ckpt.hub_cache_path(ckpt.checkpoint_url(name))
        cached.parent.mkdir(parents=True)
        served.rename(cached)
    else:
        monkeypatch.setitem(ckpt.OPENMMLAB_URLS, 'resnest50',
                            f'https://example.invalid/resnest50_d2-{digest}.pth')

        def fake_download(url, dst):
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(served.read_bytes())

        monkeypatch.setattr(ckpt.files, 'download', fake_download)
    _convert_tool().main([name, str(tmp_path / 'back.pth'), '--to', 'official', '--quiet'])
    written = list(tmp_path.glob('back-*.pth'))
    assert len(written) == 1
    assert f'written (official layout): {written[0]}' in capsys.readouterr().out
    restored = randomize_(official_model(), seed=9)  # other weights until loaded
    result = restored.load_state_dict(torch.load(written[0], weights_only=True), strict=False)
    assert sorted(result.missing_keys) == ['fc.bias', 'fc.weight'] and not result.unexpected_keys
    restored.fc.load_state_dict(official.fc.state_dict())
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(restored(x), official(x))
