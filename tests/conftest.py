"""Shared fixtures. Tests make their own data and weights; nothing is downloaded. Shared
helpers live in ``helpers.py``."""

from __future__ import annotations

import os

import pytest
import torch

# Two cores: keep intra-op threads at two and make runs repeatable.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def image() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
