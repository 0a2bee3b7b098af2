"""The one place that names the files of a run folder, and how the project writes them.

A run folder ``<train.out_dir>/<train.name or preset-hash>/`` holds::

    config.yaml          the resolved config
    metrics.jsonl        one JSON object per logged step
    checkpoints/last.pt  the newest checkpoint (checkpoints/prev.pt the one before)
    eval.json            the final evaluation
    data.json            how the data was prepared: standardisation statistics, original labels
    analysis.json        the attention analysis (deepfusion analyze)
    attention.npz        the first analysis batch's attention, for the attention-map figure
    .lock                held by the process that works in the folder

Every JSON the project writes goes through :func:`write_text_atomic`: a new temporary file in the
same folder, then ``os.replace`` over the target, so a crash leaves the old file or the new one,
never half of one, and a symlink standing at the target is replaced, not followed.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

CONFIG, METRICS, EVAL, ANALYSIS, ATTENTION, LOCK, DATA = (
    "config.yaml", "metrics.jsonl", "eval.json", "analysis.json", "attention.npz", ".lock", "data.json")
CHECKPOINTS, LAST, PREV = "checkpoints", "last.pt", "prev.pt"


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

    def __str__(self) -> str:
        return str(self.root)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a uniquely named temporary file and ``os.replace``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
