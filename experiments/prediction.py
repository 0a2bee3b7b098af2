"""The S4 prediction of a layer's attention masses from its measured spread r and beta_eff.

S4 (softmax attention on cosines, d -> infinity): a token sees itself at cosine 1, every other
token of its class at s and every token of another class at rho / (1 + r^2), so

    a_self = e^beta / Z,  a_same = e^(beta s) / Z,  a_out = e^(beta rho / (1 + r^2)) / Z,
    Z = e^beta + (n_same - 1) e^(beta s) + n_out e^(beta rho / (1 + r^2)),

with n_same the visible tokens of the class (self included) and n_out those of other classes.
A spread measured around the batch's own class means has deviations summing to zero over the n
tokens of the class, which forces s = (1 - r^2/(n-1)) / (1 + r^2) (``centred=True``, the default;
``experiments.metrics.relative_spread`` makes this exact for the mean same-class cosine); independent
deviations give s = 1/(1 + r^2) (``centred=False``).
The theory has no notion of a positive view: the sample's other view counts as one more same-class
token. The prediction of the measured ``same_class_mass`` (self and positives excluded) is therefore
(same-class tokens that are not views of the sample) * a_same, and that of ``block_mass`` is the
theory's m = a_self + (n_same - 1) a_same. Visible counts are taken row by row, so masked scopes
(per-view, positive pair hidden) are predicted with the same formula.

``BACKEND`` picks where the cosines come from: ``theory.fusion.cosines`` ("theory", the default) or
this module's copy of the formula ("local"); the tests check that both agree with the theory's
``block_mass`` on a fully visible balanced batch.
"""

from __future__ import annotations

import numpy as np

from deepfusion.errors import DataError
from deepfusion.theory import fusion

BACKEND = "theory"  # "theory" | "local"


def _local_cosines(r, n, rho, centred):
    r2 = np.asarray(r, dtype=float) ** 2
    base = 1.0 / (1.0 + r2)
    same = (1.0 - r2 / np.maximum(np.asarray(n, dtype=float) - 1.0, 1.0)) * base if centred else base
    return same, np.asarray(rho, dtype=float) * base


def cosines(r, n, rho, centred: bool = True):
    """S4: (same-class, cross-class) cosine at spread r for classes of n tokens in the batch."""
    if BACKEND == "theory":
        return fusion.cosines(r, n, rho, centred=centred)
    if BACKEND != "local":
        raise DataError(f"unknown S4 backend {BACKEND!r}; use 'theory' or 'local'")
    return _local_cosines(r, n, rho, centred)


def block_weights(r, beta, n_class, n_same, n_out, rho, centred: bool = True):
    """(a_self, a_same, a_out) of S4 with explicit visible counts (self included in n_same) for
    classes of n_class tokens in the batch; arrays broadcast."""
    same, cross = cosines(r, n_class, rho, centred)
    beta = np.asarray(beta, dtype=float)
    # Shift by the self logit beta, the largest whenever beta >= 0 (cosines are at most 1).
    w_same, w_out = np.exp(beta * (same - 1.0)), np.exp(beta * (cross - 1.0))
    Z = 1.0 + (n_same - 1) * w_same + n_out * w_out
    return 1.0 / Z, w_same / Z, w_out / Z


def m_star(C: int, beta, rho=None):
    """S4's limit m* = 1 / (1 + (C - 1) exp(-beta (1 - rho))) of the block mass as r -> 0, with n
    tokens per class seen in full (C classes); rho defaults to the simplex ETF's -1/(C-1)."""
    rho = -1.0 / (C - 1) if rho is None else rho
    return 1.0 / (1.0 + (C - 1) * np.exp(-np.asarray(beta) * (1.0 - rho)))


def predict_masses(r, beta, rho, y, inst, visible=None, centred: bool = True) -> dict[str, np.ndarray]:
    """S4 prediction of the attention masses of experiments.metrics for one batch.

    ``r`` (from ``relative_spread``), ``beta`` (from ``fit_beta_eff``) and ``rho`` (from
    ``class_mean_cosine``) may be arrays that broadcast (one value per head, say); the visible counts
    are taken row by row from ``y``, ``inst`` and ``visible`` and the prediction averaged over rows,
    so uneven classes and masked scopes are handled exactly. Returns arrays for ``same_class_mass``,
    ``block_mass``, ``self_mass`` and ``positive_mass`` and the weights a_self, a_same, a_out (the
    latter averaged over rows).
    """
    y, inst = np.asarray(y), np.asarray(inst)
    M = y.shape[0]
    vis = np.ones((M, M), dtype=bool) if visible is None else np.asarray(visible, dtype=bool)
    if inst.shape != (M,) or vis.shape != (M, M):
        raise DataError("labels, instance ids and visible mask must describe the same batch of M tokens")
    eye = np.eye(M, dtype=bool)
    same = (y[:, None] == y[None, :]) & vis
    pos = (inst[:, None] == inst[None, :]) & ~eye & vis
    if not np.all(np.diagonal(vis)):
        raise DataError("S4 assumes every token sees itself; the visible mask hides the diagonal")
    n_class = (y[:, None] == y[None, :]).sum(1)  # (M,) tokens of the row's class in the batch
    n_same = same.sum(1)  # (M,) visible ones, self included
    n_pos = pos.sum(1)
    n_out = (vis & ~same).sum(1)
    shape = np.broadcast(np.asarray(r), np.asarray(beta), np.asarray(rho)).shape
    r_, b_, p_ = (np.asarray(v, dtype=np.float64)[..., None] for v in np.broadcast_arrays(r, beta, rho))
    a_self, a_same, a_out = block_weights(r_, b_, n_class, n_same, n_out, p_, centred)
    out = {
        "same_class_mass": ((n_same - 1 - n_pos) * a_same).mean(-1),
        "block_mass": (a_self + (n_same - 1) * a_same).mean(-1),
        "self_mass": np.broadcast_to(a_self, shape + (M,)).mean(-1),
        "positive_mass": (n_pos * a_same).mean(-1),
        "a_self": np.broadcast_to(a_self, shape + (M,)).mean(-1),
        "a_same": np.broadcast_to(a_same, shape + (M,)).mean(-1),
        "a_out": np.broadcast_to(a_out, shape + (M,)).mean(-1),
    }
    return {k: np.asarray(v).reshape(shape) for k, v in out.items()}
