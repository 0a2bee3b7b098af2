"""Noise bounds: the largest augmentation (S1) and the smallest batch (S6).

S1. Unit class means whose largest cross-class cosine is rho <= 0, tokens x_i = mu_c(i) + e_i with
||e_i|| <= eps. Every same-class inner product is > 0 and every cross-class one <= 0 (so ReLU
attention on inner products is exactly block-diagonal) for *every* admissible noise iff
eps <= eps_max(rho) = sin((arccos(rho) - pi/2) / 2) (for rho = -1 the same-class part needs the strict
eps < 1/sqrt(2)). Reason: a ball of radius eps < 1 around a unit vector subtends the half-angle
arcsin(eps) seen from the origin, so the worst noise rotates each token towards the other class by
exactly that angle. The Cauchy-Schwarz bound rho + 2 eps + eps^2 <= 0, i.e. eps <= sqrt(1 - rho) - 1,
is sufficient but loose.

S6. Noise model: e_i ~ N(0, sigma^2/d I_d), i.i.d. over tokens, so E||e_i||^2 = sigma^2 (and
||e_i|| = sigma (1 + O(1/sqrt(d)))); ``noise="sphere"`` draws e_i uniform on the sphere of radius
sigma instead. Full fusion sends each token of class c to the class's sample mean, whose noise
e_bar = mean of n_c draws satisfies ||e_bar||^2 ~ sigma^2/(d n_c) chi^2_d exactly (Gaussian), or
approximately (sphere, by the central limit theorem). S1 then applies to the fused tokens once
||e_bar|| <= eps_max, which typically holds once n_c >= n_min = (sigma/eps_max)^2.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize, stats

from deepfusion.errors import ConfigError

# ---------------------------------------------------------------------------------------------- S1


def etf_rho(C):
    """S1: the cross-class cosine of a simplex ETF of C unit means, -1/(C-1) (C >= 2)."""
    C = np.asarray(C, dtype=float)
    if np.any(C < 2) or np.any(C != np.round(C)):
        raise ConfigError(f"C (number of classes) must be an integer >= 2, got {C}")
    return -1.0 / (C - 1.0)


def _rho(rho):
    rho = np.asarray(rho, dtype=float)
    if not np.all(np.isfinite(rho)) or np.any(rho < -1.0) or np.any(rho > 0.0):
        raise ConfigError(
            f"rho (largest cross-class cosine) must lie in [-1, 0], got {rho}: "
            "with rho > 0 two class means are closer than 90 degrees and no noise level keeps "
            "cross-class inner products non-positive"
        )
    return rho


def _eps(eps):
    eps = np.asarray(eps, dtype=float)
    if not np.all(np.isfinite(eps)) or np.any(eps < 0.0) or np.any(eps >= 1.0):
        raise ConfigError(
            f"eps (noise radius) must lie in [0, 1), got {eps}; a ball of radius >= 1 "
            "around a unit mean contains the origin"
        )
    return eps


def eps_max(rho):
    """S1: the exact largest noise radius, sin((arccos(rho) - pi/2) / 2), for rho in [-1, 0].

    Decreasing in rho, from 1/sqrt(2) at rho = -1 (C = 2) to 0 at rho = 0 (orthogonal means)."""
    return np.sin((np.arccos(_rho(rho)) - np.pi / 2) / 2)


def simple_bound(rho):
    """S1: the Cauchy-Schwarz sufficient bound sqrt(1 - rho) - 1 (<= eps_max, equal only at rho = 0)."""
    return np.sqrt(1.0 - _rho(rho)) - 1.0


def worst_cosine(rho, eps):
    """S1: the largest cross-class cosine any noise with ||e|| <= eps can produce (closed form),
    cos(max(arccos(rho) - 2 arcsin(eps), 0)); it is <= 0 iff eps <= eps_max(rho)."""
    gap = np.arccos(_rho(rho)) - 2.0 * np.arcsin(_eps(eps))
    return np.cos(np.maximum(gap, 0.0))


def pair_means(rho, d=4):
    """S1: (2, d) unit means with cosine rho, in the first two coordinates (d >= 2)."""
    rho = float(np.clip(rho, -1.0, 1.0))
    if d < 2:
        raise ConfigError(f"d must be >= 2 to hold two means, got {d}")
    mu = np.zeros((2, d))
    mu[0, 0] = 1.0
    mu[1, 0], mu[1, 1] = rho, np.sqrt(1.0 - rho**2)
    return mu


def violating_construction(rho, eps, d=4):
    """S1 tightness: means mu (2, d) and noise e (2, d), ||e_k|| = eps, that rotate each token towards
    the other class by the ball half-angle arcsin(eps) (the tangent point of the ball).

    The tokens' inner product is (1 - eps^2) cos(arccos(rho) - 2 arcsin(eps)): zero at eps_max and
    positive just above it. For rho = -1 both tokens rotate towards the same orthogonal direction."""
    rho, eps = float(_rho(rho)), float(_eps(eps))
    mu = pair_means(rho, d)
    e = np.zeros_like(mu)
    for k in range(2):
        w = mu[1 - k] - rho * mu[k]  # towards the other mean, orthogonal to this one
        if np.linalg.norm(w) < 1e-12:  # antipodal means: any common orthogonal direction
            w = np.zeros(d)
            w[2 if d > 2 else 1] = 1.0
        w /= np.linalg.norm(w)
        e[k] = -(eps**2) * mu[k] + eps * np.sqrt(1.0 - eps**2) * w
    return mu, e


def _pair_problem(rho, d, rng, starts):
    mu = pair_means(rho, d)
    a, b = mu

    def inner(z):  # z = (e_a, e_b)
        return (a + z[:d]) @ (b + z[d:])

    def inner_grad(z):
        return np.concatenate([b + z[d:], a + z[:d]])

    return inner, inner_grad, rng.normal(size=(starts, 2 * d)) * 0.3


def worst_cross_inner(rho, eps, d=4, starts=4, seed=0):
    """S1 numerically: max of <mu_a + e_a, mu_b + e_b> over ||e_a||, ||e_b|| <= eps (SLSQP, best of
    `starts` random starts).

    Means of cosine rho in R^d; the noise may leave their plane (d > 2), so the optimiser is not told
    where the worst case lies. Positive iff eps > eps_max(rho)."""
    rho, eps = float(_rho(rho)), float(_eps(eps))
    inner, grad, starts = _pair_problem(rho, d, np.random.default_rng(seed), starts)
    masks = np.repeat(np.eye(2, dtype=bool), d, axis=1)  # (2, 2d): which entries belong to e_a, e_b
    cons = [
        {"type": "ineq", "fun": (lambda z, k=k: eps**2 - z[k] @ z[k]), "jac": (lambda z, k=k: -2.0 * z * k)}
        for k in masks
    ]
    best = -np.inf
    for z0 in starts:
        res = optimize.minimize(
            lambda z: -inner(z),
            z0,
            jac=lambda z: -grad(z),
            method="SLSQP",
            constraints=cons,
            options={"ftol": 1e-14, "maxiter": 500},
        )
        z = res.x
        if max(z[:d] @ z[:d], z[d:] @ z[d:]) <= eps**2 * (1 + 1e-9) + 1e-15:
            best = max(best, inner(z))
    return best


def numeric_threshold(rho, d=4, starts=4, seed=0):
    """S1 numerically: the smallest t such that some noise with ||e_a||, ||e_b|| <= t gives a
    non-negative cross-class inner product (SLSQP over (t, e_a, e_b), best of `starts` starts).

    Every feasible point is an upper bound on the true threshold, so the minimum over starts is
    never below it; the check compares it with eps_max(rho)."""
    rho = float(_rho(rho))
    inner, grad, starts = _pair_problem(rho, d, np.random.default_rng(seed), starts)
    n = 2 * d

    def ball(s):
        def f(w):
            z = w[1:]
            return w[0] ** 2 - z[s] @ z[s]

        def j(w):
            g = np.zeros(n + 1)
            g[0] = 2.0 * w[0]
            g[1:][s] = -2.0 * w[1:][s]
            return g

        return {"type": "ineq", "fun": f, "jac": j}

    cons = [
        ball(slice(0, d)),
        ball(slice(d, n)),
        {"type": "ineq", "fun": lambda w: inner(w[1:]), "jac": lambda w: np.concatenate([[0.0], grad(w[1:])])},
    ]
    best = np.inf
    for z0 in starts:
        w0 = np.concatenate([[0.8], z0])
        res = optimize.minimize(
            lambda w: w[0],
            w0,
            jac=lambda w: np.eye(n + 1)[0],
            method="SLSQP",
            bounds=[(0.0, 1.0)] + [(None, None)] * n,
            constraints=cons,
            options={"ftol": 1e-15, "maxiter": 1000},
        )
        w = res.x
        t = max(np.linalg.norm(w[1 : d + 1]), np.linalg.norm(w[d + 1 :]))
        if inner(w[1:]) >= -1e-12:  # feasible: this noise level does reach the boundary
            best = min(best, t)
    return best


def separated(x, labels):
    """S1/S6: True where every same-class inner product is > 0 and every cross-class one <= 0.

    x: (..., M, d) tokens (any leading batch shape), labels: (M,). Returns a bool array (...)."""
    labels = np.asarray(labels)
    g = np.einsum("...id,...jd->...ij", x, x)
    same = labels[:, None] == labels[None, :]
    ok_same = np.all(np.where(same, g > 0, True), axis=(-2, -1))
    ok_cross = np.all(np.where(same, True, g <= 0), axis=(-2, -1))
    return ok_same & ok_cross


# ---------------------------------------------------------------------------------------------- S6


def n_min(sigma, eps_max):
    """S6: the smallest per-class batch (sigma/eps_max)^2 at which the mean noise norm sigma/sqrt(n)
    reaches S1's threshold; the d -> infinity limit of the 50% crossing (see crossing_n)."""
    sigma, e = np.asarray(sigma, dtype=float), np.asarray(eps_max, dtype=float)
    if np.any(sigma < 0) or np.any(e <= 0):
        raise ConfigError(f"need sigma >= 0 and eps_max > 0, got sigma={sigma}, eps_max={e}")
    return (sigma / e) ** 2


