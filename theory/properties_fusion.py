"""Hypothesis properties of S2, S3, S4, S5 and S7, one claim each; call any of them with no arguments."""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from deepfusion.theory import fusion
from deepfusion.theory.check import require

classes = st.integers(2, 12)
per_class = st.integers(2, 128)
betas = st.floats(0.05, 30.0)
alphas = st.floats(0.05, 4.0)
spreads = st.floats(0.01, 3.0)
fractions = st.floats(0.0, 1.0)
SETTINGS = settings(deadline=None, max_examples=50, derandomize=True)


def _block_tokens(C, n, d, seed):
    """(C, d) ETF means (centred basis vectors) and (C, n, d) random deviations orthogonal to them
    with zero class mean: S2's setting with unequal deviation norms."""
    rng = np.random.default_rng(seed)
    mu = np.eye(C, d) - np.eye(C, d).mean(0)
    e = rng.normal(size=(C, n, d))
    e[..., :C] = 0.0
    e -= e.mean(1, keepdims=True)
    return mu, e


@SETTINGS
@given(
    C=st.integers(2, 6),
    n=st.integers(2, 6),
    w=st.tuples(fractions, fractions, fractions),
    alpha=alphas,
    seed=st.integers(0, 10**6),
)
def s2_layer_map_matches_block_matrix(C, n, w, alpha, seed):
    """S2: one residual block layer on ETF means and zero-class-mean deviations (random, unequal
    norms) scales means by 1 + alpha kappa(m) and deviations by 1 + alpha (a_self - a_same)."""
    z = w[0] + (n - 1) * w[1] + (C - 1) * n * w[2]
    assume(z > 1e-6)
    a_self, a_same, a_out = (v / z for v in w)
    m = a_self + (n - 1) * a_same
    d = C + 5
    mu, e = _block_tokens(C, n, d, seed)
    X = (mu[:, None] + e).reshape(C * n, d)
    Y = (X + alpha * fusion.block_matrix(C, n, a_self, a_same, a_out) @ X).reshape(C, n, d)
    mean_f, dev_f = fusion.layer_coefficients(a_self, a_same, m, C, alpha)
    require(np.allclose(Y.mean(1), mean_f * mu, atol=1e-12), "failed: np.allclose(Y.mean(1), mean_f * mu, atol=1e-12)")
    require(
        np.allclose(Y - Y.mean(1, keepdims=True), dev_f * e, atol=1e-12),
        "failed: np.allclose(Y - Y.mean(1, keepdims=True), dev_f * e, atol=1e-12)",
    )


def _simplex_tokens(C, n, r):
    """(C n, C + C n) tokens of S2's symmetric configuration: unit ETF means in the first C
    coordinates, each class's deviations a regular simplex of norm r in its own n coordinates."""
    g = np.eye(C) - 1.0 / C
    mu = np.zeros((C, C + C * n))
    mu[:, :C] = g / np.linalg.norm(g, axis=1, keepdims=True)
    e = np.zeros((C, n, C + C * n))
    block = (np.eye(n) - 1.0 / n) * (r / np.sqrt(1.0 - 1.0 / n))
    for c in range(C):
        e[c, :, C + c * n : C + (c + 1) * n] = block
    return (mu[:, None] + e).reshape(C * n, -1)


def _spread(X, C):
    """r of class-major tokens: RMS deviation from the class mean over the RMS class-mean norm."""
    Xs = X.reshape(C, -1, X.shape[-1])
    means = Xs.mean(1)
    return np.sqrt(((Xs - means[:, None]) ** 2).sum(-1).mean() / (means**2).sum(-1).mean())


@SETTINGS
@given(C=st.integers(2, 5), n=st.integers(2, 5), m=fractions, t=fractions, alpha=alphas, r=st.floats(0.05, 3.0))
def s2_layer_map_is_the_spread_after_the_layer(C, n, m, t, alpha, r):
    """S2: layer_map gives the spread of the projected layer output for any block weights (a share t
    of the class mass on the token itself), including alpha (a_same - a_self) > 1, where the
    deviation factor is negative and only its absolute value is a spread."""
    a_self, a_same, a_out = t * m, (1 - t) * m / (n - 1), (1 - m) / ((C - 1) * n)
    mean_f, _ = fusion.layer_coefficients(a_self, a_same, m, C, alpha)
    assume(abs(mean_f) > 1e-3)  # S2 needs 1 + alpha kappa(m) != 0
    X = _simplex_tokens(C, n, r)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Y = X + alpha * fusion.block_matrix(C, n, a_self, a_same, a_out) @ X
    Y /= np.linalg.norm(Y, axis=1, keepdims=True)
    want, got = _spread(Y, C), fusion.layer_map(_spread(X, C), a_self, a_same, m, C, alpha)
    require(
        abs(got - want) <= 1e-9 * max(want, 1e-12),
        f"layer_map gives {got!r}, the layer's output has spread {want!r} (C={C}, n={n}, m={m}, t={t}, "
        f"alpha={alpha}, r={r})",
    )


