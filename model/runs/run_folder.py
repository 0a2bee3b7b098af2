"""Opening a run folder for training: new or resumed, locked for the time the run works in it.

One process at a time works in a run folder: training, ``--resume``, ``eval`` and ``analyze``
hold its lock (:func:`~deepfusion.model.runs.lock.folder_lock`), and the figure cache holds it for
each run it trains. Under the lock a new run needs a missing or empty folder (a folder holding
anything but its lock file is refused, so nothing there is overwritten), and a resume needs a
loadable checkpoint whose config agrees with the run's on every key that alters the trajectory
(:data:`TRAJECTORY_SECTIONS`, :data:`TRAJECTORY_KEYS`), unless ``force`` is given.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from deepfusion.errors import CheckpointError, ConfigError, DataError, RunError, warn
from deepfusion.model.runs import distributed as ddp_util
from deepfusion.model.runs.checkpoint import STALE, config_diffs, latest_checkpoint
from deepfusion.model.runs.config import Config, config_to_dict
from deepfusion.model.runs.layout import RunFolder, write_text_atomic
from deepfusion.model.runs.loading import with_legacy
from deepfusion.model.runs.lock import folder_lock, holds_lock
from deepfusion.model.runs.run_name import default_run_dir

# What a resume may not change without --force: these sections whole, and these train keys.
TRAJECTORY_SECTIONS = ("data", "model", "optim", "loss")
TRAJECTORY_KEYS = (("train", "batch_size"), ("train", "seed"), ("train", "attend"))


def _unwritable(folder: RunFolder, err: OSError) -> RunError:
    return RunError(
        f"cannot write to run folder {folder} ({err.strerror}); set train.out_dir or --out to a writable folder"
    )


def make_folder(folder: RunFolder, tries: int = 3) -> list[Path]:
    """Make the run folder and its missing parents, one level at a time; the folders this call made,
    outermost first (a level another process made first is not ours: FileExistsError). A parent
    removed meanwhile (a refused run cleaning up the parents it made) is made again."""
    for attempt in range(tries):
        made = []
        try:
            for level in (*reversed(folder.root.parents), folder.root):
                if level.is_dir():  # follows links and resolves "..", as the kernel will
                    continue
                try:
                    level.mkdir()
                    made.append(level)
                except FileExistsError:
                    if not level.is_dir():
                        raise
            return made
        except FileNotFoundError as err:
            if attempt == tries - 1:
                raise _unwritable(folder, err) from None
        except OSError as err:
            raise _unwritable(folder, err) from None
    raise AssertionError("unreachable: the last try returns or raises")


def remove_made(folders: list[Path]) -> None:
    """Remove folders :func:`make_folder` made, innermost first, while empty (another run may have
    been put in one meanwhile: it and those above it stay)."""
    for level in reversed(folders):
        try:
            level.rmdir()
        except FileNotFoundError:  # already gone
            continue
        except OSError:
            return


def undo_start(folder: RunFolder, made: list[Path]) -> None:
    """Bad input leaves nothing behind: the run folder a start made (while untouched) and the
    parents it made (while empty), as :func:`make_folder` reported them."""
    if made and made[-1] == folder.root:
        remove_if_untouched(folder)
        remove_made(made[:-1])  # stops at the first level still holding something


def _check_writable(folder: RunFolder) -> None:
    try:
        folder.checkpoints.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder.root, prefix=WRITE_TEST, delete=True) as f:
            f.write(b"ok")
            f.flush()
    except OSError as err:
        raise _unwritable(folder, err) from None


# What a start writes before its first checkpoint (besides an empty checkpoints/ and the lock).
BEFORE_FIRST_CHECKPOINT = ("config.yaml", "data.json", "metrics.jsonl")
WRITE_TEST = ".write-test."  # prefix of the probe file _check_writable creates and deletes


def _dead_start(folder: RunFolder, held: list[str]) -> list[Path] | None:
    """The files of a start that ended before its first checkpoint (killed, out of memory, NaN at
    step 1), when the folder holds nothing else; None when it holds anything more."""
    files = []
    for name in held:
        path = folder.root / name
        if path.is_symlink():
            return None
        if name == folder.checkpoints.name and path.is_dir():
            inside = list(path.iterdir())
            if any(p.is_symlink() or not p.is_file() or not any(p.match(pat) for pat in STALE) for p in inside):
                return None
            files += inside
        elif path.is_file() and (name in BEFORE_FIRST_CHECKPOINT or name.startswith(WRITE_TEST)):
            files.append(path)
        else:
            return None
    return files


def _check_new(folder: RunFolder) -> None:
    """A new run starts only in a missing or empty folder (its lock file and an empty checkpoints/
    aside), or in one holding only what a start that never reached its first checkpoint left: those
    files are removed, with a warning, so the same command starts the run again."""
    held = [
        n
        for n in folder.contents()
        if not (
            n == folder.checkpoints.name
            and folder.checkpoints.is_dir()
            and not folder.checkpoints.is_symlink()
            and not any(folder.checkpoints.iterdir())
        )
    ]
    if not held:
        return
    if folder.last.exists() or folder.prev.exists():
        raise RunError(
            f"{folder} already holds a run; continue it with --resume {folder} or set train.name to a new name"
        )
    dead = _dead_start(folder, held)
    if dead is not None:
        for path in dead:
            path.unlink(missing_ok=True)
        warn(
            f"{folder} held only what a start that never wrote a checkpoint leaves ({', '.join(held)}); "
            "removed it and starting again"
        )
        return
    shown = ", ".join(held[:3]) + (", ..." if len(held) > 3 else "")
    raise RunError(
        f"{folder} exists and is not empty ({shown}) but holds no checkpoint to resume; nothing there is "
        "overwritten: set train.name (or --out) to a new place, or move the folder away"
    )


def check_plain(folder: RunFolder) -> None:
    """A run folder and its checkpoints/ must be plain folders: nothing is written or deleted through a
    symbolic link, which could lead out of the run folder."""
    for path, what in ((folder.root, "run folder"), (folder.checkpoints, "checkpoints folder")):
        if path.is_symlink():
            raise RunError(
                f"{what} {path} is a symbolic link (to {os.readlink(path)}); runs write only into plain "
                f"folders: replace the link with the folder itself, or pass the folder it points to"
            )


def check_trajectory(ckpt: dict, cfg, folder: RunFolder, force: bool) -> None:
    """Refuse a resume whose config changes the run's trajectory, unless ``force`` (then warn)."""
    # keys the checkpoint predates count as what they meant then (config.LEGACY), not as changes
    diffs = config_diffs(
        with_legacy(ckpt["config"], cfg),
        config_to_dict(cfg),
        TRAJECTORY_SECTIONS,
        TRAJECTORY_KEYS,
        defaults=config_to_dict(Config()),
    )
    if not diffs:
        return
    if not force:
        raise CheckpointError(
            f"checkpoint in {folder} was written with a different config ({', '.join(diffs)} differ);"
            f" resume without overriding those keys or start a new run (--force resumes anyway, "
            "and the run no longer follows one trajectory)"
        )
    warn(f"resuming {folder} with changed {', '.join(diffs)} (--force); the run no longer follows one trajectory")


