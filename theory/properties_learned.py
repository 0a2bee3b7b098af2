"""Hypothesis properties of S8-S12 and S5b, one claim each; call any of them with no arguments."""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from deepfusion.theory import configurations as cf
from deepfusion.theory import ffn, fusion, layernorm, learned, perturbation
from deepfusion.theory.check import require

small_C = st.integers(2, 4)
small_n = st.integers(2, 4)
classes = st.integers(2, 12)
per_class = st.integers(2, 128)
fractions = st.floats(0.0, 1.0)
temps = st.floats(-5.0, 20.0)
eigen = st.floats(-2.0, 3.0)
seeds = st.integers(0, 2**31 - 1)
SETTINGS = settings(deadline=None, max_examples=40, derandomize=True, database=None)


def _softmax(S):
    E = np.exp(S - S.max(-1, keepdims=True))
    return E / E.sum(-1, keepdims=True)


def _spread(X, C):
    Xs = X.reshape(C, -1, X.shape[-1])
    means = Xs.mean(1)
    return np.sqrt(((Xs - means[:, None]) ** 2).sum(-1).mean() / (means**2).sum(-1).mean())


def _block_averages(S, C, n):
    same = np.kron(np.eye(C), np.ones((n, n))) > 0
    eye = np.eye(C * n, dtype=bool)
    return S[eye].mean(), S[same & ~eye].mean(), S[~same].mean()


@SETTINGS
@given(C=small_C, n=small_n, r=st.floats(0.05, 2.0), nu=st.floats(0.5, 4.0), seed=seeds)
def s8_block_averages_are_fixed_by_two_traces(C, n, r, nu, seed):
    """S8(a): for any score matrix B, the block averages of x_i^T B x_j on the symmetric configuration
    are learned_logits(beta_mu, beta_e) with beta_mu, beta_e the traces of B on the mean and deviation spans."""
    cfg = cf.symmetric_configuration(C, n, r, C * n + 3, nu, seed=seed)
    B = np.random.default_rng(seed).standard_normal((cfg.X.shape[1],) * 2)
    bm, be, _ = learned.symmetric_part(B, cfg.P_V, C - 1, cfg.P_E, C * (n - 1))
    s_self, s_same, s_out = _block_averages(cfg.X @ B @ cfg.X.T, C, n)
    want = learned.learned_logits(bm, be, r, n, cfg.rho, nu)
    require(
        np.allclose([s_self - s_out, s_same - s_out], want, atol=1e-9 * nu**2 * (1 + abs(B).max())),
        (C, n, r, nu, s_self - s_out, s_same - s_out, want),
    )


@SETTINGS
@given(C=small_C, n=small_n, r=st.floats(0.05, 2.0), bm=temps, be=temps, seed=seeds)
def s8_symmetric_scores_give_block_attention(C, n, r, bm, be, seed):
    """S8(b): scores that act as beta_mu on the means and beta_e on the deviations (anything on the rest
    of the space) give attention equal to learned_block_weights in every row."""
    cfg = cf.symmetric_configuration(C, n, r, C * n + 4, seed=seed)
    B = cf.symmetric_map(cfg, bm, be, rest=np.random.default_rng(seed).standard_normal((C * n + 4,) * 2))
    A = _softmax(cfg.X @ B @ cfg.X.T)
    a_self, a_same, a_out = learned.learned_block_weights(C, n, bm, be, r)
    want = fusion.block_matrix(C, n, a_self, a_same, a_out)
    require(np.abs(A - want).max() < 1e-10, (C, n, r, bm, be, np.abs(A - want).max()))


@SETTINGS
@given(C=classes, n=per_class, beta=st.floats(0.0, 30.0), r=st.floats(0.0, 3.0))
def s8_equal_temperatures_are_s4(C, n, beta, r):
    """S8: beta_mu = beta_e = beta on unit tokens is S4's softmax of cosines."""
    got = learned.learned_block_weights(C, n, beta, beta, r)
    want = fusion.softmax_block_weights(C, n, beta, r)
    require(np.allclose(got, want, rtol=1e-10, atol=1e-300), (C, n, beta, r, got, want))


