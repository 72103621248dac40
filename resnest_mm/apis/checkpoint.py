"""Resume and test runs on torch >= 2.6, where ``torch.load`` is weights-only by default.

mmengine 0.10.7 calls ``torch.load`` without ``weights_only``. A checkpoint it wrote holds the
MessageHub state: ``HistoryBuffer`` objects with numpy arrays and scalars, and each buffer's
statistics methods, pickled as ``getattr(HistoryBuffer, 'mean')``. Weights-only loading refuses
all of those. Rather than turning weights-only loading off, :func:`mmengine_checkpoint_globals`
allow-lists exactly these (``resnest_mm.checkpoint.mmengine_safe_globals``: numpy data,
``HistoryBuffer`` and a ``getattr`` restricted to its statistics methods), and only while a
run is in progress.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from ..checkpoint import mmengine_safe_globals


@contextlib.contextmanager
def mmengine_checkpoint_globals() -> Iterator[None]:
    """Within the block, ``torch.load`` accepts mmengine training checkpoints weights-only."""
    safe_globals = getattr(torch.serialization, 'safe_globals', None)
    if safe_globals is None:  # torch < 2.5 loads them without restriction
        yield
        return
    with safe_globals(mmengine_safe_globals()):
        yield
