"""Atomic, resumable checkpoints.

A checkpoint is written to a temporary file in the target folder, flushed and
fsynced, then renamed over ``last.pt`` (``os.replace`` is atomic on POSIX), and the
folder is fsynced so the rename itself survives a power cut. The checkpoint it
replaces is kept as ``prev.pt``, so a crash at any instant leaves at least one
complete checkpoint. Everything stored is tensors, lists, dicts and primitives,
so loading works with ``torch.load(weights_only=True)`` and never runs pickled code.
"""

from __future__ import annotations

import os
import random
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepfusion.errors import CheckpointError

FORMAT = "deepfusion-checkpoint"
VERSION = 1
LAST, PREV = "last.pt", "prev.pt"


# ---------------------------------------------------------------- RNG states
def capture_rng() -> dict:
    """RNG states of torch (CPU and CUDA), numpy and python as weights_only-safe objects."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
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


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to ``path`` through a fsynced temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def save_checkpoint(state: dict, folder: str | Path) -> Path:
    """Write ``state`` as ``folder/last.pt``, keeping the previous one as ``prev.pt``.

    ``last.pt`` exists at every instant: the old file is hard-linked to ``prev.pt``
    (atomically, via a temporary name) before the new one is renamed over it.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(f".{LAST}.*.tmp"):  # left by a process killed mid-write; one writer per folder
        stale.unlink(missing_ok=True)
    last = folder / LAST
    payload = {"format": FORMAT, "version": VERSION, **state}
    if last.exists():
        tmp_prev = folder / f".{PREV}.link"
        tmp_prev.unlink(missing_ok=True)
        try:
            os.link(last, tmp_prev)
            os.replace(tmp_prev, folder / PREV)
        except OSError:  # file systems without hard links: copy instead
            atomic_save(torch.load(last, map_location="cpu", weights_only=True), folder / PREV)
    return atomic_save(payload, last)


# ---------------------------------------------------------------- reading
def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load and check a checkpoint; any problem raises a one-line :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; train first or point to a run folder with checkpoints/last.pt")
    with open(path, "rb") as f:
        magic = f.read(4)
    if not zipfile.is_zipfile(path):
        if magic == b"PK\x03\x04":
            raise CheckpointError(
                f"checkpoint {path} is truncated (incomplete write); use {PREV} beside it or resume from an earlier run"
            )
        raise CheckpointError(f"{path} is not a deepfusion checkpoint (foreign or corrupt file); point to a run's checkpoints/{LAST}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # corrupt members, CRC errors, unsafe pickles
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint {path} is corrupt ({first[:120]}); use {PREV} beside it or retrain") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a torch file but not a deepfusion checkpoint (foreign); point to a run's checkpoints/{LAST}")
    if obj.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {obj.get('version')!r}, this code reads {VERSION}; retrain or use a matching release"
        )
    return obj


def latest_checkpoint(folder: str | Path) -> dict:
    """The newest loadable checkpoint in ``folder`` (``last.pt``, else ``prev.pt``)."""
    folder = Path(folder)
    errors = []
    for name in (LAST, PREV):
        if (folder / name).is_file():
            try:
                return load_checkpoint(folder / name)
            except CheckpointError as err:
                errors.append(str(err))
    if errors:
        raise CheckpointError(errors[0])
    raise CheckpointError(f"no checkpoint in {folder}; the run never finished a step, start it again without --resume")


def load_model_state(model: torch.nn.Module, state_dict: dict, source: str = "checkpoint") -> None:
    """``model.load_state_dict`` with mismatches reported as :class:`CheckpointError`."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    extra = [k for k in state_dict if k not in own]
    shapes = [k for k in own if k in state_dict and tuple(own[k].shape) != tuple(state_dict[k].shape)]
    if missing or extra or shapes:
        detail = (f"{len(missing)} missing, {len(extra)} unexpected, {len(shapes)} differently shaped tensors"
                  f" (e.g. {(missing + extra + shapes)[0]})")
        raise CheckpointError(f"{source} does not match the model built from the config: {detail}; use the run's own config.yaml")
    model.load_state_dict(state_dict)


def check_config_matches(saved: dict, current: dict, source: str = "checkpoint", sections=("data", "model")) -> None:
    """Raise if the parts of the config that define the model/data differ from the checkpoint's."""
    diffs = [f"{s}.{k}" for s in sections for k in set(saved.get(s, {})) | set(current.get(s, {}))
             if saved.get(s, {}).get(k) != current.get(s, {}).get(k)]
    if diffs:
        raise CheckpointError(
            f"{source} was written with a different config ({', '.join(sorted(diffs))} differ); "
            "resume without overriding those keys or start a new run"
        )
