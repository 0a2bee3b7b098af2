"""The exclusive lock of a run folder: one process at a time works in it.

:func:`folder_lock` takes an exclusive ``fcntl.flock`` on ``<run>/.lock`` (released by the kernel
when the process dies, so a killed run never leaves a stale lock); a second process gets a one-line
:class:`RunError` naming the holder's pid. On a read-only file system nothing is locked: no process
can write there, so ``eval --no-write`` and ``analyze --out`` elsewhere read such a run as usual.
Within one process the lock is re-entrant: the figure cache holds a run folder's lock while it
decides to train, and the training loop it calls takes the same lock again without blocking itself.
:func:`holds_lock` tells code that removes leftovers (stale temporary files) whether this process
may touch the folder.
"""

from __future__ import annotations

import errno
import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from deepfusion.errors import RunError
from deepfusion.model.runs.layout import RunFolder

LOCK = ".lock"
_HELD: dict[str, int] = {}  # real path of a held run folder -> nesting depth in this process


def _key(root: str | Path) -> str:
    return os.path.realpath(root)


def holds_lock(root: str | Path) -> bool:
    """Whether this process holds the lock of run folder ``root``."""
    return _HELD.get(_key(root), 0) > 0


@contextmanager
def folder_lock(root: str | Path, what: str = "work in"):
    """Hold the exclusive lock of run folder ``root`` (which must exist) for the ``with`` block.

    Yields the :class:`~deepfusion.model.runs.layout.RunFolder`. ``what`` completes the error
    message a second process gets ("... before you ``what`` it").
    """
    folder = RunFolder(root)
    key = _key(folder.root)
    if _HELD.get(key):  # this process holds it already (the cache around the training loop)
        _HELD[key] += 1
        try:
            yield folder
        finally:
            _HELD[key] -= 1
        return
    fd = _open_lock_file(folder.root / LOCK)
    if fd is None:  # read-only media: no process can write there, so there is nothing to exclude
        yield folder
        return
    try:
        _take(fd, folder, what)
        pid = f"{os.getpid()}\n".encode()
        os.pwrite(fd, pid, 0)  # a reader sees this pid as the first word, before and after the truncation
        os.ftruncate(fd, len(pid))
        _HELD[key] = 1
        try:
            yield folder
        finally:
            _HELD.pop(key, None)
    finally:
        os.close(fd)  # closing releases the lock


def _open_lock_file(path: Path) -> int | None:
    """The lock file's descriptor; None on a read-only file system (a run read from a DVD or a
    read-only mount), where reading needs no lock and writing fails anyway, naming the file."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as err:
        if err.errno == errno.EROFS:
            return None
        if err.errno == errno.ELOOP:
            raise RunError(f"{path} is a symbolic link; remove it (a run folder's lock is a plain file)") from None
        if err.errno == errno.ENOENT:
            raise RunError(
                f"run folder {path.parent} does not exist; train one with: deepfusion train --config digits"
            ) from None
        raise RunError(f"cannot open the lock file {path} ({err.strerror}); check the folder is writable") from None
    return fd  # not inherited by child processes (Python opens files close-on-exec)


def _take(fd: int, folder, what: str) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = (os.pread(fd, 64, 0).decode(errors="replace").split() or ["unknown"])[0]
        raise RunError(
            f"run folder {folder} is in use by process {holder}; wait for it to finish "
            f"(or stop it) before you {what} it"
        ) from None
