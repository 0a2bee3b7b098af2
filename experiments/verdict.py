"""The pre-registered Deep Fusion verdict.

The rule below was fixed before any trained head was analysed and is stored verbatim in every
analysis JSON (``RULE``), so that a result can be checked against the rule it was judged by.

Deep Fusion (paper claim 2) is said to be **observed** when the excess same-class attention mass
over chance (``experiments.metrics.excess_same_class_mass``: self and positive views excluded) rises
with depth, i.e. all three of:

1. the Spearman rank correlation between layer index and the layer's mean excess is > 0;
2. its bootstrap 95% percentile interval, resampling analysis units, has lower end > 0;
3. the last layer's mean excess is above the first layer's.

Otherwise it is **not observed**. Units are analysis batches (each averaged over heads), resampled
jointly across layers because a batch is the same at every layer; with a single batch, the units are
the heads, resampled independently per layer because head h of one layer is unrelated to head h of
the next. A layer sequence with no variation has Spearman correlation 0. The per-layer gap between
the measured mass and the S4 prediction is reported beside the verdict and does not enter it.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from deepfusion.errors import DataError

RULE = (
    "Deep Fusion observed iff (1) the Spearman rank correlation between layer index and the "
    "layer-mean excess same-class attention mass over chance (self and positive views excluded) is "
    "> 0, (2) the lower end of its bootstrap 95% percentile interval is > 0, and (3) the last "
    "layer's mean excess exceeds the first layer's; otherwise not observed. Bootstrap units: "
    "analysis batches (head-averaged), resampled jointly across layers; with one batch, heads, "
    "resampled independently per layer. A constant layer sequence has Spearman correlation 0. "
    "The gap between measured and S4-predicted mass is reported and does not enter the verdict."
)
OBSERVED = "Deep Fusion observed"
NOT_OBSERVED = "Deep Fusion not observed"


def spearman_with_depth(layer_values) -> np.ndarray:
    """Spearman correlation of each row of ``layer_values`` (..., L) with the layer index 0..L-1.

    Ties get average ranks; a row with no variation gives 0 (no rise), not NaN."""
    v = np.asarray(layer_values, dtype=np.float64)
    L = v.shape[-1]
    rv = rankdata(v, axis=-1)
    rv = rv - rv.mean(-1, keepdims=True)
    ri = np.arange(L) - (L - 1) / 2.0
    den = np.sqrt((rv**2).sum(-1) * (ri**2).sum())
    num = (rv * ri).sum(-1)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def bootstrap_mean_ci(values, n_boot: int = 2000, seed: int = 0) -> list[float]:
    """Percentile 95% bootstrap interval of the mean of ``values`` (units,); one unit gives [v, v]."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise DataError("no values to bootstrap")
    means = v[np.random.default_rng(seed).integers(0, v.size, size=(n_boot, v.size))].mean(1)
    return [float(q) for q in np.quantile(means, [0.025, 0.975])]


def _bootstrap_layer_means(excess: np.ndarray, paired: bool, n_boot: int, rng) -> np.ndarray:
    U, L = excess.shape
    if paired:
        idx = rng.integers(0, U, size=(n_boot, U))
        return excess[idx].mean(1)  # (n_boot, L)
    idx = rng.integers(0, U, size=(n_boot, U, L))
    return np.take_along_axis(excess[None].repeat(n_boot, 0), idx, axis=1).mean(1)


def deep_fusion_verdict(excess, paired: bool = True, n_boot: int = 2000, seed: int = 0,
                        measured=None, predicted=None) -> dict:
    """Apply ``RULE`` to ``excess`` of shape (units, layers); return a JSON-ready record.

    ``paired=True`` when units are batches (same unit at every layer), False for heads.
    ``measured`` and ``predicted`` (layers,), if given, add the per-layer gap measured - predicted.
    """
    excess = np.asarray(excess, dtype=np.float64)
    if excess.ndim == 2 and excess.shape[0] >= 1 and excess.shape[1] == 1:
        raise DataError("the Deep Fusion verdict compares layers, and this head has one attention layer; "
                        "train with model.depth >= 2")
    if excess.ndim != 2 or excess.shape[1] < 2 or excess.shape[0] < 1:
        raise DataError(f"excess has shape {excess.shape}; expected (units >= 1, layers >= 2)")
    if not np.all(np.isfinite(excess)):
        raise DataError("excess same-class mass has non-finite entries; check the attention captured")
    if n_boot < 100:
        raise DataError(f"n_boot={n_boot} is too few for a 95% interval; use at least 100")
    layer_mean = excess.mean(0)
    rho = float(spearman_with_depth(layer_mean))
    boot = spearman_with_depth(_bootstrap_layer_means(excess, paired, n_boot, np.random.default_rng(seed)))
    lo, hi = (float(q) for q in np.quantile(boot, [0.025, 0.975]))
    rise = float(layer_mean[-1] - layer_mean[0])
    conditions = {"spearman_positive": rho > 0, "ci_lower_positive": lo > 0, "last_above_first": rise > 0}
    observed = all(conditions.values())
    record = {
        "rule": RULE,
        "verdict": OBSERVED if observed else NOT_OBSERVED,
        "observed": observed,
        "conditions": conditions,
        "spearman": rho,
        "spearman_ci95": [lo, hi],
        "last_minus_first": rise,
        "layer_mean_excess": layer_mean.tolist(),
        "units": int(excess.shape[0]),
        "paired": bool(paired),
        "n_boot": int(n_boot),
        "seed": int(seed),
    }
    if measured is not None and predicted is not None:
        measured, predicted = np.asarray(measured, float), np.asarray(predicted, float)
        if measured.shape != predicted.shape or measured.shape != layer_mean.shape:
            raise DataError("measured and predicted masses need one value per layer, like excess")
        gap = measured - predicted
        record["gap_measured_minus_predicted"] = gap.tolist()
        record["mean_abs_gap"] = float(np.abs(gap).mean())
    return record
