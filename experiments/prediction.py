"""The S4 prediction of a layer's attention masses from its measured spread r and beta_eff.

S4 (softmax attention on cosines, d -> infinity): a token sees itself at cosine 1, every other
token of its class at s = 1/(1 + r^2) and every token of another class at rho * s, so

    a_self = e^beta / Z,  a_same = e^(beta s) / Z,  a_out = e^(beta rho s) / Z,
    Z = e^beta + (n_same - 1) e^(beta s) + n_out e^(beta rho s),

with n_same the visible tokens of the class (self included) and n_out those of other classes.
The theory has no notion of a positive view: the sample's other view counts as one more same-class
token. The prediction of the measured ``same_class_mass`` (self and positives excluded) is therefore
(same-class tokens that are not views of the sample) * a_same, and that of ``block_mass`` is the
theory's m = a_self + (n_same - 1) a_same.

``BACKEND`` switches between this module's closed form ("local") and the one in ``theory.fusion``
("theory"), so the experiments use the theory's own code once it is there; the tests check that
the two agree.
"""

from __future__ import annotations

import numpy as np

from deepfusion.errors import DataError

BACKEND = "local"  # "local" | "theory"


def _local_block_weights(r, beta, n_same, n_out, rho):
    """S4 closed form with explicit visible counts; arrays broadcast."""
    r, beta, n_same, n_out, rho = np.broadcast_arrays(*map(np.asarray, (r, beta, n_same, n_out, rho)))
    s = 1.0 / (1.0 + r**2)
    # Subtract the largest exponent before exponentiating: beta can be large for sharp heads.
    e_self, e_same, e_out = beta * 1.0, beta * s, beta * rho * s
    top = np.maximum(np.maximum(e_self, e_same), e_out)
    w_self, w_same, w_out = np.exp(e_self - top), np.exp(e_same - top), np.exp(e_out - top)
    Z = w_self + (n_same - 1) * w_same + n_out * w_out
    return w_self / Z, w_same / Z, w_out / Z


def _theory_block_weights(r, beta, n_same, n_out, rho):
    """Adapter to theory.fusion's S4 closed form for a balanced batch of C classes of n tokens."""
    from theory import fusion  # imported late: the theory package may still be growing

    n = np.asarray(n_same)
    C = (np.asarray(n_out) + n) / n
    if not np.allclose(C, np.round(C)):
        raise DataError("the theory's S4 form needs a balanced batch (visible tokens = C * n)")
    return fusion.softmax_block_weights(r=r, beta=beta, C=np.round(C).astype(int), n=n, rho=rho)


def block_weights(r, beta, n_same, n_out, rho):
    """(a_self, a_same, a_out) of S4 for spread r, inverse temperature beta, visible counts and rho."""
    if BACKEND == "theory":
        return _theory_block_weights(r, beta, n_same, n_out, rho)
    if BACKEND != "local":
        raise DataError(f"unknown S4 backend {BACKEND!r}; use 'local' or 'theory'")
    return _local_block_weights(r, beta, n_same, n_out, rho)


def m_star(C: int, beta, rho=None):
    """S4's limit m* = 1 / (1 + (C - 1) exp(-beta (1 - rho))) of the block mass as r -> 0, with n
    tokens per class seen in full (C classes); rho defaults to the simplex ETF's -1/(C-1)."""
    rho = -1.0 / (C - 1) if rho is None else rho
    return 1.0 / (1.0 + (C - 1) * np.exp(-np.asarray(beta) * (1.0 - rho)))


def predict_masses(r, beta, rho, y, inst, visible=None) -> dict[str, np.ndarray]:
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
    n_same = same.sum(1)  # (M,), self included
    n_pos = pos.sum(1)
    n_out = (vis & ~same).sum(1)
    shape = np.broadcast(np.asarray(r), np.asarray(beta), np.asarray(rho)).shape
    r_, b_, p_ = (np.asarray(v, dtype=np.float64)[..., None] for v in np.broadcast_arrays(r, beta, rho))
    a_self, a_same, a_out = block_weights(r_, b_, n_same, n_out, p_)
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
