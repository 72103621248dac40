"""Shared fixtures. Tests make their own data and weights; nothing is downloaded. Shared
helpers live in ``helpers.py``."""

from __future__ import annotations

import os

import pytest
import torch

from resnest_mm.datasets import make_ade20k

# Two cores: keep intra-op threads at two and make runs repeatable.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def image() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope='module')
def ade20k(tmp_path_factory) -> str:
    """A tiny dataset in ADE20K layout (4 training and 2 val images of 64x64, seed 0), one per
    test module; its root, ending in a slash, for ``data_root`` options."""
    root = tmp_path_factory.mktemp('ade20k')
    return str(make_ade20k(root, num_train=4, num_val=2, seed=0, height=64, width=64)) + '/'
