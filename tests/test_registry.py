"""`type='resnest_mm.ResNeSt'` builds our class from every registry, never the built-in one."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import DefaultScope

import resnest_mm
from resnest_mm import ResNeSt

CFG = dict(type='resnest_mm.ResNeSt', depth=14, stem_channels=32, base_channels=16)


def test_import_does_not_pull_in_mmdet_or_mmseg():
    code = ('import sys, resnest_mm; '
            'bad = [m for m in ("mmdet", "mmseg") if m in sys.modules]; '
            'assert not bad, bad; print(resnest_mm.ResNeSt.__module__)')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == 'resnest_mm.models.resnest'


def test_registry_scope_and_parent():
    assert resnest_mm.MODELS.scope == 'resnest_mm'
    assert resnest_mm.MODELS.parent is MMENGINE_MODELS
    assert resnest_mm.MODELS.get('ResNeSt') is ResNeSt


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_builds_ours_under_mm_default_scope(scope):
    registry = importlib.import_module(f'{scope}.registry').MODELS
    builtin = registry.get('ResNeSt')
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(dict(CFG))
        assert type(registry.build(dict(CFG, type='ResNeSt', depth=50))) is builtin
    assert type(model) is ResNeSt and builtin is not ResNeSt


def test_builds_ours_without_default_scope():
    with DefaultScope.overwrite_default_scope(None):
        assert type(MMENGINE_MODELS.build(dict(CFG))) is ResNeSt


def test_builds_with_resnest_mm_default_scope():
    with DefaultScope.overwrite_default_scope('resnest_mm'):
        assert type(resnest_mm.MODELS.build(dict(CFG, type='ResNeSt'))) is ResNeSt


def test_every_registry_is_created_in_registry_module():
    """registry.py is the one place the package creates a registry; the hooks, loops, models,
    optimizer wrappers and the DDP wrapper it registers are found through those registries."""
    from pathlib import Path

    from resnest_mm import registry
    from resnest_mm.engine import DropBlockScheduleHook
    from resnest_mm.engine.loops import ExactIterBasedTrainLoop
    from resnest_mm.models.sync_bn import CPUSyncBNDistributedDataParallel

    package = Path(resnest_mm.__file__).parent
    creators = sorted(str(path.relative_to(package)) for path in package.rglob('*.py')
                      if 'Registry(' in path.read_text() and path.name != 'registry.py')
    assert creators == []
    assert registry.HOOKS.get('DropBlockScheduleHook') is DropBlockScheduleHook
    assert registry.LOOPS.get('IterBasedTrainLoop') is ExactIterBasedTrainLoop
    assert registry.MODELS.get('CPUSyncBN') is resnest_mm.models.CPUSyncBatchNorm
    assert (registry.MODEL_WRAPPERS.get('CPUSyncBNDistributedDataParallel')
            is CPUSyncBNDistributedDataParallel)
    for name in ('HOOKS', 'LOOPS', 'MODELS', 'OPTIM_WRAPPERS'):
        assert getattr(registry, name).scope == 'resnest_mm'
