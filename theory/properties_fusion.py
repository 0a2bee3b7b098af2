"""Hypothesis properties of S3, S4, S5 and S7, one claim each; call any of them with no arguments."""

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
@given(C=st.integers(2, 6), n=st.integers(2, 6), w=st.tuples(fractions, fractions, fractions),
       alpha=alphas, seed=st.integers(0, 10**6))
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
    require(np.allclose(Y.mean(1), mean_f * mu, atol=1e-12), 'failed: np.allclose(Y.mean(1), mean_f * mu, atol=1e-12)')
    require(np.allclose(Y - Y.mean(1, keepdims=True), dev_f * e, atol=1e-12), 'failed: np.allclose(Y - Y.mean(1, keepdims=True), dev_f * e, atol=1e-12)')


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
    r_next = fusion.layer_map(1.0, a_self, a_same, m, C, alpha)
    require((r_next < 1.0) == (a_same > a_out), 'failed: (r_next < 1.0) == (a_same > a_out)')


@SETTINGS
@given(C=classes, n=per_class, beta=betas, r=spreads, centred=st.booleans())
def s4_mass_above_chance(C, n, beta, r, centred):
    """S4: softmax same-class mass m(r) > 1/C for beta > 0 (ETF means)."""
    require(fusion.block_mass(C, n, beta, r, centred=centred) > 1.0 / C, 'failed: fusion.block_mass(C, n, beta, r, centred=centred) > 1.0 / C')


@SETTINGS
@given(C=classes, n=per_class, beta=betas, r=spreads, dr=st.floats(1e-3, 2.0), t=fractions,
       centred=st.booleans())
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
    require(abs(fusion.block_mass(C, n, beta, 1e-7, rho) - fusion.m_star(C, beta, rho)) < 1e-9, 'failed: abs(fusion.block_mass(C, n, beta, 1e-7, rho) - fusion.m_star(C, beta, rho)) < 1e-9')


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
    require(np.all(steps[resolvable & (f.r[:-1] > 1e-300)] < 0.0), 'failed: np.all(steps[resolvable & (f.r[:-1] > 1e-300)] < 0.0)')


@SETTINGS
@given(C=classes, n=per_class, beta=betas, alpha=alphas, t=st.floats(0.0, 0.99))
def s5_mass_nondecreasing(C, n, beta, alpha, t):
    """S5: m_l is non-decreasing in l and stays below m* (ETF means, r0 in the fusion range)."""
    f = fusion.mean_field(C, n, beta, alpha, t * _centred_range(C, n), 30)
    require(np.all(np.diff(f.m) >= -1e-12), f.m)
    require(np.all(f.m <= f.m_star + 1e-12), 'failed: np.all(f.m <= f.m_star + 1e-12)')


@settings(deadline=None, max_examples=30, derandomize=True)
@given(C=classes, n=per_class, beta=st.floats(1.0, 10.0), alpha=st.floats(0.5, 2.0), r0=spreads)
def s5_rate_tends_to_limit(C, n, beta, alpha, r0):
    """S5: r_{l+1}/r_l -> 1/(1 + alpha kappa(m*)) once r_l is small."""
    f = fusion.mean_field(C, n, beta, alpha, r0, 250)
    assume(1e-250 < f.r[-1] < 1e-5)
    require(abs(f.r[-1] / f.r[-2] - f.rate) < 1e-3 * f.rate, 'failed: abs(f.r[-1] / f.r[-2] - f.rate) < 1e-3 * f.rate')


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
    require(np.abs(means).max() < 1e-12, 'failed: np.abs(means).max() < 1e-12')


@SETTINGS
@given(C=classes, m=fractions, alpha=alphas)
def s7_residual_keeps_class_means(C, m, alpha):
    """S7: with the residual, ETF class means are scaled by 1 + alpha kappa(m) >= 1 when m >= 1/C."""
    assume(m >= 1.0 / C)
    mean_f, _ = fusion.layer_coefficients(0.0, 0.0, m, C, alpha)
    require(mean_f >= 1.0 - 1e-12, 'failed: mean_f >= 1.0 - 1e-12')


PROPERTIES = {
    "S2": [s2_layer_map_matches_block_matrix],
    "S3": [s3_spread_shrinks_iff_above_chance, s3_spread_shrinks_iff_same_beats_out],
    "S4": [s4_mass_above_chance, s4_mass_nonincreasing_in_r, s4_mass_tends_to_m_star],
    "S5": [s5_spread_nonincreasing, s5_mass_nondecreasing, s5_rate_tends_to_limit],
    "S7": [s7_collapse_without_residual, s7_residual_keeps_class_means],
}
