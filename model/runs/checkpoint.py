"""Atomic, resumable checkpoints.

A checkpoint is written to a uniquely named temporary file in the target folder, flushed and
fsynced, then renamed over ``last.pt`` (``os.replace`` is atomic on POSIX), and the folder is
fsynced so the rename itself survives a power cut. The checkpoint it replaces is kept as
``prev.pt``, but only if it loads: a corrupt ``last.pt`` is set aside as ``last.corrupt-<time>.pt``
with a warning and never rotated over a good ``prev.pt``, so a crash or a failed write at any
instant leaves at least one loadable checkpoint. Everything stored is tensors, lists, dicts and
primitives, so loading works with ``torch.load(weights_only=True)`` and never runs pickled code;
every field is checked (:mod:`deepfusion.model.runs.checkpoint_fields`) before anything uses it.
"""

from __future__ import annotations

import errno
import functools
import os
import random
import secrets
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepfusion.errors import CheckpointError, first_line, warn
from deepfusion.model.runs.checkpoint_fields import check_fields
from deepfusion.model.runs.checksum import checksum_problem, with_checksum
from deepfusion.model.runs.layout import LAST, PREV, write_atomic

FORMAT = "deepfusion-checkpoint"
VERSION = 1


# ---------------------------------------------------------------- RNG states
def capture_rng() -> dict:
    """RNG states of torch (CPU and CUDA), numpy and python as weights_only-safe objects."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {"version": version, "state": list(py_state), "gauss": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    """Inverse of :func:`capture_rng` (CUDA states only when CUDA is present)."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------- writing
def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open folders; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(obj: Any, path: str | Path, before_replace=None) -> Path:
    """``torch.save`` to ``path`` through a fsynced temporary file and ``os.replace`` (``before_replace``:
    as in ``layout.write_atomic``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def save(f):
        try:
            torch.save(obj, f)
        except RuntimeError as err:  # torch reports a failed write (a full disk) as RuntimeError
            raise _write_failed(err, path) from None

    write_atomic(path, save, before_replace)
    _fsync_dir(path.parent)
    _remember_good(path)
    return path


def _write_failed(err: RuntimeError, path: Path) -> OSError:
    """torch's ``RuntimeError`` of a failed write ("unexpected pos ...") as an ``OSError`` naming the disk."""
    first = (str(err).strip().splitlines() or [type(err).__name__])[0][:120]
    try:
        free = shutil.disk_usage(path.parent).free / 2**20
        where = f"{free:.0f} MiB free on that disk"
    except OSError:
        where = "free space unknown"
    return OSError(errno.EIO, f"torch could not write the file: {first}; {where}", str(path))


# Checkpoints this process wrote or loaded, by (device, inode, size, mtime): known to load.
_GOOD: set[tuple] = set()


