"""mmpretrain ResNeSt checkpoints: recognised, renamed and loaded with parity against mmpretrain's
own ResNeSt.

mmpretrain 1.2.0 imports torchvision at package import, and torchvision's wheels do not load
with the torch here. Its ResNeSt needs neither: the backbone modules (``registry.py``,
``models/backbones/{base_backbone,resnet,resnest}.py``: torch, mmcv and mmengine only) are
imported straight from the mmpretrain wheel (a zip file) with the package ``__init__`` files
skipped. ``tools/setup_env.py`` downloads that wheel (``pip download --no-deps``) into the
reference-wheel folder; nothing here touches the network.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

import pytest
import torch
from helpers import load_tool, max_abs_diff, randomize_

from resnest_mm import ResNeSt
from resnest_mm import pretrained as ckpt

REPO = Path(__file__).resolve().parents[1]
# Narrow stages (base_channels=16) keep the depth-50 layer structure at a sixteenth of the cost.
NARROW = dict(stem_channels=32, base_channels=16)


def _setup_env():
    return load_tool('setup_env')


@pytest.fixture(scope='module')
def mmpretrain_resnest():
    """mmpretrain's ``ResNeSt`` class, imported from its 1.2.0 wheel without its ``__init__``s."""
    setup_env = _setup_env()
    wheel = setup_env.reference_wheel('mmpretrain')
    assert wheel is not None, (
        f'no mmpretrain-{setup_env.REFERENCE_WHEELS["mmpretrain"]} wheel in '
        f'{setup_env.reference_wheel_dir()}; run `make setup` (tools/setup_env.py fetches it)')
    before = set(sys.modules)
    root = f'{wheel}/mmpretrain'
    for name, path in (('mmpretrain', root), ('mmpretrain.models', f'{root}/models'),
                       ('mmpretrain.models.backbones', f'{root}/models/backbones')):
        package = types.ModuleType(name)
        package.__path__ = [path]  # zipimport reads the submodules from the wheel
        sys.modules[name] = package
    try:
        module = importlib.import_module('mmpretrain.models.backbones.resnest')
        assert module.__file__.startswith(str(wheel))
        yield module.ResNeSt
    finally:
        for name in set(sys.modules) - before:
            if name.startswith('mmpretrain'):
                del sys.modules[name]


def classifier_checkpoint(backbone: torch.nn.Module, path: Path) -> Path:
    """What mmpretrain's ImageClassifier saves: ``backbone.*`` and ``head.fc.*`` under
    ``state_dict``, beside ``meta``."""
    state = {f'backbone.{k}': v for k, v in backbone.state_dict().items()}
    channels = backbone.layer4[-1].conv3.out_channels
    state['head.fc.weight'] = torch.randn(1000, channels)
    state['head.fc.bias'] = torch.randn(1000)
    torch.save({'meta': {'mmpretrain_version': '1.2.0', 'epoch': 270}, 'state_dict': state}, path)
    return path


@pytest.mark.parametrize('arch', [
    dict(depth=50, **NARROW),
    dict(depth=50, radix=4, groups=2, base_width=40, **NARROW),
])
def test_mmpretrain_resnest_loads_with_the_same_outputs(tmp_path, mmpretrain_resnest, arch):
    theirs_arch = {k: v for k, v in arch.items() if k != 'base_width'}
    if 'base_width' in arch:
        theirs_arch['width_per_group'] = arch['base_width']
    theirs = randomize_(mmpretrain_resnest(out_indices=(0, 1, 2, 3), **theirs_arch), 7)
    theirs.eval()  # mmpretrain's ResNet.train() returns None: no chaining
    keys = list(theirs.state_dict())
    assert 'stem.0.conv.weight' in keys and 'stem.2.bn.running_var' in keys
    assert 'layer1.0.downsample.0.weight' in keys  # stride 1: no pool before the shortcut conv
    assert 'layer2.0.downsample.1.weight' in keys  # stride 2: pool, conv, bn
    path = classifier_checkpoint(theirs, tmp_path / 'resnest_in1k.pth')

    ours = ResNeSt(**arch).eval()
    report = ckpt.load_pretrained(ours, path)
    assert report.weights.layout == 'mmpretrain' and report.weights.prefix == 'backbone.'
    assert report.complete and sorted(report.weights.ignored) == ['head.fc.bias', 'head.fc.weight']
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert max_abs_diff(ours(x), theirs(x)) < 1e-4


@pytest.mark.parametrize('suffix', ['.pth', '.safetensors'])
def test_mmpretrain_backbone_converts_to_our_layout(tmp_path, mmpretrain_resnest, suffix):
    """A bare mmpretrain backbone state dict through convert_checkpoint (tools/convert_weights.py)
    to a file that loads into ours with plain ``load_state_dict``."""
    theirs = randomize_(mmpretrain_resnest(depth=50, out_indices=(0, 1, 2, 3), **NARROW), 3)
    theirs.eval()
    path = tmp_path / 'backbone.pth'
    torch.save(theirs.state_dict(), path)
    summary = ckpt.convert_checkpoint(path, tmp_path / f'converted{suffix}', to='openmmlab')
    assert summary.weights.layout == 'mmpretrain' and summary.path.suffix == suffix
    ours = ResNeSt(depth=50, **NARROW).eval()
    ours.load_state_dict(ckpt.to_openmmlab(ckpt.load_checkpoint_file(summary.path)).state_dict)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert max_abs_diff(ours(x), theirs(x)) < 1e-4


def test_stem_renaming_table():
    rename = ckpt.mmpretrain_to_mm(['stem.0.conv.weight', 'layer1.0.downsample.0.weight',
                                    'layer1.0.downsample.1.weight', 'layer2.0.downsample.1.weight',
                                    'layer2.0.downsample.2.weight'])
    assert [rename(k) for k in ('stem.0.conv.weight', 'stem.0.bn.bias', 'stem.1.conv.weight',
                                'stem.1.bn.running_mean', 'stem.2.conv.weight', 'stem.2.bn.weight')
            ] == ['stem.0.weight', 'stem.1.bias', 'stem.3.weight', 'stem.4.running_mean',
                  'stem.6.weight', 'stem.7.weight']
    assert rename('layer1.0.downsample.0.weight') == 'layer1.0.downsample.1.weight'
    assert rename('layer1.0.downsample.1.running_var') == 'layer1.0.downsample.2.running_var'
    assert rename('layer2.0.downsample.1.weight') == 'layer2.0.downsample.1.weight'
    assert rename('layer2.0.downsample.2.bias') == 'layer2.0.downsample.2.bias'
    assert rename('layer3.2.conv2.bn0.weight') == 'layer3.2.conv2.bn0.weight'