def mean_noise_law(n, sigma, d):
    """S6: the law of ||e_bar||^2 for the mean of n Gaussian noise vectors: sigma^2/(d n) * chi^2_d
    (a frozen scipy distribution)."""
    return stats.chi2(d, scale=np.asarray(sigma, dtype=float) ** 2 / (d * np.asarray(n, dtype=float)))


def exceed_probability(n, sigma, eps, d, C=1):
    """S6: P(some of C classes has ||e_bar|| > eps) = 1 - (1 - P(chi^2_d > d n eps^2 / sigma^2))^C."""
    n, sigma, eps = (np.asarray(v, dtype=float) for v in (n, sigma, eps))
    p1 = stats.chi2.sf(d * n * eps**2 / sigma**2, d)
    with np.errstate(divide="ignore"):  # p1 = 1 gives log1p(-1) = -inf and probability 1
        return -np.expm1(C * np.log1p(-p1))


def crossing_n(sigma, eps, d, C=1):
    """S6: the (real) n at which exceed_probability is 1/2:
    sigma^2 q / (d eps^2), q the upper 1 - 2^(-1/C) quantile of chi^2_d; q/d -> 1 as d grows, so
    crossing_n -> n_min(sigma, eps)."""
    q = stats.chi2.isf(-np.expm1(-np.log(2.0) / C), d)
    return np.asarray(sigma, dtype=float) ** 2 * q / (d * np.asarray(eps, dtype=float) ** 2)


