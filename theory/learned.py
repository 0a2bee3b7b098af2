"""The trained layer's attention: learned scores (S8), value and output maps (S9), several heads (S11).

Setting: S2's symmetric configuration scaled to token norm nu: x_i = nu (mu_c + e_i) / sqrt(1 + r^2)
with unit equiangular means (cosine rho, centred span V of dimension C - 1 for the ETF) and
regular-simplex deviations of norm r (span E of dimension C (n - 1)). A head scores pairs with the
bilinear form s_ij = x_i^T B x_j, B = W_Q^T W_K / sqrt(d_h) (query/key biases add row constants, which
softmax ignores, and a key term u^T x_j, which is part of the symmetry-breaking remainder below).

S8. beta_mu = tr(P_V B)/(C - 1) and beta_e = tr(P_E B)/(C (n - 1)) (the traces of B's compressions to
the class-mean and deviation spans) fix the block averages of the logits on the configuration:
s_self - s_same = g beta_e r^2 n/(n-1) and s_same - s_out = g (beta_mu (1 - rho) - beta_e r^2/(n-1)),
g = nu^2/(1 + r^2). When the scores equal their block average (B "respects the class symmetry"),
attention is S4's with these logits; S4 is the case beta_mu = beta_e = beta, nu = 1. A remainder eta
of the scores that breaks the symmetry moves each row's class mass by at most tanh(omega/4), omega the
row's oscillation of eta.

S9. A head adds alpha sum_j A_ij V x_j, V = W_O W_V. With V x = lambda_mu x on the means and
V x = lambda_e x on the deviations, class means are scaled by 1 + alpha lambda_mu kappa(m) and
deviations by 1 + alpha lambda_e (a_self - a_same).

S11. Several heads add their outputs: the factors become 1 + alpha sum_h lambda_mu^h kappa_h and
1 + alpha sum_h lambda_e^h (a_self^h - a_same^h).
"""

from __future__ import annotations

import numpy as np

from deepfusion.errors import ConfigError
from deepfusion.theory.bounds import etf_rho
from deepfusion.theory.fusion import kappa


def _f(x):
    return np.asarray(x, dtype=float)


# ---------------------------------------------------------------------------------------------- S8


def learned_logits(beta_mu, beta_e, r, n, rho, nu=1.0, tau=0.0):
    """S8: (s_self - s_out, s_same - s_out) of the bilinear score on the symmetric configuration.

    Tokens of norm nu, spread r, class-mean cosine rho; tau is an extra logit on the diagonal (zero
    for any bilinear score on the exact configuration, S8(a); kept for scores measured off it)."""
    r2, n, g = _f(r) ** 2, _f(n), _f(nu) ** 2 / (1.0 + _f(r) ** 2)
    same = g * (_f(beta_mu) * (1.0 - _f(rho)) - _f(beta_e) * r2 / (n - 1.0))
    return same + g * _f(beta_e) * r2 * n / (n - 1.0) + _f(tau), same


def learned_block_weights(C, n, beta_mu, beta_e, r, rho=None, nu=1.0, tau=0.0):
    """S8: (a_self, a_same, a_out) of softmax attention with the S8 logits; rows sum to one.

    beta_mu = beta_e = beta, nu = 1, tau = 0 gives theory.fusion.softmax_block_weights (S4)."""
    rho = etf_rho(C) if rho is None else rho
    self_out, same_out = learned_logits(beta_mu, beta_e, r, n, rho, nu, tau)
    top = np.maximum(np.maximum(self_out, same_out), 0.0)  # shift by the largest logit
    w_self, w_same, w_out = np.exp(self_out - top), np.exp(same_out - top), np.exp(-top)
    z = w_self + (_f(n) - 1.0) * w_same + (_f(C) - 1.0) * _f(n) * w_out
    return w_self / z, w_same / z, w_out / z


def learned_block_mass(C, n, beta_mu, beta_e, r, rho=None, nu=1.0, tau=0.0):
    """S8: the class mass m = a_self + (n-1) a_same with the S8 logits."""
    a_self, a_same, _ = learned_block_weights(C, n, beta_mu, beta_e, r, rho, nu, tau)
    return a_self + (_f(n) - 1.0) * a_same


def learned_m_star(C, n, beta_mu, rho=None, nu=1.0, tau=0.0):
    """S8: m as r -> 0: (e^tau + n - 1)/(e^tau + n - 1 + (C-1) n e^(-nu^2 beta_mu (1 - rho))); beta_e
    drops out. For tau = 0 it is S4's m* at beta = nu^2 beta_mu."""
    rho = etf_rho(C) if rho is None else _f(rho)
    n, w_in = _f(n), np.exp(_f(tau)) + _f(n) - 1.0
    return w_in / (w_in + (_f(C) - 1.0) * n * np.exp(-(_f(nu) ** 2) * _f(beta_mu) * (1.0 - rho)))


def span_projectors(means, deviations):
    """S8/S9: orthogonal projectors (D, D) onto the span V of the centred class means (C, D) and the
    span E of the deviations (M, D), with their dimensions (numerical rank)."""
    out = []
    for A in (np.asarray(means, float) - np.asarray(means, float).mean(0), np.asarray(deviations, float)):
        u, s, _ = np.linalg.svd(A.T, full_matrices=False)
        k = int(np.sum(s > s.max() * 1e-10)) if s.size and s.max() > 0 else 0
        out.append((u[:, :k] @ u[:, :k].T, k))  # (D, D) projector and the span's dimension
    return out