@SETTINGS
@given(C=classes, n=per_class, bm=st.floats(1e-3, 20.0), be=temps, r=st.floats(0.0, 3.0), t=fractions)
def s8_mass_above_chance(C, n, bm, be, r, t):
    """S8(b): m > 1/C whenever beta_mu (1 - rho) > 0, whatever beta_e (Jensen on the class-average logit)."""
    rho = -t / (C - 1)
    require(learned.learned_block_mass(C, n, bm, be, r, rho) > 1.0 / C, (C, n, bm, be, r, rho))


@SETTINGS
@given(
    C=classes,
    n=per_class,
    bm=st.floats(1e-3, 20.0),
    share=st.floats(-1.0, 1.0),
    r=st.floats(0.0, 3.0),
    dr=st.floats(1e-3, 2.0),
    t=fractions,
)
def s8_mass_nonincreasing_in_r(C, n, bm, share, r, dr, t):
    """S8(b): m is non-increasing in r when -(n-1) beta_mu (1-rho) <= beta_e <= beta_mu (1-rho)."""
    rho = -t / (C - 1)
    be = share * bm * (1 - rho) * (1.0 if share >= 0 else (n - 1))
    m1, m2 = (learned.learned_block_mass(C, n, bm, be, x, rho) for x in (r, r + dr))
    require(m2 <= m1 + 1e-12, (C, n, bm, be, r, dr, m1, m2))


@SETTINGS
@given(C=classes, n=per_class, bm=temps, be=temps, tau=st.floats(-3.0, 3.0), t=fractions, nu=st.floats(0.2, 3.0))
def s8_mass_tends_to_m_star(C, n, bm, be, tau, t, nu):
    """S8(b): m(r) -> learned_m_star as r -> 0 at any token norm nu (beta_e drops out)."""
    rho = -t / (C - 1)
    got = learned.learned_block_mass(C, n, bm, be, 1e-7, rho, nu=nu, tau=tau)
    require(abs(got - learned.learned_m_star(C, n, bm, rho, nu=nu, tau=tau)) < 1e-9, (C, n, bm, be, tau, nu))


@SETTINGS
@given(M=st.integers(2, 40), k=st.integers(1, 39), scale=st.floats(0.0, 5.0), seed=seeds)
def s8_mass_shift_within_tanh(M, k, scale, seed):
    """S8(c): adding eta to a row's logits moves the mass of any set of k tokens by at most
    tanh(omega/4), omega = max eta - min eta."""
    assume(k < M)
    rng = np.random.default_rng(seed)
    logits, eta = rng.normal(size=M) * 3, rng.normal(size=M) * scale
    before, after = _softmax(logits)[:k].sum(), _softmax(logits + eta)[:k].sum()
    omega = learned.logit_oscillation(eta[None])[0]
    require(abs(after - before) <= learned.mass_shift_bound(omega) + 1e-12, (before, after, omega))


