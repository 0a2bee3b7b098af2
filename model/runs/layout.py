"""The one place that names the files of a run folder, and how the project writes them.

A run folder ``<train.out_dir>/<train.name>/`` (without a name, ``<data>-<head>-s<seed>-<key>``:
:mod:`~deepfusion.model.runs.run_name`) holds::

    config.yaml          the resolved config
    metrics.jsonl        one JSON object per logged step
    checkpoints/last.pt  the newest checkpoint (checkpoints/prev.pt the one before)
    eval.json            the final evaluation
    data.json            how the data was prepared: standardisation statistics, original labels
    analysis.json        the attention analysis (deepfusion analyze)
    attention.npz        the first analysis batch's attention, for the attention-map figure
    tensorboard/         TensorBoard event files (train.log=tensorboard): loss, lr, step rate, evaluation
    .lock                held by the process that works in the folder

Every JSON the project writes goes through :func:`write_text_atomic`: a new, uniquely named
temporary file in the same folder (created with ``O_EXCL``, so nothing standing there is
followed), then ``os.replace`` over the target, so a crash leaves the old file or the new one,
never half of one, and a symlink standing at the target is replaced, not followed. The one file
appended to, ``metrics.jsonl``, is opened with ``O_NOFOLLOW`` (:func:`open_append`).
"""

from __future__ import annotations

import errno
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from deepfusion.errors import RunError

CONFIG, METRICS, EVAL, ANALYSIS, ATTENTION, LOCK, DATA = (
    "config.yaml",
    "metrics.jsonl",
    "eval.json",
    "analysis.json",
    "attention.npz",
    ".lock",
    "data.json",
)
CHECKPOINTS, LAST, PREV = "checkpoints", "last.pt", "prev.pt"
TENSORBOARD = "tensorboard"


@dataclass(frozen=True)
class RunFolder:
    """Paths of one run folder's files (nothing is read or created here)."""

    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def metrics(self) -> Path:
        return self.root / METRICS

    @property
    def eval(self) -> Path:
        return self.root / EVAL

    @property
    def data(self) -> Path:
        return self.root / DATA

    @property
    def tensorboard(self) -> Path:
        return self.root / TENSORBOARD

    @property
    def analysis(self) -> Path:
        return self.root / ANALYSIS

    @property
    def attention(self) -> Path:
        return self.root / ATTENTION

    @property
    def lock(self) -> Path:
        return self.root / LOCK

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    @property
    def last(self) -> Path:
        return self.checkpoints / LAST

    @property
    def prev(self) -> Path:
        return self.checkpoints / PREV

    @property
    def name(self) -> str:
        return self.root.name

    def contents(self) -> list[str]:
        """Names in the folder besides its lock file, sorted (empty when the folder is missing)."""
        try:
            return sorted(p.name for p in self.root.iterdir() if p.name != LOCK)
        except (FileNotFoundError, NotADirectoryError):
            return []

    def __str__(self) -> str:
        return str(self.root)


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new, uniquely named file ``.<name>.<random>.tmp`` beside ``path``, open for writing.

    Created with ``O_CREAT | O_EXCL`` (nothing standing there is followed or reused) and mode 0o666,
    so the process's umask gives it the mode ``open()`` would, as mkstemp's 0o600 would hide results;
    the umask is read by the kernel, never set here."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused temporary name beside the file", str(path))


def write_atomic(path: str | Path, write, before_replace=None) -> Path:
    """Call ``write(f)`` on a uniquely named temporary file beside ``path`` (binary, fsynced), then
    ``before_replace()`` if given (it runs only once the new content is safely written), then
    ``os.replace`` it onto ``path``; the temporary file is removed if anything fails."""
    path = Path(path)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a uniquely named temporary file and ``os.replace``."""
    return write_atomic(path, lambda f: f.write(data))


def open_append(path: str | Path):
    """``path`` opened for appending text, refusing to follow a symbolic link standing there."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise RunError(
                f"{path} is a symbolic link; a run folder's files are written in place, so replace it "
                "with a plain file or remove it"
            ) from None
        raise
    return os.fdopen(fd, "a")


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode())


def write_json(path: str | Path, obj, indent: int | None = 2) -> Path:
    """``obj`` as JSON (NaN and infinities as null, numpy scalars as numbers), written atomically."""
    return write_text_atomic(path, json.dumps(_clean(obj), indent=indent, default=_default) + "\n")


def _default(obj):
    # json calls this only for what it cannot encode itself: numpy scalars and arrays, tensors
    if hasattr(obj, "tolist"):
        return _clean(obj.tolist())
    return str(obj)


def _clean(obj):
    """JSON-safe values: non-finite floats (an undefined fit) become null instead of invalid JSON."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None
    return obj
