"""The random states a run consumes: torch (CPU and CUDA), numpy and Python's ``random``.

mmengine 0.10 saves only the seed, so a resumed run draws different random numbers (flips,
crops, samplers in the heads, dropout) than the run it continues. These states are saved
per process in the checkpoint and restored on resume. Everything is stored as tensors and
plain Python data, which ``torch.load(weights_only=True)`` reads.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size

# The checkpoint's meta entry: one state per process, indexed by rank.
META_KEY = 'random_states'


def capture() -> dict[str, Any]:
    """This process's random states."""
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        'torch': torch.get_rng_state(),
        'numpy': {'name': name, 'keys': torch.from_numpy(keys.astype(np.int64)), 'pos': int(pos),
                  'has_gauss': int(has_gauss), 'cached_gaussian': float(cached_gaussian)},
        'python': random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore(state: dict[str, Any]) -> None:
    """Set this process's random states to ``state`` (from :func:`capture`)."""
    torch.set_rng_state(state['torch'])
    numpy = state['numpy']
    np.random.set_state((numpy['name'], numpy['keys'].numpy().astype(np.uint32), numpy['pos'],
                         numpy['has_gauss'], numpy['cached_gaussian']))
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def gather() -> list[dict[str, Any]]:
    """Every process's random states, indexed by rank (a collective: all ranks call it)."""
    state = capture()
    return all_gather_object(state) if get_world_size() > 1 else [state]


def restore_rank(states: list[dict[str, Any]]) -> bool:
    """Restore this rank's entry of ``states`` (from :func:`gather`).

    Returns False, changing nothing, when the checkpoint was written by a different number of
    processes: the data each process draws then differs anyway.
    """
    if len(states) != get_world_size():
        return False
    restore(states[get_rank()])
    return True


@contextlib.contextmanager
def preserved() -> Iterator[None]:
    """Random states as they were before the block (validation must not shift training's)."""
    state = capture()
    try:
        yield
    finally:
        restore(state)