def symmetric_part(B, P_V, dim_V, P_E, dim_E):
    """S8: (beta_mu, beta_e, remainder) of a score matrix B (D, D): beta_mu = tr(P_V B)/dim V,
    beta_e = tr(P_E B)/dim E, and the part of B on the token span that breaks the class symmetry,
    P (B - beta_mu P_V - beta_e P_E) P with P = P_V + P_E."""
    B = np.asarray(B, float)
    beta_mu = float(np.trace(P_V @ B)) / dim_V
    beta_e = float(np.trace(P_E @ B)) / dim_E
    P = P_V + P_E
    return beta_mu, beta_e, P @ (B - beta_mu * P_V - beta_e * P_E) @ P


def logit_oscillation(eta, visible=None):
    """S8(c): per row i, omega_i = max_j eta_ij - min_j eta_ij over the visible j."""
    eta = np.asarray(eta, float)
    vis = np.ones(eta.shape, bool) if visible is None else np.asarray(visible, bool)
    return np.where(vis, eta, -np.inf).max(-1) - np.where(vis, eta, np.inf).min(-1)


def mass_shift_bound(omega):
    """S8(c): logits moved by eta change any row mass by at most tanh(omega/4), omega = osc(eta):
    the odds of a set change by a factor in [e^-omega, e^omega], and |sigma(L + w) - sigma(L)| <=
    tanh(w/4)."""
    return np.tanh(_f(omega) / 4.0)


# ---------------------------------------------------------------------------------------------- S9


def value_coefficients(a_self, a_same, m, C, alpha, lam_mu, lam_e, bias=0.0):
    """S9: (mean factor, deviation factor, common vector norm) of x + alpha (sum_j A_ij V x_j + c):
    1 + alpha lambda_mu kappa(m), 1 + alpha lambda_e (a_self - a_same), alpha |c|."""
    alpha = _f(alpha)
    return (
        1.0 + alpha * _f(lam_mu) * kappa(m, C),
        1.0 + alpha * _f(lam_e) * (_f(a_self) - _f(a_same)),
        alpha * _f(bias),
    )


def value_layer_map(r, a_self, a_same, m, C, alpha, lam_mu, lam_e, bias=0.0):
    """S9: r' = r |1 + alpha lambda_e (a_self - a_same)| / sqrt((1 + alpha lambda_mu kappa)^2 + alpha^2 |c|^2)
    for ETF means, deviations and a common output bias c orthogonal to both (c = 0: the S9 formula)."""
    mean_f, dev_f, c = value_coefficients(a_self, a_same, m, C, alpha, lam_mu, lam_e, bias)
    return _f(r) * np.abs(dev_f) / np.sqrt(mean_f**2 + c**2)


def fusion_and_denoising(a_self, a_same, a_out, n, lam_mu, lam_e):
    """S9: the two parts of (mean factor - deviation factor)/alpha = lambda_mu kappa - lambda_e delta:
    fusion by attention lambda_mu n (a_same - a_out) and denoising by the value map
    (lambda_mu - lambda_e)(a_self - a_same). With positive factors, r' < r iff their sum is > 0."""
    delta = _f(a_self) - _f(a_same)
    return _f(lam_mu) * _f(n) * (_f(a_same) - _f(a_out)), (_f(lam_mu) - _f(lam_e)) * delta


# --------------------------------------------------------------------------------------------- S11


def multihead_coefficients(a_self, a_same, m, C, alpha, lam_mu, lam_e):
    """S11: (mean factor, deviation factor) of x + alpha sum_h A_h V_h x; per-head arrays on the last
    axis: 1 + alpha sum_h lambda_mu^h kappa(m_h), 1 + alpha sum_h lambda_e^h (a_self^h - a_same^h)."""
    alpha = _f(alpha)
    mean_f = 1.0 + alpha * np.sum(_f(lam_mu) * kappa(m, C), axis=-1)
    dev_f = 1.0 + alpha * np.sum(_f(lam_e) * (_f(a_self) - _f(a_same)), axis=-1)
    return mean_f, dev_f


def multihead_layer_map(r, a_self, a_same, m, C, alpha, lam_mu, lam_e):
    """S11: r' = r |1 + alpha sum_h lambda_e^h delta_h| / |1 + alpha sum_h lambda_mu^h kappa_h|."""
    mean_f, dev_f = multihead_coefficients(a_self, a_same, m, C, alpha, lam_mu, lam_e)
    if np.any(mean_f == 0):
        raise ConfigError("S11 needs 1 + alpha sum_h lambda_mu^h kappa_h != 0")
    return _f(r) * np.abs(dev_f) / np.abs(mean_f)


def multihead_fusion_margin(a_self, a_same, a_out, n, lam_mu, lam_e):
    """S11: sum_h [lambda_mu^h kappa_h - lambda_e^h delta_h] = sum_h lambda_mu^h n (a_same^h - a_out^h)
    + sum_h (lambda_mu^h - lambda_e^h) delta_h; with both factors positive, r' < r iff it is > 0.
    For lambda_mu^h = lambda_e^h it is sum_h lambda^h n (a_same^h - a_out^h)."""
    fuse, denoise = fusion_and_denoising(a_self, a_same, a_out, n, lam_mu, lam_e)
    return np.sum(fuse + denoise, axis=-1)