@SETTINGS
@given(
    C=small_C,
    n=small_n,
    r=st.floats(0.05, 2.0),
    m=fractions,
    t=fractions,
    alpha=st.floats(0.05, 2.0),
    lm=eigen,
    le=eigen,
    bias=st.floats(0.0, 2.0),
    seed=seeds,
)
def s9_layer_map_is_the_spread_after_the_layer(C, n, r, m, t, alpha, lm, le, bias, seed):
    """S9: with V = lambda_mu on the means, lambda_e on the deviations and an output bias c orthogonal to
    both, the projected output of x + alpha (A V x + c) has spread value_layer_map (any block weights)."""
    a_self, a_same, a_out = t * m, (1 - t) * m / (n - 1), (1 - m) / ((C - 1) * n)
    assume(abs(1 + alpha * lm * fusion.kappa(m, C)) > 1e-3 or bias > 1e-3)
    cfg = cf.symmetric_configuration(C, n, r, C * n + 3, seed=seed)
    V = cf.symmetric_map(cfg, lm, le)
    c = cfg.P_W @ np.random.default_rng(seed).standard_normal(cfg.X.shape[1])
    c *= bias / max(np.linalg.norm(c), 1e-300)
    Y = cfg.X + alpha * (fusion.block_matrix(C, n, a_self, a_same, a_out) @ cfg.X @ V.T + c)
    Y /= np.linalg.norm(Y, axis=1, keepdims=True)
    want = learned.value_layer_map(r, a_self, a_same, m, C, alpha, lm, le, bias * np.sqrt(1 + r**2))
    require(abs(_spread(Y, C) - want) <= 1e-8 * max(want, 1e-12), (C, n, m, t, alpha, lm, le, _spread(Y, C), want))


@SETTINGS
@given(n=per_class, w=st.tuples(fractions, fractions, fractions), lm=eigen, le=eigen, C=classes)
def s9_factor_gap_is_fusion_plus_denoising(n, w, lm, le, C):
    """S9: (mean factor - deviation factor)/alpha = lambda_mu n (a_same - a_out) + (lambda_mu - lambda_e) delta."""
    z = w[0] + (n - 1) * w[1] + (C - 1) * n * w[2]
    assume(z > 1e-6)
    a_self, a_same, a_out = (v / z for v in w)
    mean_f, dev_f, _ = learned.value_coefficients(a_self, a_same, a_self + (n - 1) * a_same, C, 1.0, lm, le)
    fuse, denoise = learned.fusion_and_denoising(a_self, a_same, a_out, n, lm, le)
    require(abs((mean_f - dev_f) - (fuse + denoise)) < 1e-12, (mean_f - dev_f, fuse + denoise))


@SETTINGS
@given(C=small_C, n=small_n, H=st.integers(1, 4), r=st.floats(0.05, 2.0), alpha=st.floats(0.05, 1.0), data=st.data())
def s11_heads_add(C, n, H, r, alpha, data):
    """S11: H heads with their own block weights and eigenvalues: the projected output's spread is
    multihead_layer_map, and r' < r exactly when the margin is positive (both factors positive)."""
    rows = [data.draw(st.tuples(fractions, fractions, eigen, eigen)) for _ in range(H)]
    m, t, lm, le = (np.array(v) for v in zip(*rows))
    a_self, a_same = t * m, (1 - t) * m / (n - 1)
    a_out = (1 - m) / ((C - 1) * n)
    mean_f, dev_f = learned.multihead_coefficients(a_self, a_same, m, C, alpha, lm, le)
    assume(mean_f > 1e-3 and dev_f > 1e-3)
    cfg = cf.symmetric_configuration(C, n, r, C * n + 2)
    Y = cfg.X.copy()
    for h in range(H):
        Y += (
            alpha
            * fusion.block_matrix(C, n, a_self[h], a_same[h], a_out[h])
            @ cfg.X
            @ cf.symmetric_map(cfg, lm[h], le[h]).T
        )
    Y /= np.linalg.norm(Y, axis=1, keepdims=True)
    got, want = _spread(Y, C), learned.multihead_layer_map(r, a_self, a_same, m, C, alpha, lm, le)
    require(abs(got - want) <= 1e-8 * want, (got, want))
    margin = learned.multihead_fusion_margin(a_self, a_same, a_out, n, lm, le)
    assume(abs(margin) > 1e-9)
    require((got < r) == (margin > 0), (got, r, margin))


