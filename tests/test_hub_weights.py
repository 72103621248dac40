"""``checkpoint='hf-hub:timm/<name>'`` and ``.safetensors`` files.

A Hugging Face hub cache is laid out here, as the hub client lays it out (checked against
``huggingface_hub`` itself); nothing is downloaded. The weights are the authors' architecture
(``resnest==0.0.5``) built with timm's settings for each name, in the official/timm key layout
that timm's ``model.safetensors`` files use.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
import torch
from helpers import load_tool, max_abs_diff, official_stage_outputs, randomize_
from safetensors.torch import save_file
from tiny import DEEPLABV3, as_cli, tiny_segmentation_options

from resnest_mm import ResNeSt
from resnest_mm import pretrained as ckpt
from resnest_mm.datasets import make_ade20k

REPO = Path(__file__).resolve().parents[1]
REVISION = '5a1c0ffee0ddba11c0ffee0ddba11c0ffee0ddba'

# timm's definitions (timm/models/resnest.py): layers, stem_width, radix, cardinality,
# base_width, avd_first. They are what the hub's weights were trained or ported with.
TIMM_ARCHS = {
    'resnest14d': ([1, 1, 1, 1], 32, 2, 1, 64, False),
    'resnest26d': ([2, 2, 2, 2], 32, 2, 1, 64, False),
    'resnest50d': ([3, 4, 6, 3], 32, 2, 1, 64, False),
    'resnest101e': ([3, 4, 23, 3], 64, 2, 1, 64, False),
    'resnest200e': ([3, 24, 36, 3], 64, 2, 1, 64, False),
    'resnest269e': ([3, 30, 48, 8], 64, 2, 1, 64, False),
    'resnest50d_4s2x40d': ([3, 4, 6, 3], 32, 4, 2, 40, True),
    'resnest50d_1s4x24d': ([3, 4, 6, 3], 32, 1, 4, 24, True),
}


def authors_model(name: str, device: str = 'cpu'):
    """The authors' ResNeSt with timm's settings for ``name``, eval mode; random weights on the
    CPU, or only shapes on the ``meta`` device."""
    from resnest.torch.resnet import Bottleneck, ResNet
    layers, stem_width, radix, groups, width, avd_first = TIMM_ARCHS[name]
    with torch.device(device):
        model = ResNet(Bottleneck, layers, radix=radix, groups=groups, bottleneck_width=width,
                       deep_stem=True, stem_width=stem_width, avg_down=True, avd=True,
                       avd_first=avd_first, num_classes=1000)
    return (model if device == 'meta' else randomize_(model, 5)).eval()


def lay_out_hub_cache(cache: Path, repo_id: str, state_dict: dict) -> Path:
    """Write ``model.safetensors`` of ``repo_id`` as the hub client does: the file in
    ``blobs/<sha256>``, a relative link in ``snapshots/<revision>/``, the revision in
    ``refs/main``. Returns the snapshot path."""
    root = cache / ('models--' + repo_id.replace('/', '--'))
    staging = cache / 'staging.safetensors'
    cache.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(staging))
    blob = root / 'blobs' / hashlib.sha256(staging.read_bytes()).hexdigest()
    blob.parent.mkdir(parents=True)
    staging.rename(blob)
    snapshot = root / 'snapshots' / REVISION / ckpt.HF_HUB_FILE
    snapshot.parent.mkdir(parents=True)
    snapshot.symlink_to(os.path.relpath(blob, snapshot.parent))
    (root / 'refs').mkdir()
    (root / 'refs' / 'main').write_text(REVISION)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    cache = tmp_path / 'hf' / 'hub'
    monkeypatch.setenv('HF_HUB_CACHE', str(cache))

    def no_download(repo_id, filename, cache_dir):
        raise AssertionError(f'downloaded {filename} of {repo_id}')

    monkeypatch.setattr(ckpt.files, 'hf_hub_download', no_download)
    return cache


@pytest.mark.parametrize('name', TIMM_ARCHS)
def test_hub_name_builds_the_architecture_of_its_weights(name):
    """Each name maps to the depth, stem and preset its weights need: every tensor of the
    authors' model with timm's settings has its place and shape in ours, and the blocks pool
    (avd) where and when (avd_first) the authors' do. Shapes only (meta device): fast."""
    reference = authors_model(name, device='meta')
    _, kwargs = ckpt.parse_hf_hub_name(f'hf-hub:timm/{name}')
    with torch.device('meta'):
        model = ResNeSt(**kwargs)
    theirs = ckpt.to_openmmlab(reference.state_dict()).state_dict
    assert {k: v.shape for k, v in theirs.items()} == {
        k: v.shape for k, v in model.state_dict().items()}
    for stage in ('layer1', 'layer2', 'layer3', 'layer4'):
        for their_block, our_block in zip(getattr(reference, stage), getattr(model, stage),
                                          strict=True):
            assert (our_block.avd_layer is not None) == their_block.avd
            if their_block.avd:
                assert our_block.avd_first == their_block.avd_first


