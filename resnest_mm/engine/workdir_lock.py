"""One training run per work dir: a lock held for the run's life, gone with its process.

Two runs writing one work dir overwrite each other's ``iter_<n>.pth`` and ``last_checkpoint``
(a requeued job whose old copy is still alive, or the same command started twice). A run takes
an exclusive POSIX record lock (``fcntl.lockf``) on ``<work_dir>/.resnest_mm.lock`` before the
Runner touches the folder, and a second run is refused at once, naming the work dir and the
holder's pid.

Why a POSIX record lock and not ``flock``: the kernel drops it when the holding process ends,
however it ends (``kill -9`` included), so a stale lock never blocks; forked children (data
loader workers, which can outlive a killed parent by a few seconds) do not inherit it; and NFS
clients forward it to the server's lock manager (``flock`` on NFS is emulated with these
locks anyway). The lock is per process: this module keeps the one open descriptor per work dir,
because closing any other descriptor of the file in the same process would drop the lock.

In a distributed run only rank 0 takes the lock; the other ranks learn its verdict through the
process group when one exists (CPU runs, set up before the Runner), so every process of a
refused run stops and only rank 0 prints.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import struct
import sys
import time
from pathlib import Path

LOCK_NAME = '.resnest_mm.lock'
OVERRIDE_OPTION = '--allow-shared-work-dir'

_HELD: dict[str, WorkDirLock] = {}  # real path of the work dir -> this process's lock


class WorkDirBusyError(RuntimeError):
    """Another live process holds the work dir's lock; the message names it."""


class WorkDirUnusableError(RuntimeError):
    """The work dir cannot be created, read or written; the message says which and why."""


def _holder_from_kernel(fd: int) -> int | None:
    """The pid the kernel reports for the conflicting lock (``F_GETLK``), if it says.

    ``struct flock`` is ``short, short, off_t, off_t, pid_t`` on Linux and the BSDs' order
    differs, so this is Linux only; elsewhere (and for a lock held on another NFS client,
    where the pid is the server's view) the pid written in the file is used.
    """
    if not sys.platform.startswith('linux'):
        return None
    request = struct.pack('hhqqi', fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
    try:
        reply = fcntl.fcntl(fd, fcntl.F_GETLK, request)
    except OSError:
        return None
    lock_type, _, _, _, pid = struct.unpack('hhqqi', reply)
    return pid if lock_type != fcntl.F_UNLCK and pid > 0 else None


def _describe_holder(fd: int) -> str:
    """'pid 1234 on host h since 22:41:07 UTC (python tools/train.py ...)' as far as known."""
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 4096).decode('utf-8', 'replace')
    info = dict(line.split('=', 1) for line in text.splitlines() if '=' in line)
    kernel_pid = _holder_from_kernel(fd)
    written_pid = info.get('pid')
    elsewhere = info.get('host') != socket.gethostname()  # the kernel's pid means nothing here
    if not written_pid or not (kernel_pid is None or elsewhere or written_pid == str(kernel_pid)):
        # the holder has not written its details yet (or they are a dead run's)
        return f'pid {kernel_pid}' if kernel_pid else 'a process that has not written its pid'
    details = [f'pid {written_pid}', f'on host {info.get("host", "?")}']
    if info.get('since'):
        details.append(f'since {info["since"]}')
    if info.get('command'):
        details.append(f'({info["command"]})')
    return ' '.join(details)


