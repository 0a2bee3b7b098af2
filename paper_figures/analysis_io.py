"""The attention maps' input: one analysis batch from a run folder's ``attention.npz``.

``attention.npz`` (written by ``experiments.analyze.analyze_run``, in the format of ``deepfusion
analyze --attention``) holds every analysis batch's attention (B, L, H, M, M), class labels (B, M),
instance ids and the untrained head's attention, view-major as the head sees it; the maps draw the
first batch. The analysis records themselves come from ``experiments.studies.deep_fusion``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepfusion.errors import RunError
from deepfusion.model.runs.layout import RunFolder


def _read(path: Path):
    try:
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError) as err:
        raise RunError(f"cannot read {path}: {err}; rerun `deepfusion analyze --run {path.parent} --force`") from err


def load_attention(run_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(attention (L, H, M, M), labels (M,))`` of the analysis batch, from ``attention.npz``."""
    path = RunFolder(run_dir).attention
    f = _read(path)
    if "attention" not in f or "labels" not in f:
        raise RunError(f"{path} must hold arrays 'attention' (L, H, M, M) and 'labels' (M,); rerun the analysis")
    attn, labels = np.asarray(f["attention"], dtype=float), np.asarray(f["labels"])
    if attn.ndim == 5 and labels.ndim == 2:  # every batch: the maps draw the first
        attn, labels = attn[0], labels[0]
    if attn.ndim != 4 or attn.shape[-1] != attn.shape[-2] or labels.shape != (attn.shape[-1],):
        raise RunError(f"{path}: attention {attn.shape} and labels {labels.shape} do not describe one batch")
    return attn, labels