@SETTINGS
@given(d=st.integers(2, 64), gamma=st.floats(0.1, 3.0), seed=seeds)
def s10_layer_norm_is_scaled_projection_when_centred(d, gamma, seed):
    """S10(a): for x orthogonal to 1_d, gain gamma 1, no bias and eps = 0, LN(x) = gamma sqrt(d) x/|x|."""
    x = np.random.default_rng(seed).standard_normal((3, d))
    x -= x.mean(-1, keepdims=True)
    assume(np.all(np.linalg.norm(x, axis=-1) > 1e-6))
    got = layernorm.layer_norm(x, np.full(d, gamma), np.zeros(d), eps=0.0)
    require(np.allclose(got, layernorm.sphere_ln(x, gamma), rtol=1e-10, atol=1e-12), "LN != gamma sqrt(d) x/|x|")


@SETTINGS
@given(
    d=st.integers(2, 64),
    spread_g=st.floats(0.0, 1.0),
    shift=st.floats(-3.0, 3.0),
    bias=st.floats(0.0, 2.0),
    eps=st.floats(0.0, 0.1),
    seed=seeds,
)
def s10_error_within_bound(d, spread_g, shift, bias, eps, seed):
    """S10(b): |LN(x) - gamma sqrt(d) x/|x|| / (gamma sqrt(d)) <= gain + sqrt(2) sin(theta) + d eps/(2|Px|^2)
    + bias term."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4, d)) + shift
    g = 1.0 + spread_g * rng.uniform(-0.9, 0.9, d)
    b = rng.standard_normal(d) * bias / np.sqrt(d)
    assume(np.all(np.linalg.norm(x - x.mean(-1, keepdims=True), axis=-1) > 1e-3))
    err = layernorm.ln_error(x, g, b, eps)
    bound = layernorm.ln_error_terms(x, g, b, eps)["bound"]
    require(np.all(err <= bound + 1e-12), (err, bound))


@SETTINGS
@given(
    C=small_C,
    n=small_n,
    r=st.floats(0.05, 2.0),
    nu=st.floats(0.2, 20.0),
    gamma=st.floats(0.2, 3.0),
    m=fractions,
    t=fractions,
    lm=eigen,
    le=eigen,
)
def s10_pre_ln_map_matches_tokens(C, n, r, nu, gamma, m, t, lm, le):
    """S10(d): z + A V LN(z) on the symmetric configuration at norm nu: pre_ln_map gives the spread
    and the token norm afterwards (alpha = gamma sqrt(d)/nu)."""
    d = C * n + 3
    cfg = cf.symmetric_configuration(C, n, r, d, nu)
    a_self, a_same, a_out = t * m, (1 - t) * m / (n - 1), (1 - m) / ((C - 1) * n)
    ln = layernorm.layer_norm(cfg.X, np.full(d, gamma), np.zeros(d), eps=0.0)
    Z = cfg.X + fusion.block_matrix(C, n, a_self, a_same, a_out) @ ln @ cf.symmetric_map(cfg, lm, le).T
    r1, nu1 = layernorm.pre_ln_map(r, nu, [a_self], [a_same], [m], C, gamma, d, [lm], [le])
    assume(nu1 > 1e-6 * nu)
    require(abs(_spread(Z, C) - r1) <= 1e-8 * max(r1, 1e-12), (_spread(Z, C), r1))
    require(np.allclose(np.linalg.norm(Z, axis=1), nu1, rtol=1e-9), (np.linalg.norm(Z, axis=1)[:2], nu1))


@SETTINGS
@given(
    d=st.integers(2, 16),
    f=st.integers(2, 32),
    scale=st.floats(0.01, 2.0),
    n=st.integers(2, 12),
    spread=st.floats(0.05, 2.0),
    seed=seeds,
)
def s12_spread_within_bounds(d, f, scale, n, spread, seed):
    """S12: after z <- z + F(z) one class's relative spread lies within spread_bounds(r, L, g)."""
    rng = np.random.default_rng(seed)
    W1, W2 = rng.standard_normal((f, d)) * scale / np.sqrt(d), rng.standard_normal((d, f)) * scale / np.sqrt(f)
    b1, b2 = rng.standard_normal(f) * scale, rng.standard_normal(d) * scale
    mean = rng.standard_normal(d)
    Z = mean + rng.standard_normal((n, d)) * spread / np.sqrt(d)
    G = Z + ffn.ffn(Z, W1, b1, W2, b2)
    (s0,), (m0,) = ffn.class_spread_and_mean(Z, np.zeros(n))
    (s1,), (m1,) = ffn.class_spread_and_mean(G, np.zeros(n))
    L = ffn.ffn_lipschitz(W1, W2)
    gain = np.linalg.norm(m0 + ffn.ffn(m0, W1, b1, W2, b2)) / np.linalg.norm(m0)
    lo, hi = ffn.spread_bounds(s0 / np.linalg.norm(m0), L, gain)
    r1 = s1 / np.linalg.norm(m1)
    require(lo - 1e-12 <= r1 <= hi + 1e-12, (lo, r1, hi, L))