class WorkDirLock:
    """The exclusive lock of one work dir, held by this process until :meth:`release`.

    Args:
        work_dir: the run's work dir; created if missing (only once it is locked).
    """

    def __init__(self, work_dir: str | os.PathLike) -> None:
        self.work_dir = Path(work_dir)
        self.path = self.work_dir / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> None:
        """Take the lock without waiting.

        Raises:
            WorkDirBusyError: a live process holds it (the message names it).
            WorkDirUnusableError: the work dir cannot be created or written.
        """
        check_work_dir(self.work_dir)
        try:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as error:
            raise WorkDirUnusableError(
                f'work dir {self.work_dir} cannot be written ({_reason(error)}); pass a '
                '--work-dir this user can write') from None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            try:
                if error.errno not in (errno.EACCES, errno.EAGAIN):
                    raise WorkDirUnusableError(
                        f'work dir {self.work_dir}: cannot lock {self.path} ({_reason(error)}); '
                        f'the file system may not support locks (pass {OVERRIDE_OPTION} to '
                        'run without one)') from None
                holder = _describe_holder(fd)
            finally:
                os.close(fd)
            raise WorkDirBusyError(
                f'work dir {self.work_dir} is in use by another training run: {holder}. '
                'Wait for it to end or stop it, or give this run another --work-dir '
                f'({OVERRIDE_OPTION} runs anyway, and the runs overwrite each other\'s '
                'checkpoints)') from None
        self.fd = fd
        stamp = time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())
        command = ' '.join(['python', *sys.argv]) if sys.argv and sys.argv[0] else 'python'
        content = (f'pid={os.getpid()}\nhost={socket.gethostname()}\nsince={stamp}\n'
                   f'command={command[:300]}\n').encode()
        with contextlib.suppress(OSError):  # informative only; a full disk must not stop here
            os.ftruncate(fd, 0)
            os.pwrite(fd, content, 0)

    def release(self) -> None:
        """Drop the lock (the file stays: removing it would race with a run opening it)."""
        if self.fd is not None:
            with contextlib.suppress(OSError):
                fcntl.lockf(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def _reason(error: OSError) -> str:
    return error.strerror or type(error).__name__


def check_work_dir(work_dir: str | os.PathLike) -> None:
    """Refuse a work dir path that cannot be used, before anything is written.

    Raises:
        WorkDirUnusableError: it is a file, a parent is a file, or it exists and this user
            cannot list, read or write it.
    """
    path = Path(work_dir)
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                what = 'it' if folder == path else f'{folder} (a parent folder)'
                raise WorkDirUnusableError(
                    f'work dir {path} cannot be used: {what} is a file, not a folder; pass '
                    'another --work-dir')
            break
    if path.is_dir() and not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            why = 'it is on a read-only file system'
        else:
            why = (f'this user ({_user()}) cannot read and write it (mode '
                   f'{path.stat().st_mode & 0o777:o})')
        raise WorkDirUnusableError(
            f'work dir {path} cannot be used: {why}; pass another --work-dir or fix its '
            'permissions')


def _user() -> str:
    try:
        import pwd
        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return f'uid {os.geteuid()}'


def lock_work_dir(work_dir: str | os.PathLike) -> WorkDirLock:
    """This process's lock of ``work_dir``, taken now or earlier (idempotent)."""
    key = os.path.realpath(work_dir)
    lock = _HELD.get(key)
    if lock is None:
        lock = WorkDirLock(work_dir)
        lock.acquire()
        _HELD[key] = lock
    return lock


def release_work_dir(work_dir: str | os.PathLike) -> None:
    """Drop this process's lock of ``work_dir``, if it holds one."""
    lock = _HELD.pop(os.path.realpath(work_dir), None)
    if lock is not None:
        lock.release()


def lock_for_run(work_dir: str | os.PathLike) -> WorkDirLock | None:
    """Take ``work_dir``'s lock for a run of one or several processes.

    Rank 0 takes it. When a ``torch.distributed`` process group exists, rank 0's verdict is
    broadcast, and the other ranks of a refused run exit with status 1 without printing (rank
    0 prints the one line); without one (a CUDA run, whose group the Runner makes later), the
    other ranks go on and the launcher stops them when rank 0 exits.

    Returns:
        The lock on rank 0, None on the other ranks.

    Raises:
        WorkDirBusyError, WorkDirUnusableError: on rank 0 (see :meth:`WorkDirLock.acquire`).
    """
    import torch.distributed as dist
    grouped = dist.is_available() and dist.is_initialized()
    rank = dist.get_rank() if grouped else int(os.environ.get('RANK', '0'))
    lock, refusal = None, None
    if rank == 0:
        try:
            lock = lock_work_dir(work_dir)
        except (WorkDirBusyError, WorkDirUnusableError) as error:
            refusal = error
    if grouped and dist.get_world_size() > 1:
        verdict = [None if refusal is None else str(refusal)]
        dist.broadcast_object_list(verdict, src=0)
        if verdict[0] is not None:
            dist.barrier()  # a process exiting with a live gloo group can abort instead
            dist.destroy_process_group()
            if rank != 0:
                sys.exit(1)  # rank 0 says why
    if refusal is not None:
        raise refusal
    return lock
