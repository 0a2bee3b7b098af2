"""Hypothesis properties of S1 and S6, one claim each; call any of them with no arguments."""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from deepfusion.theory import bounds, fusion
from deepfusion.theory.check import require

classes = st.integers(2, 12)
rhos = st.floats(-1.0, 0.0)
fractions = st.floats(0.0, 1.0)
sigmas = st.floats(0.01, 10.0)
SETTINGS = settings(deadline=None, max_examples=60, derandomize=True, database=None)


def _etf_means(C, d):
    g = np.eye(C) - 1.0 / C
    mu = np.zeros((C, d))
    mu[:, :C] = g / np.linalg.norm(g, axis=1, keepdims=True)
    return mu


@SETTINGS
@given(
    C=classes,
    n=st.integers(1, 4),
    extra=st.integers(1, 8),
    radius=fractions,
    pull=fractions,
    seed=st.integers(0, 2**31 - 1),
)
def s1_admissible_noise_keeps_blocks(C, n, extra, radius, pull, seed):
    """S1: noise with ||e_i|| <= eps_max keeps same-class inner products > 0 and cross-class <= 0.

    Directions mix a random vector with a push towards another class's mean (weight `pull`), so the
    draws reach into the adversarial region, not only the typical one."""
    d = C + extra
    mu = _etf_means(C, d)
    eps = float(bounds.eps_max(bounds.etf_rho(C)))
    if C == 2:
        eps *= 1 - 1e-9  # rho = -1: same-class positivity needs the strict eps < 1/sqrt(2)
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(C), n)
    target = mu[(labels + rng.integers(1, C, labels.size)) % C]  # another class's mean
    u = (1 - pull) * rng.normal(size=(labels.size, d)) / np.sqrt(d) + pull * target
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    e = u * eps * rng.uniform(radius, 1.0, size=(labels.size, 1))
    require(bounds.separated(mu[labels] + e, labels), (C, n, d, radius, pull))


@SETTINGS
@given(rho=rhos, f=st.floats(0.9, 0.999), g=st.floats(1.001, 1.1))
def s1_construction_is_tight(rho, f, g):
    """S1: the tangent-point construction keeps the cross inner product <= 0 just below eps_max and
    makes it > 0 just above (so no larger radius can be guaranteed, and no smaller one is needed)."""
    e = float(bounds.eps_max(rho))
    assume(e > 1e-6 and g * e < 1.0)
    for scale, positive in ((f, False), (g, True)):
        mu, noise = bounds.violating_construction(rho, scale * e)
        x = mu + noise
        require((x[0] @ x[1] > 0) == positive, (rho, scale, x[0] @ x[1]))


@SETTINGS
@given(rho=rhos, eps=st.floats(0.0, 0.99), seed=st.integers(0, 2**31 - 1))
def s1_no_noise_beats_worst_cosine(rho, eps, seed):
    """S1: no noise in the eps-balls gives a cross-class cosine above worst_cosine(rho, eps)."""
    rng = np.random.default_rng(seed)
    mu = bounds.pair_means(rho, 5)
    e = rng.normal(size=(256, 2, 5))
    e *= eps * rng.uniform(0, 1, (256, 2, 1)) ** 0.2 / np.linalg.norm(e, axis=-1, keepdims=True)
    x = mu + e
    cos = np.sum(x[:, 0] * x[:, 1], -1) / np.prod(np.linalg.norm(x, axis=-1), -1)
    require(
        cos.max() <= bounds.worst_cosine(rho, eps) + 1e-12, "failed: cos.max() <= bounds.worst_cosine(rho, eps) + 1e-12"
    )


@SETTINGS
@given(a=rhos, b=rhos)
def s1_eps_max_decreasing_in_rho(a, b):
    """S1: eps_max is strictly decreasing in rho (means further apart tolerate more noise)."""
    assume(abs(a - b) > 1e-9)
    lo, hi = min(a, b), max(a, b)
    require(bounds.eps_max(lo) > bounds.eps_max(hi), "failed: bounds.eps_max(lo) > bounds.eps_max(hi)")


