"""Opening a run folder for training: new or resumed, locked for the time the run works in it.

One process at a time works in a run folder. :func:`folder_lock` takes an exclusive
``fcntl.flock`` on ``<run>/.lock`` (released by the kernel when the process dies, so a killed run
never leaves a stale lock); a second process gets a one-line error naming the holder's pid.
Training, ``--resume``, ``eval`` and ``analyze`` hold it, and the figure cache holds it for each run
it trains.
"""

from __future__ import annotations

import errno
import json
import os
from contextlib import contextmanager
from pathlib import Path

from deepfusion.errors import RunError
from deepfusion.model.runs.layout import RunFolder, write_text_atomic


@contextmanager
def folder_lock(root: str | Path, what: str = "work in"):
    """Hold the exclusive lock of run folder ``root`` (created if missing) for the ``with`` block."""
    import fcntl

    folder = RunFolder(root)
    try:
        fd = os.open(folder.lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise RunError(f"{folder.lock} is a symbolic link; remove it (a run folder's lock is a plain file)") from None
        raise RunError(f"cannot open the lock file {folder.lock} ({err.strerror}); check the folder is writable") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise RunError(f"run folder {folder} is in use by process {holder}; wait for it to finish "
                           f"(or stop it) before you {what} it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield folder
    finally:
        os.close(fd)  # closing releases the lock


def default_run_dir(cfg) -> Path:
    """``<out_dir>/<name>``, or ``<out_dir>/<preset>-<config hash>`` when no name is set."""
    from deepfusion.model.runs.config import config_hash

    return Path(cfg.train.out_dir) / (cfg.train.name or f"{cfg.preset}-{config_hash(cfg)}")


def _unwritable(folder: RunFolder, err: OSError) -> RunError:
    return RunError(f"cannot write to run folder {folder} ({err.strerror}); set train.out_dir or --out to a "
                    "writable folder")


def _make_folder(folder: RunFolder) -> None:
    try:
        folder.root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _unwritable(folder, err) from None


def _check_writable(folder: RunFolder) -> None:
    try:
        folder.checkpoints.mkdir(parents=True, exist_ok=True)
        write_text_atomic(folder.root / ".write-test", "ok")
        (folder.root / ".write-test").unlink()
    except OSError as err:
        raise _unwritable(folder, err) from None


@contextmanager
def open_run_folder(cfg, run_dir, resume: bool, dinfo):
    """The run folder of a new or resumed run, locked (rank 0) while the block runs; yields
    ``(folder, checkpoint or None)``.

    A new run needs a missing or empty folder; a resume needs a checkpoint whose data, model, optim
    and loss sections match ``cfg``.
    """
    from deepfusion.model.runs import distributed as ddp_util
    from deepfusion.model.runs.checkpoint import check_config_matches, latest_checkpoint
    from deepfusion.model.runs.config import config_to_dict

    folder = RunFolder(run_dir if run_dir is not None else default_run_dir(cfg))
    ckpt = None
    if resume:
        if not folder.checkpoints.is_dir():
            raise RunError(f"cannot resume: {folder} has no {folder.checkpoints.name}/ folder; start a new run "
                           "without --resume")
    elif folder.last.exists():
        raise RunError(f"{folder} already holds a run; continue it with --resume {folder} or set train.name to a "
                       "new name")
    if dinfo.main:
        _make_folder(folder)
    lock = folder_lock(folder.root, "resume" if resume else "train in") if dinfo.main else _nothing(folder)
    with lock:
        if resume:
            ckpt = latest_checkpoint(folder.checkpoints)
            check_config_matches(ckpt["config"], config_to_dict(cfg), source=f"checkpoint in {folder}",
                                 sections=("data", "model", "optim", "loss"))
        if dinfo.main:
            _check_writable(folder)
        ddp_util.barrier()  # no rank sees the folder before it exists
        yield folder, ckpt


@contextmanager
def _nothing(folder):
    yield folder


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines logged after the checkpoint being resumed (they will be logged again)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except json.JSONDecodeError:  # a line cut by a crash
            continue
    write_text_atomic(path, "".join(line + "\n" for line in keep))
