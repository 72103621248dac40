"""Which checkpoint a run resumes from, and what is wrong with one that cannot be read.

mmengine resumes from the file named in ``last_checkpoint`` and, when it is truncated, stops
with torch's traceback. Here ``--resume`` takes the newest checkpoint that loads (a broken
newer one is named in one warning line and left in place), and a checkpoint named by the user
that does not load is reported in one line: empty, truncated, not a checkpoint, or refused by
the safe (weights-only) loader.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..pretrained import CorruptCheckpointError, UnsafeCheckpointError, load_checkpoint_file
from .checkpoint_hook import LAST_CHECKPOINT

ZIP_MAGIC = b'PK\x03\x04'  # torch.save's format since torch 1.6
LEGACY_MAGIC = b'\x80\x02\x8a\x0a'  # pickle protocol 2, then torch's long magic number
PUBLISHED = re.compile(r'-[0-9a-f]{8}\.pth$')  # CheckpointHook's published (weights-only) copies


class BrokenCheckpointError(RuntimeError):
    """A checkpoint file that cannot be resumed from or evaluated; the message says why."""


@dataclass
class ResumePoint:
    """A checkpoint that loads: its path, its meta (``iter``, ``epoch``, ``seed``, ...) and the
    shapes of its state dict's tensors."""

    path: str
    meta: dict
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)


def _what_is_wrong(path: Path, error: Exception) -> str:
    size = path.stat().st_size
    if size == 0:
        return 'is empty (0 bytes)'
    if isinstance(error, UnsafeCheckpointError):
        detail = re.search(r'plain data \((.*)\)\. Checkpoints', str(error))
        return ('is refused by the safe loader (torch.load with weights_only=True): it '
                f'pickles {detail.group(1) if detail else "objects beyond tensors and data"}')
    with open(path, 'rb') as f:
        head = f.read(8)
    if head.startswith((ZIP_MAGIC, LEGACY_MAGIC)):
        return (f'is truncated or damaged ({size} bytes of a PyTorch file that cannot be read, '
                'as a kill or a full disk during a save leaves it)')
    return f'is not a PyTorch checkpoint (it starts with {head!r})'


def load_checked(path: str | os.PathLike, role: str = 'checkpoint',
                 training: bool = False) -> dict[str, Any]:
    """Load ``path`` as the run will (weights-only, mmengine's objects allowed).

    Args:
        path: the file.
        role: how the message names it, e.g. ``'--resume checkpoint'``.
        training: also require a training checkpoint (``meta`` with ``iter``, ``state_dict``).

    Raises:
        BrokenCheckpointError: one line naming the file and what is wrong with it.
    """
    path = Path(path)
    try:
        checkpoint = load_checkpoint_file(path)
    except (CorruptCheckpointError, UnsafeCheckpointError) as error:
        raise BrokenCheckpointError(f'{role} {path} {_what_is_wrong(path, error)}') from None
    if training:
        meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
        if not isinstance(meta, dict) or 'iter' not in meta or 'state_dict' not in checkpoint:
            raise BrokenCheckpointError(
                f'{role} {path} is not a training checkpoint (it has no meta.iter and '
                'state_dict, e.g. weights only): resume needs one saved by a training run; '
                'use load_from to start from weights')
    return checkpoint


def _candidates(work_dir: Path) -> list[Path]:
    """Checkpoints in the work dir and in the folder ``last_checkpoint`` points to, newest
    first (modification time, then the number in the name)."""
    folders = {work_dir}
    pointer = work_dir / LAST_CHECKPOINT
    if pointer.is_file():
        named = pointer.read_text().strip()
        if named:
            folders.add(Path(named).parent)
    files = {p for folder in folders if folder.is_dir() for p in folder.glob('*.pth')
             if not p.name.startswith(('best_', '.')) and not PUBLISHED.search(p.name)}

    def order(p: Path) -> tuple[float, int]:
        number = re.findall(r'\d+', p.name)
        return p.stat().st_mtime, int(number[-1]) if number else -1

    return sorted(files, key=order, reverse=True)


def warn(message: str) -> None:
    """One warning line on stderr, from the first process only."""
    if os.environ.get('RANK', '0') == '0':
        print(f'resnest_mm: warning: {message}', file=sys.stderr, flush=True)


def find_resume_point(work_dir: str | os.PathLike) -> ResumePoint | None:
    """The newest checkpoint under ``work_dir`` that loads, or None if there is none.

    Each broken newer file is named in one warning line and left in place.

    Raises:
        BrokenCheckpointError: there are checkpoints, and none of them loads.
    """
    candidates = _candidates(Path(work_dir))
    broken = []
    for path in candidates:
        try:
            checkpoint = load_checked(path, 'checkpoint', training=True)
        except BrokenCheckpointError as error:
            broken.append(str(error))
            continue
        for message in broken:
            warn(f'{message}; resuming from the older {path} instead (the broken file is kept)')
        shapes = {k: tuple(v.shape) for k, v in checkpoint['state_dict'].items()
                  if hasattr(v, 'shape')}
        return ResumePoint(str(path), checkpoint['meta'], shapes)
    if broken:
        raise BrokenCheckpointError(
            f'--resume: none of the {len(broken)} checkpoint(s) in {work_dir} loads '
            f'(newest: {broken[0]}); pass --resume PATH of a good one, or move them away to '
            'train from the start')
    return None
