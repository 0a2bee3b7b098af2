"""Measurements on trained attention and tokens (paper-notes section 5), as pure numpy functions.

Conventions shared by every function:

- ``A`` is an attention matrix ``(M, M)`` whose rows sum to 1; attention functions also accept a
  stack ``(..., M, M)`` (heads, layers) and then return one value per matrix, shape ``(...)``.
  The single matrix is the reference; a stack gives exactly the per-matrix values.
- ``y`` (M,) are class labels, ``inst`` (M,) instance ids: two tokens with the same id are views of
  the same sample (view-major batches have ``inst = arange(M) % N``). Only equality of ids and of
  labels is used, never their values or order.
- ``visible`` (M, M) boolean: which tokens a row may attend to (the head's scope); default all.
  Chance levels are those of uniform attention over the visible tokens of each row.
- ``X`` (M, D) are tokens.

Order: no statistic here depends on row/column order or on the names of classes. Permuting the
batch consistently (``A -> P A P^T``, ``y -> P y``, ``inst -> P inst``, ``X -> P X``,
``visible -> P visible P^T``) or relabelling classes leaves every value unchanged; the tests check it.
"""

from __future__ import annotations

import numpy as np

from deepfusion.errors import DataError

ROW_SUM_TOL = 1e-4  # float32 softmax rows sum to 1 within ~1e-6; allow slack for half precision


# ----------------------------------------------------------------------------- validation