@pytest.mark.parametrize('name', [
    pytest.param(n, marks=pytest.mark.slow) if n != 'resnest14d' else n for n in TIMM_ARCHS])
def test_hub_weights_load_with_the_authors_outputs(hub_cache, name):
    """Weights in the hub cache load strictly through the name and give the authors' model's
    stage outputs (the 25M-110M parameter ones take 10-60 s each here: slow)."""
    reference = authors_model(name)
    repo_id, kwargs = ckpt.parse_hf_hub_name(f'hf-hub:timm/{name}')
    snapshot = lay_out_hub_cache(hub_cache, repo_id, reference.state_dict())
    model = ResNeSt(**kwargs).eval()
    report = ckpt.load_pretrained(model, f'hf-hub:timm/{name}')
    assert report.path == snapshot and report.complete
    assert report.weights.layout == 'official'
    assert sorted(report.weights.dropped) == ['fc.bias', 'fc.weight']
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert max_abs_diff(model(x), official_stage_outputs(reference, x)) < 1e-4


def test_names_are_the_published_timm_repos():
    """Without a tag a name means timm's one published weight set, with the tag as given."""
    assert ckpt.parse_hf_hub_name('hf-hub:timm/resnest14d')[0] == 'timm/resnest14d.gluon_in1k'
    assert ckpt.parse_hf_hub_name('hf-hub:timm/resnest26d')[0] == 'timm/resnest26d.gluon_in1k'
    for name in set(TIMM_ARCHS) - {'resnest14d', 'resnest26d'}:
        assert ckpt.parse_hf_hub_name(f'hf-hub:timm/{name}')[0] == f'timm/{name}.in1k'
    assert ckpt.parse_hf_hub_name('hf-hub:timm/resnest50d.in1k')[0] == 'timm/resnest50d.in1k'
    assert set(ckpt.HF_HUB_MODELS) == set(TIMM_ARCHS)


def test_our_cache_lookup_finds_what_the_hub_client_finds(hub_cache):
    weights = ResNeSt(depth=14, stem_channels=32, base_channels=16).state_dict()
    lay_out_hub_cache(hub_cache, 'timm/resnest14d.gluon_in1k', weights)
    ours = ckpt.hf_hub_cached_file('timm/resnest14d.gluon_in1k')
    theirs = huggingface_hub.try_to_load_from_cache(
        'timm/resnest14d.gluon_in1k', ckpt.HF_HUB_FILE, cache_dir=str(hub_cache))
    assert ours is not None and Path(theirs) == ours


@pytest.mark.parametrize('env', [
    {'HF_HUB_CACHE': '/tmp/a/hub-cache'},
    {'HF_HOME': '/tmp/b/hf-home'},
    {'XDG_CACHE_HOME': '/tmp/c/xdg'},
    {'HF_HUB_CACHE': '/tmp/d/hub-cache', 'HF_HOME': '/tmp/d/hf-home'},
    {},
])
def test_cache_folder_follows_the_hub_clients_variables(monkeypatch, env):
    clean = {k: v for k, v in os.environ.items()
             if k not in ('HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE', 'HF_HOME', 'XDG_CACHE_HOME')}
    theirs = subprocess.run(
        [sys.executable, '-c', 'from huggingface_hub import constants; '
                               'print(constants.HF_HUB_CACHE)'],
        env={**clean, **env}, capture_output=True, text=True, check=True).stdout.strip()
    for var in ('HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE', 'HF_HOME', 'XDG_CACHE_HOME'):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    assert ckpt.hf_hub_cache_dir() == Path(theirs)


def test_missing_file_is_downloaded_into_the_cache_once(tmp_path, monkeypatch):
    cache = tmp_path / 'hub'
    monkeypatch.setenv('HF_HUB_CACHE', str(cache))
    weights = authors_model('resnest14d').state_dict()
    calls = []

    def fake_client(repo_id, filename, cache_dir):
        calls.append((repo_id, filename, Path(cache_dir)))
        return lay_out_hub_cache(Path(cache_dir), repo_id, weights)

    monkeypatch.setattr(ckpt.files, 'hf_hub_download', fake_client)
    model = ResNeSt(**ckpt.HF_HUB_MODELS['resnest14d'][1])
    ckpt.load_pretrained(model, 'hf-hub:timm/resnest14d')
    ckpt.load_pretrained(model, 'hf-hub:timm/resnest14d')
    assert calls == [('timm/resnest14d.gluon_in1k', 'model.safetensors', cache)]
    assert torch.equal(model.state_dict()['stem.7.running_var'], weights['bn1.running_var'])


