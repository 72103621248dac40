"""Atomic file writes: a temporary file in the same folder, flushed, fsynced, renamed into place.

A reader (or a run resumed after a kill) sees either the previous file or the complete new one,
never a partial file under the final name. The temporary name starts with a dot and ends in
``.tmp``, so no ``*.pth`` pattern matches one left behind by a kill.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from mmengine.fileio import LocalBackend, register_backend

ATOMIC_BACKEND = 'resnest_mm_atomic'


def temporary_path(path: str | os.PathLike) -> Path:
    """Where :func:`atomic_write` writes ``path`` before renaming it: same folder, hidden."""
    path = Path(path)
    return path.with_name(f'.{path.name}.{os.getpid()}.tmp')


def _fsync_folder(folder: Path) -> None:
    # The rename is durable once the folder's entry is on disk (POSIX); Windows cannot open it.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` to ``path`` so that a kill at any moment leaves the old file or the new one.

    Args:
        path: the final file; its folder is created if missing.
        data: bytes, or text (written as UTF-8).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    if isinstance(data, str):
        data = data.encode('utf-8')
    try:
        with open(tmp, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(error, OSError):
            error.filename = str(path)  # the file the caller asked for, not the temporary one
        raise
    _fsync_folder(path.parent)


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend whose writes are atomic (:func:`atomic_write`).

    Selected with ``backend_args=dict(backend='resnest_mm_atomic')``; reading, listing and
    removing are ``LocalBackend``'s.
    """

    def put(self, obj: bytes, filepath: str | os.PathLike) -> None:
        atomic_write(filepath, obj)

    def put_text(self, obj: str, filepath: str | os.PathLike, encoding: str = 'utf-8') -> None:
        atomic_write(filepath, obj.encode(encoding))


register_backend(ATOMIC_BACKEND, AtomicLocalBackend, force=True)