@SETTINGS
@given(rho=rhos)
def s1_simple_bound_below_eps_max(rho):
    """S1: the Cauchy-Schwarz bound never exceeds the exact threshold, and meets it only at rho = 0."""
    gap = bounds.eps_max(rho) - bounds.simple_bound(rho)
    require(gap >= -1e-15, "failed: gap >= -1e-15")
    if rho < -1e-6:
        require(gap > 0, "failed: gap > 0")


@SETTINGS
@given(C=classes, n=st.integers(1, 4), width=st.integers(1, 3), seed=st.integers(0, 2**31 - 1))
def s1_zero_cross_inner_product_counts_as_separated(C, n, width, seed):
    """S1(a) is an inequality <= 0: tokens with positive entries on disjoint coordinate blocks, one
    block per class, have cross-class inner products exactly 0 and count as separated."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(C), n)
    x = np.zeros((C * n, C * width))
    for i, c in enumerate(labels):
        x[i, c * width : (c + 1) * width] = rng.uniform(0.1, 2.0, width)
    require(bounds.separated(x, labels), f"orthogonal classes not separated (C={C}, n={n}, width={width})")
    x[0, (labels[0] + 1) % C * width] = 1e-3  # one positive cross-class inner product
    require(not bounds.separated(x, labels), "a positive cross-class inner product went unnoticed")


@SETTINGS
@given(C=classes, n=st.integers(2, 64), r=st.floats(0.0, 5.0), t=fractions)
def s1_relu_block_weights_have_no_cross_class_mass(C, n, r, t):
    """S1: for rho <= 0 every cross-class cosine rho/(1 + r^2) of the symmetric configuration is
    <= 0, so ReLU attention puts exactly zero weight across classes; weights are >= 0, rows sum to 1."""
    rho = -t / (C - 1)
    a_self, a_same, a_out = fusion.relu_block_weights(C, n, r, rho)
    require(a_out == 0.0 and a_self > 0 and a_same >= 0, (a_self, a_same, a_out))
    require(abs(a_self + (n - 1) * a_same + (C - 1) * n * a_out - 1) < 1e-12, "rows do not sum to one")


@SETTINGS
@given(s1=sigmas, s2=sigmas, C=classes)
def s6_n_min_increasing_in_sigma(s1, s2, C):
    """S6: noisier augmentation needs a larger batch: n_min is increasing in sigma."""
    assume(abs(s1 - s2) > 1e-9)
    e = bounds.eps_max(bounds.etf_rho(C))
    lo, hi = min(s1, s2), max(s1, s2)
    require(bounds.n_min(lo, e) < bounds.n_min(hi, e), "failed: bounds.n_min(lo, e) < bounds.n_min(hi, e)")


@SETTINGS
@given(sigma=sigmas, C=classes, d=st.integers(2, 4096), n=st.integers(1, 10_000))
def s6_exceed_probability_falls_with_n(sigma, C, d, n):
    """S6: the chance that some class's mean noise exceeds eps_max does not grow with the batch."""
    e = bounds.eps_max(bounds.etf_rho(C))
    p = bounds.exceed_probability(np.array([n, n + 1]), sigma, e, d, C)
    require(p[1] <= p[0] + 1e-15, "failed: p[1] <= p[0] + 1e-15")


@SETTINGS
@given(sigma=sigmas, C=classes, d=st.integers(8, 4096))
def s6_crossing_near_n_min(sigma, C, d):
    """S6: for one class the 50% crossing lies within a factor 1 +- 2/sqrt(d) of n_min (Chebyshev on
    chi^2_d / d), so it tends to n_min as d grows."""
    e = bounds.eps_max(bounds.etf_rho(C))
    ratio = bounds.crossing_n(sigma, e, d, 1) / bounds.n_min(sigma, e)
    require(abs(ratio - 1) <= 2 / np.sqrt(d), (d, ratio))


PROPERTIES = {
    "S1": [
        s1_admissible_noise_keeps_blocks,
        s1_construction_is_tight,
        s1_no_noise_beats_worst_cosine,
        s1_eps_max_decreasing_in_rho,
        s1_simple_bound_below_eps_max,
        s1_zero_cross_inner_product_counts_as_separated,
        s1_relu_block_weights_have_no_cross_class_mass,
    ],
    "S6": [s6_n_min_increasing_in_sigma, s6_exceed_probability_falls_with_n, s6_crossing_near_n_min],
}
