"""Helpers the tests share (imported as ``from helpers import ...``; conftest holds fixtures)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from resnest_mm.benchmark.weights import randomize_

__all__ = ['load_tool', 'max_abs_diff', 'official_stage_outputs', 'randomize_']

TOOLS = Path(__file__).resolve().parents[1] / 'tools'


def load_tool(name: str) -> ModuleType:
    """``tools/<name>.py`` as a module, to call its ``main``/``parse_args`` in this process."""
    spec = importlib.util.spec_from_file_location(f'tools_{name}', TOOLS / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def max_abs_diff(a, b) -> float:
    """Largest absolute difference between two tensors or two equal-length tuples of tensors."""
    if isinstance(a, torch.Tensor):
        a, b = (a,), (b,)
    assert len(a) == len(b), f'{len(a)} outputs vs {len(b)}'
    for x, y in zip(a, b, strict=True):
        assert x.shape == y.shape, f'shape {tuple(x.shape)} vs {tuple(y.shape)}'
    return max((x - y).abs().max().item() for x, y in zip(a, b, strict=True))


def official_stage_outputs(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """layer1..layer4 outputs of a model in the official ResNeSt layout (the authors' package)."""
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    outs = []
    for name in ('layer1', 'layer2', 'layer3', 'layer4'):
        x = getattr(model, name)(x)
        outs.append(x)
    return tuple(outs)