def monte_carlo_batch(ns, sigma, d, C, trials, seed=0, noise="gaussian"):
    """S6 by simulation with ETF class means in R^d and eps = eps_max(-1/(C-1)).

    For each n in ns: draw n noise vectors per class (``noise`` as in the module docstring), fuse
    each class to its sample mean mu_c + e_bar_c, and record over `trials` draws
    ``exceed``: the fraction where some class has ||e_bar_c|| > eps_max (S1's guarantee lost), and
    ``fail``: the fraction where the fused tokens are actually not separated (signs checked), and
    ``unexplained``: draws that fail although every class is within eps_max (S1 says: none).
    The mean is accumulated draw by draw, so every n costs one more (trials, C, d) sample."""
    if noise not in ("gaussian", "sphere"):
        raise ConfigError(f"noise must be 'gaussian' or 'sphere', got {noise!r}")
    ns = np.sort(np.asarray(ns, dtype=int))
    if ns[0] < 1 or d < C or trials < 1:
        raise ConfigError(f"need n >= 1, d >= C and trials >= 1; got n={ns[0]}, d={d}, C={C}")
    rng = np.random.default_rng(seed)
    eps = float(eps_max(etf_rho(C)))
    g = np.eye(C) - 1.0 / C  # ETF means: centred basis vectors, normalised
    mu = np.zeros((C, d))
    mu[:, :C] = g / np.linalg.norm(g, axis=1, keepdims=True)
    labels = np.arange(C)
    total = np.zeros((trials, C, d))
    exceed, fail, unexplained = [], [], []
    for k in range(1, ns[-1] + 1):
        e = rng.standard_normal((trials, C, d))
        if noise == "gaussian":
            total += e * (sigma / np.sqrt(d))
        else:
            total += e * (sigma / np.linalg.norm(e, axis=-1, keepdims=True))
        if k in ns:
            ebar = total / k
            over = np.any(np.linalg.norm(ebar, axis=-1) > eps, axis=-1)
            bad = ~separated(mu + ebar, labels)
            exceed.append(over.mean())
            fail.append(bad.mean())
            unexplained.append(int(np.sum(bad & ~over)))
    return {
        "n": ns,
        "exceed": np.array(exceed),
        "fail": np.array(fail),
        "unexplained": np.array(unexplained),
        "eps_max": eps,
    }


def half_crossing(ns, frac):
    """S6: where a fraction that falls with n first drops to 1/2, linearly interpolated between
    consecutive ns; NaN when it never crosses."""
    ns, y = np.asarray(ns, dtype=float), np.asarray(frac, dtype=float)
    idx = np.nonzero((y[:-1] > 0.5) & (y[1:] <= 0.5))[0]
    if idx.size == 0:
        return float("nan")
    i = idx[0]
    return float(ns[i] + (y[i] - 0.5) / (y[i] - y[i + 1]) * (ns[i + 1] - ns[i]))