@SETTINGS
@given(C=classes, n=per_class, m=fractions, alpha=alphas, log_u2=st.floats(-8.0, -1.0))
def s2_common_part_grows_by_the_squared_factor(C, n, m, alpha, log_u2):
    """S2 (the ETF is an unstable invariant): for means a little off the ETF (|u|^2 = 10^log_u2 / C),
    one layer multiplies |common|^2/|centred|^2 by ((1 + alpha)/(1 + alpha kappa(m)))^2 exactly;
    no off-ETF state may be rounded onto the ETF."""
    assume(abs(1.0 + alpha * fusion.kappa(m, C)) > 1e-3)  # S2 needs 1 + alpha kappa(m) != 0
    u2 = 10.0**log_u2
    rho = (u2 - 1.0) / (C - 1)
    _, rho1 = fusion.layer_map_general(1.0, rho, m / n, m / n, m, C, alpha)

    def ratio(rh):  # |u|^2/|v|^2 = (1 + (C-1) rho) / ((C-1)(1 - rho))
        return (1.0 + (C - 1) * rh) / ((C - 1) * (1.0 - rh))

    want = fusion.common_growth_factor(m, C, alpha) * u2 / ((C - 1) * (1.0 - rho))
    require(abs(ratio(rho1) / want - 1) < 1e-5, (C, m, alpha, u2, ratio(rho1), want))


@SETTINGS
@given(C=classes, n=per_class, m=fractions, alpha=alphas, r=spreads)
def s2_etf_is_invariant(C, n, m, alpha, r):
    """S2: exact ETF means (rho = -1/(C-1)) stay an ETF after the layer."""
    assume(abs(1.0 + alpha * fusion.kappa(m, C)) > 1e-3)
    rho = -1.0 / (C - 1)
    _, rho1 = fusion.layer_map_general(r, rho, m / n, m / n, m, C, alpha)
    require(abs(rho1 - rho) < 1e-14, (C, m, alpha, rho1))


@SETTINGS
@given(C=classes, n=per_class, m=fractions, alpha=alphas, r=spreads)
def s3_spread_shrinks_iff_above_chance(C, n, m, alpha, r):
    """S3: with a_self = a_same, r' < r iff m > 1/C (and r' > r below chance)."""
    assume(abs(m - 1.0 / C) > 1e-9 and alpha * fusion.kappa(m, C) > -1.0)
    r_next = fusion.layer_map(r, m / n, m / n, m, C, alpha)
    require((r_next < r) == (m > 1.0 / C), (C, n, m, alpha, r, r_next))


@SETTINGS
@given(C=classes, n=per_class, w=st.tuples(fractions, fractions, fractions), alpha=st.floats(0.05, 1.0))
def s3_spread_shrinks_iff_same_beats_out(C, n, w, alpha):
    """S3 (general weights): r' < r iff a_same > a_out, since kappa - (a_self - a_same) = n (a_same - a_out)."""
    a_self, a_same, a_out = w
    z = a_self + (n - 1) * a_same + (C - 1) * n * a_out
    assume(z > 1e-6)
    a_self, a_same, a_out = a_self / z, a_same / z, a_out / z
    assume(abs(a_same - a_out) > 1e-9)
    m = a_self + (n - 1) * a_same
    assume(abs(1.0 + alpha * fusion.kappa(m, C)) > 1e-3)  # S2 needs 1 + alpha kappa(m) != 0 (C=2, m=0, alpha=1)
    r_next = fusion.layer_map(1.0, a_self, a_same, m, C, alpha)
    require((r_next < 1.0) == (a_same > a_out), "failed: (r_next < 1.0) == (a_same > a_out)")


@SETTINGS
@given(C=classes, n=per_class, beta=betas, r=spreads, centred=st.booleans())
def s4_mass_above_chance(C, n, beta, r, centred):
    """S4: softmax same-class mass m(r) > 1/C for beta > 0 (ETF means)."""
    require(
        fusion.block_mass(C, n, beta, r, centred=centred) > 1.0 / C,
        "failed: fusion.block_mass(C, n, beta, r, centred=centred) > 1.0 / C",
    )


