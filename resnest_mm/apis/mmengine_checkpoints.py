"""Resume and test runs on torch >= 2.6, where ``torch.load`` is weights-only by default.

mmengine 0.10.7 calls ``torch.load`` without ``weights_only``. A checkpoint it wrote holds the
MessageHub state: ``HistoryBuffer`` objects with numpy arrays and scalars, and each buffer's
statistics methods, pickled as ``getattr(HistoryBuffer, 'mean')``. Weights-only loading refuses
all of those. Rather than turning weights-only loading off, :func:`mmengine_checkpoint_globals`
allow-lists exactly these (``resnest_mm.pretrained.mmengine_safe_globals``: numpy data,
``HistoryBuffer`` and a ``getattr`` restricted to its statistics methods), and only while a
run is in progress.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ..compat import allowed_globals
from ..pretrained import mmengine_safe_globals


@contextlib.contextmanager
def mmengine_checkpoint_globals() -> Iterator[None]:
    """Within the block, ``torch.load`` accepts mmengine training checkpoints weights-only.

    The block nests (:func:`resnest_mm.compat.allowed_globals`): a backbone reading its
    pretrained file inside it leaves the list in place for mmengine's resume that follows.
    torch < 2.6 loads without ``weights_only`` by default, so mmengine needs nothing there.
    """
    with allowed_globals(mmengine_safe_globals()):
        yield
