"""The block model of fusion: one layer (S2, S3), softmax block mass (S4), depth (S5), no residual (S7).

Tokens: C balanced classes of n tokens, x_i = mu_c(i) + e_i with unit class means of pairwise cosine
rho (simplex ETF: rho = -1/(C-1)) and deviations of zero class mean, orthogonal to every mean and to
the other classes' deviations, all of norm r. In this symmetric configuration an attention layer with
cosine scores is *exactly* block-structured (weights a_self, a_same, a_out), so the layer maps the
state (r, rho) to a new state: that map iterated is the mean-field recursion of S5.

Sphere projection. Before projection every token has the same norm (the deviations are orthogonal to
the means and all of norm r), so the projection is one common rescaling: it leaves the ratio r and all
cosines unchanged. The cosines the next layer sees are therefore functions of (r, rho) alone:
self 1, same class s_c = (1 - r^2/(n-1)) / (1 + r^2), other class rho / (1 + r^2).
The -r^2/(n-1) is forced: deviations summing to zero within a class have mean pairwise inner product
-r^2/(n-1). With independent deviations (``centred=False``) it is dropped: s = 1/(1 + r^2), the
n -> infinity limit stated in the paper notes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from deepfusion.errors import ConfigError
from deepfusion.theory.bounds import etf_rho  # the ETF cross-class cosine, default rho of S2-S5


def kappa(m, C):
    """S2: the factor kappa(m) = (C m - 1)/(C - 1) by which attention scales ETF class means.

    Zero at chance (m = 1/C), one when all mass stays in the class (m = 1)."""
    C = np.asarray(C, dtype=float)
    return (C * np.asarray(m, dtype=float) - 1.0) / (C - 1.0)


def layer_coefficients(a_self, a_same, m, C, alpha):
    """S2: (mean factor, deviation factor) = (1 + alpha*kappa(m), 1 + alpha*(a_self - a_same)).

    x_i + alpha * sum_j A_ij x_j for block attention on ETF means and zero-class-mean deviations."""
    alpha = np.asarray(alpha, dtype=float)
    return 1.0 + alpha * kappa(m, C), 1.0 + alpha * (np.asarray(a_self) - np.asarray(a_same))


def layer_map(r, a_self, a_same, m, C, alpha):
    """S2: the spread after one layer, r' = r |1 + alpha(a_self - a_same)| / |1 + alpha kappa(m)|.

    Needs 1 + alpha kappa(m) != 0 (S2's hypothesis). The deviation factor is negative when
    alpha (a_same - a_self) > 1; r is a norm ratio, so its absolute value enters. The sphere
    projection rescales every token alike, so it does not enter (module docstring)."""
    mean_f, dev_f = layer_coefficients(a_self, a_same, m, C, alpha)
    return np.asarray(r, dtype=float) * np.abs(dev_f) / np.abs(mean_f)


def layer_map_general(r, rho, a_self, a_same, m, C, alpha):
    """S2 for any equiangular means (rho >= -1/(C-1)); returns (r', rho').

    Split mu_c = u + v_c into the common part u (|u|^2 = (1+(C-1)rho)/C) and the centred part v_c.
    Rows of A sum to one, so u is scaled by 1 + alpha; v_c by 1 + alpha*kappa(m) as for the ETF;
    deviations by 1 + alpha*(a_self - a_same). Since kappa < 1 whenever m < 1, the common part grows
    faster than the centred one: rho drifts towards 1 unless the means are an ETF (u = 0)."""
    C = np.asarray(C, dtype=float)
    rho = np.asarray(rho, dtype=float)
    alpha = np.asarray(alpha, dtype=float)
    mean_f, dev_f = layer_coefficients(a_self, a_same, m, C, alpha)
    # The ETF (1 + (C-1) rho = 0) is invariant; snap rounding there so it cannot be amplified.
    u2 = 1.0 + (C - 1.0) * rho
    common = (1.0 + alpha) ** 2 * np.where(u2 < 1e-12, 0.0, u2) / C
    centred = mean_f**2 * (C - 1.0) * (1.0 - rho) / C
    norm2 = common + centred
    return np.asarray(r) * np.abs(dev_f) / np.sqrt(norm2), (common - centred / (C - 1.0)) / norm2


def common_growth_factor(m, C, alpha):
    """S2 (instability of the ETF): the factor ((1 + alpha)/(1 + alpha kappa(m)))^2 by which one layer
    multiplies the ratio |common part|^2 / |centred part|^2 of the class means. Above 1 whenever
    m < 1 (kappa < 1), so any common part, however small, grows geometrically with depth."""
    return ((1.0 + np.asarray(alpha, dtype=float)) / (1.0 + np.asarray(alpha, dtype=float) * kappa(m, C))) ** 2


def cosines(r, n, rho, centred=True):
    """S4: (same-class, cross-class) token cosines of the symmetric configuration at spread r.

    centred: deviations sum to zero per class, s = (1 - r^2/(n-1))/(1 + r^2) exactly; otherwise the
    n -> infinity form s = 1/(1 + r^2). Cross-class cosine rho/(1 + r^2) either way."""
    r2 = np.asarray(r, dtype=float) ** 2
    n = np.asarray(n, dtype=float)
    base = 1.0 / (1.0 + r2)
    same = (1.0 - r2 / np.maximum(n - 1.0, 1.0)) * base if centred else base
    return same, np.asarray(rho, dtype=float) * base


def softmax_block_weights(C, n, beta, r, rho=None, centred=True):
    """S4: (a_self, a_same, a_out) of softmax attention, inverse temperature beta on cosine scores.

    a_self + (n-1) a_same + (C-1) n a_out = 1; logits shifted by the self logit beta (the largest)."""
    rho = etf_rho(C) if rho is None else rho
    same, cross = cosines(r, n, rho, centred)
    beta = np.asarray(beta, dtype=float)
    n = np.asarray(n, dtype=float)
    w_same = np.exp(beta * (same - 1.0))
    w_out = np.exp(beta * (cross - 1.0))
    z = 1.0 + (n - 1.0) * w_same + (np.asarray(C, dtype=float) - 1.0) * n * w_out
    return 1.0 / z, w_same / z, w_out / z


def relu_block_weights(C, n, r, rho=None, centred=True):
    """S1/S4: (a_self, a_same, a_out) of ReLU-normalised attention, A_ij = relu(cos_ij)/sum_k relu(cos_ik)."""
    rho = etf_rho(C) if rho is None else rho
    same, cross = cosines(r, n, rho, centred)
    same, cross = np.maximum(same, 0.0), np.maximum(cross, 0.0)
    n = np.asarray(n, dtype=float)
    z = 1.0 + (n - 1.0) * same + (np.asarray(C, dtype=float) - 1.0) * n * cross
    return 1.0 / z, same / z, cross / z


def block_mass(C, n, beta, r, rho=None, centred=True):
    """S4: the same-class mass m(r) = a_self + (n-1) a_same of softmax attention (> 1/C for beta > 0)."""
    a_self, a_same, _ = softmax_block_weights(C, n, beta, r, rho, centred)
    return a_self + (np.asarray(n, dtype=float) - 1.0) * a_same


def m_star(C, beta, rho=None):
    """S4: the limit of m(r) as r -> 0, m* = 1 / (1 + (C-1) exp(-beta (1 - rho)))."""
    rho = etf_rho(C) if rho is None else np.asarray(rho, dtype=float)
    C = np.asarray(C, dtype=float)
    return 1.0 / (1.0 + (C - 1.0) * np.exp(-np.asarray(beta, dtype=float) * (1.0 - rho)))


def asymptotic_rate(C, beta, alpha, rho=None):
    """S5: the limit of r_{l+1}/r_l as r_l -> 0, 1/(1 + alpha kappa(m*)) (ETF means)."""
    return 1.0 / (1.0 + np.asarray(alpha, dtype=float) * kappa(m_star(C, beta, rho), C))


def block_matrix(C, n, a_self, a_same, a_out):
    """S2: the (Cn, Cn) block attention matrix, tokens ordered class by class."""
    same = np.kron(np.eye(C), np.ones((n, n)))
    return a_out * (1.0 - same) + a_same * same + (a_self - a_same) * np.eye(C * n)


def block_limit(C, n, beta, rho=None):
    """S5: the limit of A_l as r_l -> 0: m*/n inside a class, (1 - m*)/(M - n) outside."""
    ms = float(m_star(C, beta, rho))
    return block_matrix(C, n, ms / n, ms / n, (1.0 - ms) / ((C - 1) * n))


def no_residual_coefficients(a_self, a_same, m, C):
    """S7: x <- A x scales ETF class means by kappa(m) and deviations by a_self - a_same.

    At chance (m = 1/C) kappa = 0: the class means vanish in one layer."""
    return kappa(m, C), np.asarray(a_self) - np.asarray(a_same)


def no_residual_map(r, a_self, a_same, m, C):
    """S7: the spread after one layer without residual, r' = r |a_self - a_same| / |kappa(m)|
    (kappa(m) != 0, i.e. m != 1/C)."""
    mean_f, dev_f = no_residual_coefficients(a_self, a_same, m, C)
    return np.asarray(r, dtype=float) * np.abs(dev_f) / np.abs(mean_f)


def cubic_collapse_coefficient(C, n, beta, rho=None):
    """S7: k = beta m* / ((n-1) kappa(m*)) with r' = k r^3 (1 + O(r^2)) for the no-residual softmax
    layer on the symmetric configuration (centred cosines): the spread collapses cubically."""
    ms = m_star(C, beta, rho)
    return np.asarray(beta, dtype=float) * ms / ((np.asarray(n, dtype=float) - 1.0) * kappa(ms, C))


def critical_spread(n, rho):
    """S5: r_c = sqrt((n-1)(1 - rho)); with centred cosines a_same > a_out iff r < r_c, so the spread
    shrinks to 0 below r_c, stays at r_c and grows without bound above it."""
    return np.sqrt((np.asarray(n, dtype=float) - 1.0) * (1.0 - np.asarray(rho, dtype=float)))


@dataclass
class MeanField:
    """S5: the mean-field trajectory; arrays have the broadcast parameter shape plus a layer axis.

    m, a_self, a_same, a_out, kappa: (..., layers), at the input of each layer;
    r, rho: (..., layers + 1), r[..., 0] = r0; m_star, rate: (...), the r -> 0 limits."""

    m: np.ndarray
    r: np.ndarray
    rho: np.ndarray
    a_self: np.ndarray
    a_same: np.ndarray
    a_out: np.ndarray
    kappa: np.ndarray
    m_star: np.ndarray
    rate: np.ndarray
    params: dict = field(default_factory=dict)

    def __getitem__(self, key):
        return getattr(self, key)

    def block_limit(self):
        """S5: the predicted limit block matrix (scalar parameters only)."""
        p = self.params
        if np.ndim(self.m_star) != 0:
            raise ConfigError("block_limit needs scalar parameters; index the trajectory first")
        return block_limit(int(p["C"]), int(p["n"]), float(p["beta"]), float(self.rho[..., 0]))


def _check(C, n, beta, alpha, r0, layers, rho):
    if not isinstance(layers, (int, np.integer)) or layers < 0:
        raise ConfigError(f"layers must be a non-negative integer, got {layers!r}")
    checks = [
        (np.any(C < 2) or np.any(C != np.round(C)), "C (classes) must be an integer >= 2"),
        (np.any(n < 2) or np.any(n != np.round(n)), "n (tokens per class) must be an integer >= 2"),
        (np.any(beta < 0), "beta (inverse temperature) must be >= 0"),
        (np.any(alpha < 0), "alpha (residual weight) must be >= 0"),
        (np.any(r0 < 0), "r0 (initial spread) must be >= 0"),
        (
            np.any(rho < -1.0 / (C - 1.0) - 1e-12) or np.any(rho >= 1.0),
            "rho must lie in [-1/(C-1), 1): equiangular unit means exist only there",
        ),
    ]
    for bad, msg in checks:
        if bad:
            raise ConfigError(msg + "; fix the argument")
    for name, v in (("C", C), ("n", n), ("beta", beta), ("alpha", alpha), ("r0", r0), ("rho", rho)):
        if not np.all(np.isfinite(v)):
            raise ConfigError(f"{name} must be finite")


def mean_field(C, n, beta, alpha, r0, layers, rho=None, *, attention="softmax", centred=True):
    """S5: iterate the S2 layer map with the S4 weights for `layers` layers.

    C, n, beta, alpha, r0, rho: scalars or broadcastable arrays (rho defaults to the ETF -1/(C-1)).
    attention: "softmax" (inverse temperature beta) or "relu" (beta unused). centred: exact cosines
    of zero-class-mean deviations (default) or the n -> infinity form (module docstring).
    Returns a :class:`MeanField`; the ETF case keeps rho fixed, other rho follow layer_map_general."""
    if attention not in ("softmax", "relu"):
        raise ConfigError(f"attention must be 'softmax' or 'relu', got {attention!r}")
    C, n, beta, alpha, r0 = (np.asarray(v, dtype=float) for v in (C, n, beta, alpha, r0))
    if np.any(C < 2):
        raise ConfigError("C (classes) must be an integer >= 2; fix the argument")
    rho = etf_rho(C) if rho is None else np.asarray(rho, dtype=float)
    C, n, beta, alpha, r0, rho = np.broadcast_arrays(C, n, beta, alpha, r0, rho)
    _check(C, n, beta, alpha, r0, layers, rho)
    shape = C.shape
    out = {k: np.empty(shape + (layers,)) for k in ("m", "a_self", "a_same", "a_out", "kappa")}
    r = np.empty(shape + (layers + 1,))
    rh = np.empty(shape + (layers + 1,))
    r[..., 0], rh[..., 0] = r0, rho
    for layer in range(layers):
        rl, rhol = r[..., layer], rh[..., layer]
        if attention == "softmax":
            a_self, a_same, a_out = softmax_block_weights(C, n, beta, rl, rhol, centred)
        else:
            a_self, a_same, a_out = relu_block_weights(C, n, rl, rhol, centred)
        m = a_self + (n - 1.0) * a_same
        r[..., layer + 1], rh[..., layer + 1] = layer_map_general(rl, rhol, a_self, a_same, m, C, alpha)
        for k, v in (("m", m), ("a_self", a_self), ("a_same", a_same), ("a_out", a_out), ("kappa", kappa(m, C))):
            out[k][..., layer] = v
    ms = m_star(C, beta, rho) if attention == "softmax" else np.where(rho <= 0, 1.0, np.nan)
    params = dict(C=C, n=n, beta=beta, alpha=alpha, r0=r0, attention=attention, centred=centred)
    return MeanField(r=r, rho=rh, m_star=ms, rate=1.0 / (1.0 + alpha * kappa(ms, C)), params=params, **out)