@SETTINGS
@given(C=classes, n=per_class, beta=betas, r=spreads, dr=st.floats(1e-3, 2.0), t=fractions, centred=st.booleans())
def s4_mass_nonincreasing_in_r(C, n, beta, r, dr, t, centred):
    """S4: m(r) is non-increasing in r for any rho in [-1/(C-1), 0]."""
    rho = -t / (C - 1)
    m1 = fusion.block_mass(C, n, beta, r, rho, centred)
    m2 = fusion.block_mass(C, n, beta, r + dr, rho, centred)
    require(m2 <= m1 + 1e-12, (m1, m2))


@SETTINGS
@given(C=classes, n=per_class, beta=betas, t=fractions)
def s4_mass_tends_to_m_star(C, n, beta, t):
    """S4: m(r) -> m* = 1/(1 + (C-1) exp(-beta (1 - rho))) as r -> 0."""
    rho = -t / (C - 1)
    require(
        abs(fusion.block_mass(C, n, beta, 1e-7, rho) - fusion.m_star(C, beta, rho)) < 1e-9,
        "failed: abs(fusion.block_mass(C, n, beta, 1e-7, rho) - fusion.m_star(C, beta, rho)) < 1e-9",
    )


def _centred_range(C, n):
    # centred cosines: same-class beats cross-class (a_same > a_out) iff r^2 < (n-1)(1-rho)
    return np.sqrt((n - 1) * (1 + 1.0 / (C - 1)))


@SETTINGS
@given(C=classes, n=per_class, beta=betas, alpha=alphas, t=st.floats(0.0, 0.99))
def s5_spread_nonincreasing(C, n, beta, alpha, t):
    """S5: under ETF means and a_same > a_out at r0, r_l is non-increasing in l (strictly while
    a_same - a_out is resolvable in floating point)."""
    r0 = t * _centred_range(C, n)
    f = fusion.mean_field(C, n, beta, alpha, r0, 30)
    steps = np.diff(f.r)
    require(np.all(steps <= 0.0), f.r)
    resolvable = n * (f.a_same - f.a_out) > 1e-9
    require(
        np.all(steps[resolvable & (f.r[:-1] > 1e-300)] < 0.0),
        "failed: np.all(steps[resolvable & (f.r[:-1] > 1e-300)] < 0.0)",
    )


@SETTINGS
@given(C=classes, n=per_class, beta=betas, alpha=alphas, t=st.floats(0.0, 0.99))
def s5_mass_nondecreasing(C, n, beta, alpha, t):
    """S5: m_l is non-decreasing in l and stays below m* (ETF means, r0 in the fusion range)."""
    f = fusion.mean_field(C, n, beta, alpha, t * _centred_range(C, n), 30)
    require(np.all(np.diff(f.m) >= -1e-12), f.m)
    require(np.all(f.m <= f.m_star + 1e-12), "failed: np.all(f.m <= f.m_star + 1e-12)")


@SETTINGS
@given(C=classes, n=per_class, beta=betas, alpha=alphas, t=st.floats(0.01, 2.0))
def s5_spread_grows_above_critical(C, n, beta, alpha, t):
    """S5 (converse): with r0 > r_c = sqrt((n-1)(1 - rho)) and alpha < C - 1, r_l increases strictly
    (towards infinity), while a_same - a_out is resolvable in floating point."""
    assume(alpha < C - 1)
    r0 = fusion.critical_spread(n, -1.0 / (C - 1)) * (1.0 + t)
    f = fusion.mean_field(C, n, beta, alpha, r0, 30)
    resolvable = n * (f.a_out - f.a_same) > 1e-9 * f.a_out
    require(np.all(np.diff(f.r)[resolvable] > 0.0) and np.all(np.diff(f.r) >= 0.0), f.r)


@SETTINGS
@given(C=classes, n=per_class, beta=betas, alpha=alphas)
def s5_critical_spread_is_a_fixed_point(C, n, beta, alpha):
    """S5: at r0 = r_c the same-class and cross-class weights are equal and r stays put."""
    r_c = fusion.critical_spread(n, -1.0 / (C - 1))
    f = fusion.mean_field(C, n, beta, alpha, r_c, 3)
    require(np.allclose(f.r, r_c, rtol=1e-10, atol=0), f.r)