def _identity(path: Path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _remember_good(path: Path) -> None:
    ident = _identity(path)
    if ident is not None:
        _GOOD.add(ident)


def _loads(path: Path) -> str | None:
    """None if the checkpoint at ``path`` loads, else why not (one line)."""
    if _identity(path) in _GOOD:
        return None
    try:
        load_checkpoint(path)
    except CheckpointError as err:
        return str(err)
    return None


def _cause(message: str) -> str:
    """A loading error without its advice (the part before the first '; ')."""
    return message.split("; ")[0]


def set_aside(path: Path, reason: str) -> Path:
    """Rename an unreadable checkpoint to ``<stem>.corrupt-<time>.pt`` beside it, with a warning."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.stem}.corrupt-{stamp}-{secrets.token_hex(2)}.pt")
    os.replace(path, target)
    warn(f"{path} does not load ({_cause(reason)}); kept as {target.name} and not used")
    return target


STALE = (f".{LAST}.*.tmp", f".{PREV}.*.tmp", f".{PREV}.*.link")  # what a process killed mid-write leaves


def save_checkpoint(state: dict, folder: str | Path, *, clear_stale: bool = False) -> Path:
    """Write ``state`` as ``folder/last.pt``, keeping the previous one as ``prev.pt`` if it loads.

    ``last.pt`` exists at every instant unless it was unreadable: once the new state is written and
    fsynced to a temporary file, the old ``last.pt`` is hard-linked to ``prev.pt`` (atomically, via a
    unique temporary name) and the new one is renamed over it; a write that fails rotates nothing, so
    ``last.pt`` and ``prev.pt`` stay two checkpoints. A ``last.pt`` that does not load is set aside
    instead, so ``prev.pt`` stays the good one.
    ``clear_stale`` removes temporary files left by a killed write; only a caller that holds the
    run folder's lock (:mod:`deepfusion.model.runs.lock`) may pass it, as another process's live
    temporary file would otherwise be deleted under it.
    """
    folder = Path(folder)
    if folder.is_symlink():  # neither a write nor the cleanup below may follow it out of the run folder
        raise CheckpointError(
            f"checkpoints folder {folder} is a symbolic link (to {os.readlink(folder)}); checkpoints "
            "are written only into a plain folder: replace the link with a folder"
        )
    folder.mkdir(parents=True, exist_ok=True)
    if clear_stale:
        for pattern in STALE:
            for stale in folder.glob(pattern):
                stale.unlink(missing_ok=True)
    last = folder / LAST
    payload = with_checksum({"format": FORMAT, "version": VERSION, **state})
    rotate = None
    if last.exists():
        reason = _loads(last)
        if reason is not None:
            set_aside(last, reason)
        else:
            rotate = functools.partial(_rotate, last, folder / PREV)  # run once the new state is written
    return atomic_save(payload, last, rotate)


def _rotate(last: Path, prev: Path) -> None:
    """``prev`` becomes the (loadable) ``last``: a hard link under a unique name, then ``os.replace``."""
    tmp_prev = prev.with_name(f".{PREV}.{secrets.token_hex(6)}.link")
    try:
        os.link(last, tmp_prev)
        os.replace(tmp_prev, prev)
    except OSError:  # file systems without hard links: copy instead
        tmp_prev.unlink(missing_ok=True)
        atomic_save(torch.load(last, map_location="cpu", weights_only=True), prev)


# ---------------------------------------------------------------- reading
def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", *, resume: bool = False, mmap: bool = False
) -> dict:
    """Load and check a checkpoint; any problem raises a one-line :class:`CheckpointError`.

    The fields every use needs (model, config, step, finished) are checked always, the training
    state (optimizer, scheduler, RNG states, progress) with ``resume=True``. ``mmap`` maps the
    tensors instead of reading them (for a look at the progress fields only).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} not found; train first or point to a run folder with checkpoints/last.pt"
        )
    with open(path, "rb") as f:
        magic = f.read(4)
    if not zipfile.is_zipfile(path):
        if magic == b"PK\x03\x04":
            raise CheckpointError(
                f"checkpoint {path} is truncated (incomplete write); use {PREV} beside it or resume from an earlier run"
            )
        raise CheckpointError(
            f"{path} is not a deepfusion checkpoint (foreign or corrupt file); point to a run's checkpoints/{LAST}"
        )
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as err:  # corrupt members, CRC errors, unsafe pickles
        raise CheckpointError(
            f"checkpoint {path} is corrupt ({first_line(err)}); use {PREV} beside it or retrain"
        ) from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is a torch file but not a deepfusion checkpoint (foreign); point to a run's checkpoints/{LAST}"
        )
    if obj.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {obj.get('version')!r}, this code reads {VERSION}; "
            "retrain or use a matching release"
        )
    check_fields(obj, path, resume=resume)
    corrupt = None if mmap else checksum_problem(obj)  # mmap: a look at the progress fields only
    if corrupt:
        raise CheckpointError(
            f"checkpoint {path} is corrupt ({corrupt}: damaged on disk); use {PREV} beside it or retrain"
        )
    bad = nonfinite_tensor(obj["model"])
    if bad is not None:
        raise CheckpointError(
            f"checkpoint {path} holds non-finite weights ({bad} has NaN/inf; the update before it "
            f"was saved diverged); use {PREV} beside it or retrain with a lower optim.lr"
        )
    if not mmap:
        _remember_good(path)
    return obj


