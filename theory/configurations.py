"""Exact symmetric configurations in a model's feature space, and maps that respect them (S8-S12).

S2's symmetric configuration, embedded in R^d so that a trained layer can act on it: unit equiangular
class means spanning V, regular-simplex deviations of norm r spanning E, all orthogonal to the
all-ones vector (so LayerNorm's centring leaves them alone, S10(a)), tokens scaled to norm nu.
Score and value matrices built here act as beta_mu / lambda_mu on V and beta_e / lambda_e on E
(S8, S9), plus an arbitrary part on the orthogonal complement of V + E, which the tokens never see.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepfusion.errors import ConfigError


@dataclass
class Configuration:
    """S8-S12: X (M, d) class-major tokens of norm nu; labels (M,); frames Q_V (d, dim V), Q_E (d, dim E)
    with orthonormal columns orthogonal to 1_d; their projectors P_V, P_E; and the state (C, n, r, rho, nu)."""

    X: np.ndarray
    labels: np.ndarray
    Q_V: np.ndarray
    Q_E: np.ndarray
    C: int
    n: int
    r: float
    rho: float
    nu: float

    @property
    def P_V(self):
        return self.Q_V @ self.Q_V.T

    @property
    def P_E(self):
        return self.Q_E @ self.Q_E.T

    @property
    def P_W(self):
        """Projector onto the rest of R^d (what the tokens never reach)."""
        return np.eye(self.X.shape[1]) - self.P_V - self.P_E


def frame(d, k, rng):
    """(d, k) orthonormal columns orthogonal to the all-ones vector (needs k <= d - 1)."""
    if k > d - 1:
        raise ConfigError(f"need k <= d - 1 directions orthogonal to 1_d, got k={k}, d={d}")
    A = rng.standard_normal((d, k))
    A -= A.mean(0)  # orthogonal to 1_d
    q, _ = np.linalg.qr(A)
    return q[:, :k]


def symmetric_configuration(C, n, r, d, nu=1.0, rho=None, seed=0) -> Configuration:
    """S8-S12: the symmetric configuration (S2) in R^d at spread r and token norm nu.

    Means: unit vectors with pairwise cosine rho (default the ETF -1/(C-1), spanning C - 1 dimensions;
    otherwise C). Deviations: each class a regular simplex of norm r in its own n - 1 dimensions.
    Needs d - 1 >= dim V + C (n - 1)."""
    rho = -1.0 / (C - 1) if rho is None else float(rho)
    if not -1.0 / (C - 1) - 1e-12 <= rho < 1.0 or C < 2 or n < 2:
        raise ConfigError(f"need C >= 2, n >= 2 and rho in [-1/(C-1), 1); got C={C}, n={n}, rho={rho}")
    rng = np.random.default_rng(seed)
    gram = (1.0 - rho) * np.eye(C) + rho * np.ones((C, C))
    w, v = np.linalg.eigh(gram)
    keep = w > 1e-12
    coords = v[:, keep] * np.sqrt(w[keep])  # (C, dim V) means in an orthonormal basis of V
    dim_v, dim_e = int(keep.sum()), C * (n - 1)
    Q = frame(d, dim_v + dim_e, rng)
    Q_V, Q_E = Q[:, :dim_v], Q[:, dim_v:]
    # a regular simplex of n points of norm r in n - 1 dimensions: centred basis vectors, orthonormalised
    cb = np.eye(n) - 1.0 / n
    basis = np.linalg.svd(cb)[2][: n - 1]  # (n-1, n): rows span the centred vectors
    simplex = cb @ basis.T * (r / np.sqrt(1.0 - 1.0 / n))  # (n, n-1)
    X = np.zeros((C, n, d))
    for c in range(C):
        X[c] = coords[c] @ Q_V.T + simplex @ Q_E[:, c * (n - 1) : (c + 1) * (n - 1)].T
    X = X.reshape(C * n, d) * (nu / np.sqrt(1.0 + r**2))
    return Configuration(
        X=X, labels=np.repeat(np.arange(C), n), Q_V=Q_V, Q_E=Q_E, C=C, n=n, r=float(r), rho=rho, nu=float(nu)
    )


def symmetric_map(cfg: Configuration, on_means, on_devs, rest=None):
    """S8/S9: a (d, d) matrix equal to on_means on V and on_devs on E, plus ``rest`` (d, d) composed
    so that it only acts on and lands in the complement W (the tokens never see it)."""
    M = on_means * cfg.P_V + on_devs * cfg.P_E
    if rest is not None:
        M = M + cfg.P_W @ np.asarray(rest, float) @ cfg.P_W
    return M


def factorise(M, d_h, rng=None):
    """S8/S9: (L, R) of shapes (d, d_h) and (d_h, d) with L R = M, so that a head of width d_h can carry
    M (rank(M) <= d_h). For scores B = W_Q^T W_K / sqrt(d_h) use W_Q = L^T * d_h^(1/4),
    W_K = R * d_h^(1/4); for values V = W_O W_V use W_O = L, W_V = R."""
    u, s, vt = np.linalg.svd(np.asarray(M, float))
    k = int(np.sum(s > s.max() * 1e-12)) if s.max() > 0 else 0
    if k > d_h:
        raise ConfigError(f"the map has rank {k}, more than the head width {d_h}")
    L, R = np.zeros((M.shape[0], d_h)), np.zeros((d_h, M.shape[1]))
    L[:, :k], R[:k] = u[:, :k] * np.sqrt(s[:k]), np.sqrt(s[:k])[:, None] * vt[:k]
    return L, R
