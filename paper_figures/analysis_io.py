"""Reading runs' attention analyses for the figures (made by ``experiments.analyze`` when missing).

The figures need, from a run folder:

- ``analysis.json``: the typed record ``experiments.record.RunAnalysis`` (per layer and head the
  same-class mass and its ratio to chance, the nulls, the S4 prediction, the one-seed verdict);
- ``attention.npz``: every analysis batch's attention ``attention`` (B, L, H, M, M) with class
  labels ``labels`` (B, M), instance ids and the untrained head's attention (the format of
  ``deepfusion analyze --attention``), view-major as the head sees it; the maps draw the first batch.

Several seeds of one config are judged together with :func:`pooled_analysis`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepfusion.errors import RunError
from deepfusion.model.runs.layout import RunFolder


def ensure_analysis(run_dir: str | Path, log=None):
    """The run's analysis record: the one in its folder, else a new analysis with the defaults.
    Records made with other analysis options are not mixed: ``pool`` refuses them by name."""
    from deepfusion.experiments.analyze import analyze_run, read_analysis

    run_dir = Path(run_dir)
    record = read_analysis(run_dir) if RunFolder(run_dir).attention.is_file() else None
    if record is None:
        if log:
            log(f"  analysing attention of {run_dir.name}")
        record = analyze_run(run_dir)
    return record


def pooled_analysis(run_dirs, log=None):
    """The seeds of one config judged together (``experiments.pooling``), each run analysed if needed."""
    from deepfusion.experiments.pooling import check_runs, pool, seedless_hash

    cfgs = check_runs(run_dirs)
    records = [ensure_analysis(d, log=log) for d in run_dirs]
    return pool(records, list(run_dirs), seedless_hash(cfgs[0]))


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