@contextmanager
def open_run_folder(cfg, run_dir, resume: bool, dinfo, force: bool = False):
    """The run folder of a new or resumed run, locked (rank 0) while the block runs; yields
    ``(folder, checkpoint or None)``.

    Checked under the lock: a new run needs a missing or empty folder; a resume needs a loadable
    checkpoint (an unreadable ``last.pt`` is set aside when ``prev.pt`` loads) whose trajectory
    keys match ``cfg`` unless ``force``.
    """
    folder = RunFolder(run_dir if run_dir is not None else default_run_dir(cfg))
    ckpt = None
    if resume and not folder.checkpoints.is_dir():
        raise RunError(
            f"cannot resume: {folder} has no {folder.checkpoints.name}/ folder; start a new run without --resume"
        )
    made = []  # what this start made (a resumed folder exists already)
    if dinfo.main:
        check_plain(folder)
        made = make_folder(folder)
    lock = folder_lock(folder.root, "resume" if resume else "train in") if dinfo.main else _nothing(folder)
    with lock:
        if resume:  # rank 0 alone (it holds the lock) sets an unreadable last.pt aside
            ckpt = latest_checkpoint(
                folder.checkpoints, resume=True, set_aside_bad=holds_lock(folder.root), quiet=not dinfo.main
            )
            check_trajectory(ckpt, cfg, folder, force)
        elif dinfo.main:
            _check_new(folder)
        if dinfo.main:
            check_plain(folder)  # again under the lock: nothing swapped a link in meanwhile
            _check_writable(folder)
        ddp_util.barrier()  # no rank sees the folder before it exists
        try:
            yield folder, ckpt
        except (ConfigError, DataError):
            undo_start(folder, made)
            raise


def remove_if_untouched(folder: RunFolder) -> None:
    """Remove a run folder holding only its lock file and an empty checkpoints/ (what a start makes
    before it reads its data)."""
    if folder.contents() not in ([], [folder.checkpoints.name]):
        return
    try:
        if folder.checkpoints.is_dir():
            folder.checkpoints.rmdir()  # only if empty
        folder.lock.unlink(missing_ok=True)
        folder.root.rmdir()
    except OSError:  # something appeared meanwhile: leave it
        pass


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
