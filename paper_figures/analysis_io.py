"""Reading a run's attention analysis for F1 and F2 (made by ``experiments.analyze`` when missing).

The figures need, from a run folder:

- ``analysis.json``: per layer (input order) and head, the same-class attention mass (self and
  positive views excluded), its chance level, the excess over chance with a bootstrap interval of
  the head-averaged excess, the S4 prediction of the mass, and the verdict;
- ``attention.npz``: the analysis batch's attention ``attention`` (L, H, M, M) with class labels
  ``labels`` (M,) and instance ids ``inst`` (M,), view-major as the head sees it.

Everything the figures read goes through :func:`load_layer_stats` and :func:`load_attention`, so
a change of the analysis format touches this module only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepfusion.errors import RunError

from deepfusion.model.runs.layout import RunFolder


@dataclass
class LayerStats:
    mass: np.ndarray  # (L, H) measured same-class mass
    chance: np.ndarray  # (L,) its level under uniform attention
    excess: np.ndarray  # (L,) head-averaged excess over chance
    excess_ci: np.ndarray  # (L, 2) bootstrap 95% interval of that excess
    predicted: np.ndarray  # (L,) S4 prediction of the head-averaged mass (nan where absent)
    verdict: str
    num_classes: int


def ensure_analysis(run_dir: str | Path, log=None) -> Path:
    """Analyse ``run_dir`` unless its analysis files are already there; returns the run folder."""
    run_dir = Path(run_dir)
    if not (RunFolder(run_dir).analysis.is_file() and RunFolder(run_dir).attention.is_file()):
        from deepfusion.experiments.analyze import analyze_run

        if log:
            log(f"  analysing attention of {run_dir.name}")
        analyze_run(run_dir)
    return run_dir


def _read(path: Path):
    try:
        if path.suffix == ".json":
            return json.loads(path.read_text())
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError) as err:
        raise RunError(f"cannot read {path}: {err}; rerun `deepfusion analyze {path.parent}`") from err


def _floats(x) -> np.ndarray:
    """JSON numbers (nulls for undefined values) as a float array with NaN for null."""
    if isinstance(x, list):
        return np.array([np.nan if v is None else v for v in x], dtype=float)
    return np.array(np.nan if x is None else x, dtype=float)


def _nanmean(x) -> float:
    v = np.atleast_1d(_floats(x))
    return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")


def load_layer_stats(run_dir: str | Path) -> LayerStats:
    """The per-layer statistics F2 plots, from ``analysis.json``."""
    path = RunFolder(run_dir).analysis
    a = _read(path)
    try:
        layers = a["layers"]
        mass = np.array([_floats(l["same_class_mass"]) for l in layers])
        chance = _floats([l["chance"] for l in layers])
        excess = _floats([l["excess_mean"] for l in layers])
        ci = np.array([_floats(l["excess_ci"]) for l in layers]).reshape(-1, 2)
        # one value per head; an undefined beta_eff fit leaves a head's prediction null, so average the rest
        pred = np.array([_nanmean(l.get("predicted_same_class_mass")) for l in layers])
        return LayerStats(mass.reshape(len(layers), -1), chance, excess, ci, pred,
                          str(a.get("verdict", "")), int(a["num_classes"]))
    except (KeyError, TypeError, ValueError) as err:
        raise RunError(f"{path} lacks the per-layer statistics the figures need ({err}); rerun the analysis") from err


def load_attention(run_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(attention (L, H, M, M), labels (M,))`` of the analysis batch, from ``attention.npz``."""
    path = RunFolder(run_dir).attention
    f = _read(path)
    if "attention" not in f or "labels" not in f:
        raise RunError(f"{path} must hold arrays 'attention' (L, H, M, M) and 'labels' (M,); rerun the analysis")
    attn, labels = np.asarray(f["attention"], dtype=float), np.asarray(f["labels"])
    if attn.ndim != 4 or attn.shape[-1] != attn.shape[-2] or labels.shape != (attn.shape[-1],):
        raise RunError(f"{path}: attention {attn.shape} and labels {labels.shape} do not describe one batch")
    return attn, labels