def _labels(y, M: int, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.shape != (M,):
        raise DataError(f"{name} has shape {y.shape}, expected ({M},) to match the attention matrix")
    return y


def _attention(A) -> np.ndarray:
    A = np.asarray(A, dtype=np.float64)
    if A.ndim < 2 or A.shape[-1] != A.shape[-2]:
        raise DataError(f"attention has shape {A.shape}; expected (..., M, M) with square last axes")
    if not np.all(np.isfinite(A)) or np.any(A < 0):
        raise DataError("attention has negative or non-finite entries; pass softmax weights, not logits")
    if np.max(np.abs(A.sum(-1) - 1.0)) > ROW_SUM_TOL:
        raise DataError("attention rows do not sum to 1; pass row-normalised weights (softmax over keys)")
    return A


def _visible(visible, M: int) -> np.ndarray:
    if visible is None:
        return np.ones((M, M), dtype=bool)
    visible = np.asarray(visible, dtype=bool)
    if visible.shape != (M, M):
        raise DataError(f"visible mask has shape {visible.shape}, expected ({M}, {M})")
    if not visible.any(axis=1).all():
        raise DataError("visible mask has a row with no visible token; every token must see something")
    return visible


PAIRS = ("self", "positive", "same_other", "other_class")  # the four disjoint kinds of token pair


def pair_masks(y, inst, visible=None) -> dict[str, np.ndarray]:
    """Boolean (M, M) masks of the token pairs each mass sums over, each restricted to visible pairs.

    ``self`` (i = j), ``positive`` (another view of the same sample), ``same_other`` (same class,
    neither self nor a view of self: the Deep Fusion pairs), ``other_class``; these four (``PAIRS``)
    split the visible pairs. ``block`` is the whole class block (self and positives included) and
    ``visible`` the checked scope itself."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(f"labels y have shape {y.shape}; expected (M,), one label per token")
    return _masks(y, inst, y.shape[0], visible)


def _masks(y, inst, M: int, visible) -> dict[str, np.ndarray]:
    y = _labels(y, M, "labels y")
    inst = _labels(inst, M, "instance ids inst")
    vis = _visible(visible, M)
    eye = np.eye(M, dtype=bool)
    same_class = y[:, None] == y[None, :]
    same_inst = inst[:, None] == inst[None, :]
    return {
        "visible": vis,
        "self": eye & vis,
        "positive": same_inst & ~eye & vis,
        "same_other": same_class & ~same_inst & vis,  # same class, neither self nor a view of self
        "other_class": ~same_class & vis,
        "block": same_class & vis,  # the whole class block, self and positives included
    }


def _row_mass(A: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return (A * mask).sum(-1).mean(-1)


def _chance(mask: np.ndarray, vis: np.ndarray) -> float:
    return float((mask.sum(1) / vis.sum(1)).mean())


# ----------------------------------------------------------------------------- attention masses


def same_class_mass(A, y, inst, visible=None):
    """Same-class attention mass m = mean_i sum_{j != i, inst_j != inst_i, y_j = y_i} A_ij.

    The Deep Fusion quantity (paper claim 2, compared with S4/S5): the mass a token puts on other
    samples of its class, its own views excluded so that finding the positive pair does not count.
    Chance: ``same_class_chance``. Rises towards 1 - (self and positive mass) as classes fuse.
    """
    A = _attention(A)
    return _row_mass(A, _masks(y, inst, A.shape[-1], visible)["same_other"])


def same_class_chance(y, inst, visible=None) -> float:
    """Chance level of ``same_class_mass``: its value under uniform attention over the visible tokens.

    For a balanced two-view batch of C classes, k samples each, seeing both views: (2k - 2) / (2Ck).
    Fixed by the batch and scope; does not move with training.
    """
    y = np.asarray(y)
    m = _masks(y, inst, y.shape[0], visible)
    return _chance(m["same_other"], m["visible"])


def self_mass(A, y=None, inst=None, visible=None):
    """Self mass mean_i A_ii. Chance 1 / (visible tokens per row). High self mass stalls fusion
    (the S5 "self-attention trap"); it falls as fusion proceeds. ``y``/``inst`` are accepted for a
    uniform call signature and not used."""
    A = _attention(A)
    return np.diagonal(A, axis1=-2, axis2=-1).mean(-1)


def positive_mass(A, y, inst, visible=None):
    """Positive-view mass mean_i sum_{j != i, inst_j = inst_i} A_ij: attention to the token's own
    other view(s), the shortcut a cross-batch head can take (paper-notes section 3). Chance
    (V - 1) / (visible tokens per row) for V visible views; no direction predicted by the theory."""
    A = _attention(A)
    return _row_mass(A, _masks(y, inst, A.shape[-1], visible)["positive"])


def positive_chance(y, inst, visible=None) -> float:
    """Chance level of ``positive_mass`` under uniform attention over the visible tokens."""
    y = np.asarray(y)
    m = _masks(y, inst, y.shape[0], visible)
    return _chance(m["positive"], m["visible"])


def block_mass(A, y, inst=None, visible=None):
    """Whole class-block mass mean_i sum_{y_j = y_i} A_ij, self and positive views included.

    This is the theory's m = a_self + (n - 1) a_same (S2-S5). Chance n/M (visible counts); tends to
    m* of S4 under fusion. ``inst`` is not needed and accepted for a uniform call signature."""
    A = _attention(A)
    M = A.shape[-1]
    inst = np.arange(M) if inst is None else inst
    return _row_mass(A, _masks(y, inst, M, visible)["block"])


def ideal_block_matrix(y, mass: float, visible=None) -> np.ndarray:
    """The ideal block matrix of S5: weight ``mass`` spread evenly over the visible tokens of the
    row's class (self included) and 1 - mass evenly over the visible tokens of other classes.

    Rows with no visible other-class token put all their weight on the class."""
    y = np.asarray(y)
    M = y.shape[0]
    vis = _visible(visible, M)
    same = (y[:, None] == y[None, :]) & vis
    other = ~same & vis
    n_same, n_other = same.sum(1, keepdims=True), other.sum(1, keepdims=True)
    w_same = np.where(n_other > 0, mass, 1.0) / n_same
    w_other = np.where(n_other > 0, (1.0 - mass) / np.maximum(n_other, 1), 0.0)
    return same * w_same + other * w_other


def block_distance(A, y, visible=None, mass=None):
    """Mean row total-variation distance to the ideal block matrix, in [0, 1].

    d = mean_i (1/2) sum_j |A_ij - B_ij|, with B = ``ideal_block_matrix(y, mass)``. ``mass=None``
    takes the measured ``block_mass`` of each matrix, so d measures the *shape* (how evenly mass is
    spread within and outside the class block; uniform attention scores 0); pass the S4 limit m* to
    measure amount and shape together. Tends to 0 as A approaches the S5 limit block matrix.
    """
    A = _attention(A)
    M = A.shape[-1]
    y = _labels(y, M, "labels y")
    if mass is None:
        masses = np.atleast_1d(block_mass(A, y, None, visible)).reshape(A.shape[:-2] + (1, 1))
        # B depends on the mass linearly: B = B0 + mass * (B1 - B0).
        B0, B1 = ideal_block_matrix(y, 0.0, visible), ideal_block_matrix(y, 1.0, visible)
        B = B0 + masses * (B1 - B0)
    else:
        B = ideal_block_matrix(y, float(mass), visible)
    return 0.5 * np.abs(A - B).sum(-1).mean(-1)


def effective_rank(A):
    """Effective rank exp(H(p)) of Roy & Vetterli (2007), p the singular values normalised to sum 1.

    Between 1 (rank one, e.g. uniform attention) and M (identity). An ideal block matrix with C
    classes has effective rank about C; fusion drives A towards it from above (from near-identity
    attention) and rank collapse (S7) towards 1."""
    A = _attention(A)
    s = np.linalg.svd(A, compute_uv=False)
    p = s / s.sum(-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(-1)
    return np.exp(h)


# ----------------------------------------------------------------------------- tokens


def _tokens(X, y) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise DataError(f"tokens have shape {X.shape}, expected (M, D)")
    y = _labels(y, X.shape[0], "labels y")
    classes, idx = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise DataError("token statistics need at least two classes in the batch")
    return X, idx, np.bincount(idx)


def _unit(X: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(X, axis=-1, keepdims=True)
    if np.any(norm == 0):
        raise DataError("a token is exactly zero; cosines and relative spread are undefined")
    return X / norm


def class_means(X, y) -> np.ndarray:
    """Class means (C, D), classes in sorted label order."""
    X, idx, counts = _tokens(X, y)
    return np.stack([X[idx == c].mean(0) for c in range(len(counts))])


def relative_spread(X, y):
    """Relative within-class spread r of paper-notes section 4 (S2-S5), after projecting each token
    to the unit sphere as the theory's layer does.

    Per class, r_c^2 = mean_i ||x_i - xbar_c||^2 / ||xbar_c||^2; r = sqrt(mean_c r_c^2). For unit
    tokens ||xbar_c||^2 = 1/(1 + r_c^2), which is the mean same-class cosine (self pairs included), so
    s = 1/(1 + r^2) of S4 holds exactly. For ETF-plus-noise tokens x = mu_c + e with unit mu_c and
    within-class noise of norm r, zero class mean and orthogonal to the means, it returns r exactly.
    Chance: r = sqrt(n_c - 1)-ish for random directions (xbar near 0). Tends to 0 under fusion.
    """
    X, idx, counts = _tokens(X, y)
    U = _unit(X)
    r2 = []
    for c in range(len(counts)):
        Uc = U[idx == c]
        mean = Uc.mean(0)
        r2.append(((Uc - mean) ** 2).sum(1).mean() / max((mean**2).sum(), 1e-300))
    return float(np.sqrt(np.mean(r2)))


def class_mean_cosine(X, y) -> float:
    """Mean cosine between the means of different classes (unit tokens), the theory's rho (S1, S4).

    -1/(C-1) for a simplex ETF; a component shared by all tokens raises it. Input for S4."""
    X, idx, counts = _tokens(X, y)
    mu = _unit(class_means(_unit(X), y))
    G = mu @ mu.T
    C = len(counts)
    return float((G.sum() - np.trace(G)) / (C * (C - 1)))


def nc1(X, y) -> float:
    """Neural-collapse NC1 = tr(S_w S_b^+) / C (Papyan et al., 2020) on raw tokens.

    S_w the within-class covariance, S_b the between-class covariance of the class means around
    the global mean. Tends to 0 as classes fuse (S5); no fixed chance level (large for random tokens).
    """
    X, idx, counts = _tokens(X, y)
    C = len(counts)
    mu = class_means(X, y)
    dev = X - mu[idx]  # S_w = dev^T dev / M
    B = (mu - X.mean(0)) * np.sqrt(counts / counts.sum())[:, None]  # S_b = B^T B, weighted by class size
    # S_b^+ = B^+ B^+^T, so tr(S_w S_b^+) = |dev B^+|_F^2 / M: a (C, D) pseudo-inverse, not a (D, D) one.
    # rcond 1e-5 on B's singular values is a 1e-10 cut on S_b's eigenvalues.
    return float(((dev @ np.linalg.pinv(B, rcond=1e-5)) ** 2).sum() / X.shape[0] / C)


def cdnv(X, y) -> float:
    """Class-distance normalised variance (Galanti et al., 2022), averaged over class pairs:
    (Var_c + Var_c') / (2 ||mu_c - mu_c'||^2), Var_c = mean ||x - mu_c||^2. Tends to 0 under fusion."""
    X, idx, counts = _tokens(X, y)
    mu = class_means(X, y)
    var = np.array([((X[idx == c] - mu[c]) ** 2).sum(1).mean() for c in range(len(counts))])
    a, b = np.triu_indices(len(counts), 1)  # each unordered pair of classes once
    d2 = ((mu[a] - mu[b]) ** 2).sum(-1)
    if np.any(d2 == 0):
        raise DataError("two classes have identical token means; CDNV is infinite")
    return float(((var[a] + var[b]) / (2 * d2)).mean())


def residual_norm(X) -> float:
    """||X - 1 xbar^T||_F: distance of the tokens from the rank-one "all tokens equal" matrix
    (Dong et al., 2021, Frobenius instead of their composite l1/l_inf norm)."""
    X = np.asarray(X, dtype=np.float64)
    return float(np.linalg.norm(X - X.mean(0)))


def residual_ratio(X, X0) -> float:
    """Dong et al.'s residual ratio ||X - 1 xbar^T|| / ||X0 - 1 xbar0^T|| against the head's input
    tokens X0. Near 0 means rank collapse (S7, over-fusion); with a residual branch it stays away
    from 0 while classes keep their structure. Both sides are Frobenius norms."""
    den = residual_norm(X0)
    if den == 0:
        raise DataError("reference tokens X0 are all equal; the residual ratio is undefined")
    return residual_norm(X) / den


def cosine_matrix(X) -> np.ndarray:
    """Token cosines cos(x_i, x_j), (M, M)."""
    U = _unit(np.asarray(X, dtype=np.float64))
    return U @ U.T


# ----------------------------------------------------------------------------- temperature


def fit_beta_eff(A, X, visible=None, logits: bool = False, exclude_self: bool = False):
    """Effective inverse temperature beta_eff and the fit's R^2, for S4's softmax-of-cosines model.

    Model: log A_ij = beta * cos(x_i, x_j) + c_i (a free constant per row). Least squares with row
    fixed effects: centre log A and the cosines over the visible entries of each row, then
    beta = <L, K> / <K, K> and R^2 = 1 - |L - beta K|^2 / |L|^2 on the centred values.
    ``A`` (..., M, M) are weights, or pre-softmax scores with ``logits=True`` (preferred: they avoid
    log of underflowed zeros, which are left out of the fit). ``X`` (M, D) are the layer's input
    tokens. Softmax(beta * cos) attention gives back beta with R^2 = 1. Order-free; under fusion the
    fitted beta is what S4 needs to predict the layer's block mass. Returns (beta, r2), each (...).
    """
    X = np.asarray(X, dtype=np.float64)
    L = np.asarray(A, dtype=np.float64) if logits else _attention(A)
    M = L.shape[-1]
    if X.ndim != 2 or X.shape[0] != M:
        raise DataError(f"tokens have shape {X.shape}, expected ({M}, D) to match the attention")
    K = np.broadcast_to(cosine_matrix(X), L.shape)
    use = np.broadcast_to(_visible(visible, M), L.shape).copy()
    if exclude_self:
        use &= ~np.eye(M, dtype=bool)
    if logits:
        use &= np.isfinite(L)
    else:
        use &= L > 0
        with np.errstate(divide="ignore"):
            L = np.log(L)
    L = np.where(use, L, 0.0)
    counts = np.maximum(use.sum(-1, keepdims=True), 1)
    Lc = np.where(use, L - L.sum(-1, keepdims=True) / counts, 0.0)
    Kc = np.where(use, K - np.where(use, K, 0.0).sum(-1, keepdims=True) / counts, 0.0)
    kk = (Kc * Kc).sum((-2, -1))
    if np.any(kk == 0):
        raise DataError("token cosines are constant within every row; beta_eff is not identifiable")
    beta = (Lc * Kc).sum((-2, -1)) / kk
    ll = (Lc * Lc).sum((-2, -1))
    res = ((Lc - beta[..., None, None] * Kc) ** 2).sum((-2, -1))
    r2 = np.where(ll > 0, 1.0 - res / np.where(ll > 0, ll, 1.0), 1.0)
    return beta, r2
