"""A perturbation bound for the idealised layer (S5b): how far tokens whose Gram matrix deviates by
delta from the symmetric configuration can drift from the mean-field recursion of S5.

Layer: unit tokens X (M, d), Gram G = X X^T, A = softmax(beta G) by rows, Y = (I + alpha A) X, rows
projected to the unit sphere. G0 is the Gram of the symmetric configuration at the mean-field state
(r_l, rho_l), A0 = softmax(beta G0) its exact block attention (S4). If max |G - G0| <= delta:

1. every logit moves by at most beta delta, so each weight moves by a factor in [e^(-2 beta delta),
   e^(2 beta delta)], each row by at most a = e^(2 beta delta) - 1 in l1, and each row's class mass by
   at most tanh(beta delta / 2) (S8(c) with omega = 2 beta delta);
2. the Gram before projection, K G K^T with K = I + alpha A, is within
   eta = (1 + alpha)^2 delta + 2 alpha (1 + alpha) a + alpha^2 a^2 of K0 G0 K0^T entrywise;
3. projection: with N0 the common diagonal of K0 G0 K0^T and c N0 its largest |off-diagonal| entry,
   the next Gram is within delta' = (1 + c) eta / (N0 - eta) of the next symmetric Gram (when eta < N0).

Iterating gives delta_l for every layer, hence |m_l - m_l^mf| <= tanh(beta delta_l / 2) and
|q_l - q_l^mf| <= delta_l with q = 1/(1 + r^2) the mean class-block Gram entry (S4). The bound is
rigorous and grows geometrically with depth; it is useful for few layers or large d.
"""

from __future__ import annotations

import numpy as np

from deepfusion.errors import ConfigError
from deepfusion.theory import fusion


def softmax_row_shift(beta, delta):
    """S5b step 1: l1 bound a = e^(2 beta delta) - 1 on a row's change when logits move by <= beta delta."""
    return float(np.expm1(2.0 * beta * delta))


def symmetric_gram(C, n, r, rho=None):
    """S5b: (M, M) Gram of unit tokens in the symmetric configuration at spread r (class-major):
    1 on the diagonal, s_c = (1 - r^2/(n-1))/(1 + r^2) within a class, rho/(1 + r^2) across."""
    same, cross = fusion.cosines(r, n, fusion.etf_rho(C) if rho is None else rho)
    blocks = np.kron(np.eye(C), np.ones((n, n)))
    G = np.where(blocks > 0, float(same), float(cross))
    np.fill_diagonal(G, 1.0)
    return G


def layer_step(delta, C, n, beta, alpha, r, rho=None):
    """S5b: (delta', eta, N0, c) for one layer from the mean-field state r (unit tokens)."""
    a_self, a_same, a_out = fusion.softmax_block_weights(C, n, beta, r, rho)
    K0 = np.eye(C * n) + alpha * fusion.block_matrix(C, n, a_self, a_same, a_out)
    H0 = K0 @ symmetric_gram(C, n, r, rho) @ K0.T
    N0 = float(H0[0, 0])
    c = float(np.abs(H0 - np.diag(np.diag(H0))).max() / N0)
    a = softmax_row_shift(beta, delta)
    eta = (1.0 + alpha) ** 2 * delta + 2.0 * alpha * (1.0 + alpha) * a + alpha**2 * a**2
    if eta >= N0:
        return np.inf, eta, N0, c
    return (1.0 + c) * eta / (N0 - eta), eta, N0, c


def trajectory_bound(C, n, beta, alpha, r0, layers, delta0, rho=None):
    """S5b: delta_l (layers + 1,) along the mean-field trajectory from r0, and the resulting bounds on
    |m_l - m_l^mf| (tanh(beta delta_l / 2), capped at 1) and on |q_l - q_l^mf| (delta_l)."""
    mf = fusion.mean_field(C, n, beta, alpha, r0, layers, rho)
    deltas = [float(delta0)]
    for layer in range(layers):
        deltas.append(layer_step(deltas[-1], C, n, beta, alpha, mf.r[layer], mf.rho[layer])[0])
    deltas = np.array(deltas)
    return {"mean_field": mf, "delta": deltas, "m_bound": np.minimum(np.tanh(beta * deltas / 2.0), 1.0)}


def gram_deviation(X, C, r, rho=None):
    """S5b: max |G - G0| for class-major tokens X (M, d) (projected to the sphere) and the symmetric
    Gram at spread r."""
    X = np.asarray(X, float)
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    return float(np.abs(U @ U.T - symmetric_gram(C, X.shape[0] // C, r, rho)).max())


def gaussian_tokens(C, n, d, sigma, seed=0):
    """S5b's Gaussian model: unit ETF means in the first C coordinates, w_i ~ N(0, sigma^2/(d - C) I)
    in the other d - C, centred per class: x_i = mu_c + w_i - mean_c(w). Not projected. The matching
    symmetric configuration has r^2 = sigma^2 (n - 1)/n (E |w_i - w_bar|^2)."""
    if d <= C:
        raise ConfigError(f"d must exceed C, got d={d}, C={C}")
    rng = np.random.default_rng(seed)
    g = np.eye(C) - 1.0 / C
    X = np.zeros((C, n, d))
    X[:, :, :C] = (g / np.linalg.norm(g, axis=1, keepdims=True))[:, None]
    w = rng.standard_normal((C, n, d - C)) * (sigma / np.sqrt(d - C))
    X[:, :, C:] = w - w.mean(1, keepdims=True)
    return X.reshape(C * n, d)


def gaussian_delta_bound(C, n, d, sigma, p=0.01):
    """S5b: with probability >= 1 - p, max |G - G0| <= this for ``gaussian_tokens`` (projected), G0 at
    r^2 = sigma^2 (n - 1)/n. Laurent-Massart: |chi^2_k/k - 1| <= tau = 2 sqrt(x/k) + 2x/k except with
    probability 2 e^(-x); polarisation w_i.w_j = (sigma^2/2)(Q+/k - Q-/k) bounds every raw inner product
    by sigma^2 tau (k = d - C, x = log(2 M^2 / p), union over M^2 pairs); centring multiplies the bound
    by (2 (n-1)/n)^2; the projection step of the module docstring (N0 = 1 + r^2) gives the result."""
    M, k = C * n, d - C
    x = np.log(2.0 * M**2 / p)
    tau = 2.0 * np.sqrt(x / k) + 2.0 * x / k
    eta = (2.0 * (n - 1) / n) ** 2 * sigma**2 * tau
    r2 = sigma**2 * (n - 1) / n
    N0 = 1.0 + r2
    c = max(abs(1.0 - r2 / (n - 1)), 1.0 / (C - 1)) / N0
    return np.inf if eta >= N0 else (1.0 + c) * eta / (N0 - eta)