@settings(deadline=None, max_examples=30, derandomize=True)
@given(C=classes, n=per_class, beta=st.floats(1.0, 10.0), alpha=st.floats(0.5, 2.0), r0=spreads)
def s5_rate_tends_to_limit(C, n, beta, alpha, r0):
    """S5: r_{l+1}/r_l -> 1/(1 + alpha kappa(m*)) once r_l is small."""
    f = fusion.mean_field(C, n, beta, alpha, r0, 250)
    assume(1e-250 < f.r[-1] < 1e-5)
    require(abs(f.r[-1] / f.r[-2] - f.rate) < 1e-3 * f.rate, "failed: abs(f.r[-1] / f.r[-2] - f.rate) < 1e-3 * f.rate")


@SETTINGS
@given(C=classes, n=st.integers(2, 8), a=fractions, seed=st.integers(0, 10**6))
def s7_collapse_without_residual(C, n, a, seed):
    """S7: x <- A x with block attention at chance (m = 1/C) leaves no class means (ETF, zero-mean
    deviations); uniform attention (a = 1/n, a_self = a_same) leaves one point."""
    m = 1.0 / C
    a_self = a * m  # any split of the in-class mass between self and the others
    a_same = (m - a_self) / (n - 1)
    A = fusion.block_matrix(C, n, a_self, a_same, (1 - m) / ((C - 1) * n))
    d = C + 4
    mu, e = _block_tokens(C, n, d, seed)
    X = (mu[:, None] + e).reshape(C * n, d)
    means = (A @ X).reshape(C, n, d).mean(1)
    require(np.abs(means).max() < 1e-12, "failed: np.abs(means).max() < 1e-12")


@SETTINGS
@given(C=classes, m=fractions, alpha=alphas)
def s7_residual_keeps_class_means(C, m, alpha):
    """S7: with the residual, ETF class means are scaled by 1 + alpha kappa(m) >= 1 when m >= 1/C."""
    assume(m >= 1.0 / C)
    mean_f, _ = fusion.layer_coefficients(0.0, 0.0, m, C, alpha)
    require(mean_f >= 1.0 - 1e-12, "failed: mean_f >= 1.0 - 1e-12")


@SETTINGS
@given(C=classes, n=st.integers(2, 8), m_share=fractions, t=fractions, r=spreads)
def s7_deviations_survive_at_chance_without_residual(C, n, m_share, t, r):
    """S7 (corrected): at chance without residual the class means vanish, but each token keeps its
    deviation scaled by a_self - a_same, so class structure survives whenever a_self != a_same."""
    m = 1.0 / C
    a_self = t * m
    a_same = (m - a_self) / (n - 1)
    X = _simplex_tokens(C, n, r)
    Y = fusion.block_matrix(C, n, a_self, a_same, (1 - m) / ((C - 1) * n)) @ X
    Ys = Y.reshape(C, n, -1)
    require(np.abs(Ys.mean(1)).max() < 1e-12, "class means survive at chance")
    norms = np.linalg.norm(Y, axis=1)
    require(np.allclose(norms, abs(a_self - a_same) * r, rtol=1e-9, atol=1e-13), (norms[:3], a_self - a_same))


@SETTINGS
@given(C=classes, n=per_class, beta=betas, r=st.floats(1e-4, 1e-3))
def s7_spread_collapses_cubically_without_residual(C, n, beta, r):
    """S7: without residual, softmax on the symmetric configuration gives r' = k r^3 (1 + O(beta r^2))
    with k = beta m* / ((n-1) kappa(m*))."""
    a_self, a_same, _ = fusion.softmax_block_weights(C, n, beta, r)
    r1 = fusion.no_residual_map(r, a_self, a_same, a_self + (n - 1) * a_same, C)
    k = fusion.cubic_collapse_coefficient(C, n, beta)
    require(abs(r1 / (k * r**3) - 1) <= 2 * beta * r**2 + 1e-6, (C, n, beta, r, r1 / (k * r**3)))


PROPERTIES = {
    "S2": [
        s2_layer_map_matches_block_matrix,
        s2_layer_map_is_the_spread_after_the_layer,
        s2_common_part_grows_by_the_squared_factor,
        s2_etf_is_invariant,
    ],
    "S3": [s3_spread_shrinks_iff_above_chance, s3_spread_shrinks_iff_same_beats_out],
    "S4": [s4_mass_above_chance, s4_mass_nonincreasing_in_r, s4_mass_tends_to_m_star],
    "S5": [
        s5_spread_nonincreasing,
        s5_mass_nondecreasing,
        s5_rate_tends_to_limit,
        s5_spread_grows_above_critical,
        s5_critical_spread_is_a_fixed_point,
    ],
    "S7": [
        s7_collapse_without_residual,
        s7_residual_keeps_class_means,
        s7_deviations_survive_at_chance_without_residual,
        s7_spread_collapses_cubically_without_residual,
    ],
}