def nonfinite_tensor(state: dict) -> str | None:
    """The name of the first floating-point tensor of ``state`` holding NaN or inf; None when all are finite."""
    for name, value in state.items():
        if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return name
    return None


def latest_checkpoint(
    folder: str | Path, *, resume: bool = False, set_aside_bad: bool = False, quiet: bool = False, mmap: bool = False
) -> dict:
    """The newest loadable checkpoint in ``folder`` (``last.pt``, else ``prev.pt``); one whose weights
    are not finite does not load, so a diverged ``last.pt`` falls back to ``prev.pt``.

    Falling back to ``prev.pt`` is announced with a warning (unless ``quiet``); with
    ``set_aside_bad`` (only for the holder of the run folder's lock) the unreadable ``last.pt`` is
    renamed out of the way, so the next save cannot rotate it over the good ``prev.pt``.
    """
    folder = Path(folder)
    errors = []
    for name in (LAST, PREV):
        if (folder / name).is_file():
            try:
                ckpt = load_checkpoint(folder / name, resume=resume, mmap=mmap)
            except CheckpointError as err:
                errors.append(str(err))
                continue
            if errors and set_aside_bad:
                set_aside(folder / LAST, errors[0])
            elif errors and not quiet:
                warn(f"{folder / LAST} does not load ({_cause(errors[0])}); using {name} (step {ckpt['step']})")
            return ckpt
    if errors:
        raise CheckpointError(errors[0])
    raise CheckpointError(
        f"no checkpoint in {folder}: the run stopped before its first checkpoint; start it "
        "again with the same command without --resume (what it left is cleared)"
    )


def load_model_state(model: torch.nn.Module, state_dict: dict, source: str = "checkpoint") -> None:
    """``model.load_state_dict`` with mismatches reported as :class:`CheckpointError`."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    extra = [k for k in state_dict if k not in own]
    shapes = [k for k in own if k in state_dict and tuple(own[k].shape) != tuple(state_dict[k].shape)]
    if missing or extra or shapes:
        detail = (
            f"{len(missing)} missing, {len(extra)} unexpected, {len(shapes)} differently shaped tensors"
            f" (e.g. {(missing + extra + shapes)[0]})"
        )
        raise CheckpointError(
            f"{source} does not match the model built from the config: {detail}; use the run's own config.yaml"
        )
    model.load_state_dict(state_dict)


def config_diffs(saved: dict, current: dict, sections=("data", "model"), keys=(), defaults=None) -> list[str]:
    """``section.key`` names where ``saved`` and ``current`` differ, over whole ``sections`` and
    single ``keys`` (``(section, key)`` pairs). A key missing from ``saved`` (a config key added
    since the checkpoint was written) counts as its value in ``defaults``."""
    defaults = defaults or {}

    def value(cfg, s, k, fill):
        section = cfg.get(s) if isinstance(cfg.get(s), dict) else {}
        return section[k] if k in section else (defaults.get(s, {}).get(k) if fill else None)

    pairs = {(s, k) for s in sections for k in set(saved.get(s) or {}) | set(current.get(s) or {})} | set(keys)
    return sorted(f"{s}.{k}" for s, k in pairs if value(saved, s, k, True) != value(current, s, k, False))


def check_config_matches(
    saved: dict,
    current: dict,
    source: str = "checkpoint",
    sections=("data", "model"),
    keys=(),
    defaults=None,
    hint: str = "resume without overriding those keys or start a new run",
) -> None:
    """Raise if the parts of the config that define the model/data differ from the checkpoint's."""
    diffs = config_diffs(saved, current, sections, keys, defaults)
    if diffs:
        raise CheckpointError(f"{source} was written with a different config ({', '.join(diffs)} differ); {hint}")
