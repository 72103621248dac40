"""Loading mmengine checkpoints (resume, test) on torch >= 2.6 (weights-only ``torch.load``).

mmengine 0.10.7 calls ``torch.load`` without ``weights_only``. A checkpoint it wrote holds the
MessageHub state: ``HistoryBuffer`` objects with numpy arrays and scalars, and each buffer's
statistics methods, pickled as ``getattr(HistoryBuffer, 'mean')``. Weights-only loading refuses
all of those. Rather than turning weights-only loading off, :func:`mmengine_checkpoint_globals`
allow-lists exactly these globals, and only while a run is in progress.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch


def mmengine_checkpoint_globals_list() -> list:
    """The globals an mmengine 0.10 training checkpoint needs beyond tensors and containers."""
    from mmengine.logging import HistoryBuffer

    multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray
    dtypes = [type(np.dtype(t)) for t in (
        np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64,
        np.uint8, np.bool_)]
    # getattr: HistoryBuffer pickles its statistics methods as getattr(HistoryBuffer, name).
    return [HistoryBuffer, multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype,
            getattr, *dtypes]


@contextlib.contextmanager
def mmengine_checkpoint_globals() -> Iterator[None]:
    """Within the block, ``torch.load`` accepts mmengine training checkpoints weights-only."""
    safe_globals = getattr(torch.serialization, 'safe_globals', None)
    if safe_globals is None:  # torch < 2.5 loads them without restriction
        yield
        return
    with safe_globals(mmengine_checkpoint_globals_list()):
        yield