def test_without_the_client_the_error_says_how_to_fetch(hub_cache, monkeypatch):
    def no_client(repo_id, filename, cache_dir):
        raise ImportError("No module named 'huggingface_hub'")

    monkeypatch.setattr(ckpt.files, 'hf_hub_download', no_client)
    with pytest.raises(ckpt.CheckpointNotFoundError) as info:
        ckpt.load_pretrained(ResNeSt(depth=50), 'hf-hub:timm/resnest50d')
    message = str(info.value)
    assert '\n' not in message
    assert 'timm/resnest50d.in1k' in message and str(hub_cache) in message
    assert 'huggingface_hub is not installed' in message
    assert '`hf download timm/resnest50d.in1k model.safetensors`' in message


def test_offline_client_stops_with_one_line(tmp_path):
    """The real client, offline (HF_HUB_OFFLINE=1) and with an empty cache, as a user meets it."""
    code = ('from resnest_mm.pretrained import resolve_checkpoint\n'
            'try:\n'
            "    resolve_checkpoint('hf-hub:timm/resnest101e.in1k')\n"
            'except FileNotFoundError as err:\n'
            "    print('ERROR ' + str(err))\n")
    env = {**os.environ, 'HF_HUB_OFFLINE': '1', 'HF_HUB_CACHE': str(tmp_path / 'hub'),
           'PYTHONPATH': str(REPO)}
    out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    errors = [line for line in out.splitlines() if line.startswith('ERROR ')]
    assert len(errors) == 1 and out.rstrip().endswith(errors[0]), out
    assert 'model.safetensors of the Hugging Face repo timm/resnest101e.in1k' in errors[0]
    assert 'hf download timm/resnest101e.in1k model.safetensors' in errors[0]
    assert not (tmp_path / 'hub' / 'models--timm--resnest101e.in1k' / 'snapshots').exists()


def test_architecture_mismatch_is_the_usual_clear_error(hub_cache):
    lay_out_hub_cache(hub_cache, 'timm/resnest14d.gluon_in1k',
                      authors_model('resnest14d').state_dict())
    model = ResNeSt(**ckpt.HF_HUB_MODELS['resnest26d'][1])
    with pytest.raises(ckpt.WeightMismatchError, match=r'depth'):
        ckpt.load_pretrained(model, 'hf-hub:timm/resnest14d')


@pytest.mark.parametrize('name', ['hf-hub:timm/resnet50.a1_in1k', 'hf-hub:someone/resnest50d',
                                  'hf-hub:resnest50d'])
def test_unsupported_hub_name_lists_the_supported_ones(hub_cache, name):
    with pytest.raises(ckpt.CheckpointNotFoundError) as info:
        ckpt.resolve_checkpoint(name)
    message = str(info.value)
    assert repr(name) in message
    assert all(f'hf-hub:timm/{arch}' in message for arch in TIMM_ARCHS)


def test_safetensors_file_loads_through_init_cfg(tmp_path):
    reference = authors_model('resnest14d')
    path = tmp_path / 'resnest14d.safetensors'
    save_file(reference.state_dict(), str(path))
    model = ResNeSt(depth=14, stem_channels=64,
                    init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    model.eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert max_abs_diff(model(x), official_stage_outputs(reference, x)) < 1e-4


def test_damaged_safetensors_file_is_named(tmp_path):
    path = tmp_path / 'broken.safetensors'
    save_file({'conv1.0.weight': torch.ones(2, 3, 3, 3)}, str(path))
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ckpt.CorruptCheckpointError, match=r'broken\.safetensors.*safetensors'):
        ckpt.load_checkpoint_file(path)


def test_train_tool_stops_at_set_up_when_hub_weights_cannot_be_fetched(hub_cache, monkeypatch,
                                                                       tmp_path):
    """tools/train.py with an hf-hub backbone that is neither cached nor downloadable: one line
    before the Runner starts, as for a missing dataset."""
    def no_client(repo_id, filename, cache_dir):
        raise ImportError("No module named 'huggingface_hub'")

    monkeypatch.setattr(ckpt.files, 'hf_hub_download', no_client)
    data = str(make_ade20k(tmp_path / 'ade', num_train=1, num_val=1, seed=0, height=64,
                           width=64)) + '/'
    options = tiny_segmentation_options(data)
    del options['model.backbone.init_cfg']  # keep the config's Pretrained entry, name it here
    options['model.backbone.init_cfg.checkpoint'] = 'hf-hub:timm/resnest14d'
    train_tool = load_tool('train')
    with pytest.raises(SystemExit) as stop:
        train_tool.main([str(DEEPLABV3), '--work-dir', str(tmp_path / 'w'), *as_cli(options)])
    message = stop.value.code
    assert isinstance(message, str) and '\n' not in message
    assert message.startswith('train.py: error: ')
    assert 'hf download timm/resnest14d.gluon_in1k model.safetensors' in message
    assert not (tmp_path / 'w').exists()  # stopped before the Runner made its work dir