@SETTINGS
@given(x=st.floats(-50.0, 50.0))
def s12_gelu_slope_within_lipschitz_constant(x):
    """S12: |gelu'(x)| <= Phi(sqrt 2) + sqrt(2) phi(sqrt 2), with equality at x = sqrt(2)."""
    require(abs(ffn.gelu_derivative(x)) <= ffn.GELU_LIPSCHITZ + 1e-15, x)
    require(abs(ffn.gelu_derivative(np.sqrt(2.0)) - ffn.GELU_LIPSCHITZ) < 1e-15, "not attained at sqrt 2")


@SETTINGS
@given(
    C=small_C,
    n=small_n,
    beta=st.floats(0.0, 8.0),
    alpha=st.floats(0.0, 2.0),
    r=st.floats(0.05, 2.0),
    noise=st.floats(0.0, 0.05),
    seed=seeds,
)
def s5b_one_layer_within_bound(C, n, beta, alpha, r, noise, seed):
    """S5b: tokens whose Gram is within delta of the symmetric one end, after one idealised layer, within
    layer_step's delta' of the next symmetric Gram, and each row's class mass within tanh(beta delta/2)."""
    cfg = cf.symmetric_configuration(C, n, r, C * n + 6, seed=seed)
    X = cfg.X + np.random.default_rng(seed).standard_normal(cfg.X.shape) * noise
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    delta = perturbation.gram_deviation(X, C, r)
    A = _softmax(beta * X @ X.T)
    a_self, a_same, a_out = fusion.softmax_block_weights(C, n, beta, r)
    rows = (A * (np.kron(np.eye(C), np.ones((n, n))) > 0)).sum(1)
    require(np.abs(rows - (a_self + (n - 1) * a_same)).max() <= np.tanh(beta * delta / 2) + 1e-12, "mass")
    Y = X + alpha * A @ X
    r1, _ = fusion.layer_map_general(r, fusion.etf_rho(C), a_self, a_same, a_self + (n - 1) * a_same, C, alpha)
    bound = perturbation.layer_step(delta, C, n, beta, alpha, r)[0]
    require(perturbation.gram_deviation(Y, C, r1) <= bound + 1e-12, (delta, bound))


PROPERTIES = {
    "S8": [
        s8_block_averages_are_fixed_by_two_traces,
        s8_symmetric_scores_give_block_attention,
        s8_equal_temperatures_are_s4,
        s8_mass_above_chance,
        s8_mass_nonincreasing_in_r,
        s8_mass_tends_to_m_star,
        s8_mass_shift_within_tanh,
    ],
    "S9": [s9_layer_map_is_the_spread_after_the_layer, s9_factor_gap_is_fusion_plus_denoising],
    "S10": [s10_layer_norm_is_scaled_projection_when_centred, s10_error_within_bound, s10_pre_ln_map_matches_tokens],
    "S11": [s11_heads_add],
    "S12": [s12_spread_within_bounds, s12_gelu_slope_within_lipschitz_constant],
    "S5": [s5b_one_layer_within_bound],
}
