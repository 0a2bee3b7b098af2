"""The learning dynamics of a head's attention (S13-S15, THEORY_DYNAMICS.md).

S13. The gradient of the loss L with respect to a head's score matrix B (s_ij = x_i^T B x_j) is, by the
chain rule through softmax, dL/dB = sum_ij A_ij (g_ij - gbar_i) x_i x_j^T with g_ij = <dL/do_i, V x_j>
and gbar_i = sum_k A_ik g_ik (o_i = sum_j A_ij V x_j the head's output). On the two-view configuration
(ETF class means a v_c, instance parts b p_k forming a regular simplex in each class, antipodal view
parts u w_i, w_i' = -w_i) at uniform attention the projections of this flow onto the three spans
decouple: d beta_X/dt = k_X lambda_X Gamma_X, Gamma_X = sum_i <q_i, P_X-unit part of x_i>,
q_i = -dL/do_i, with k_V = a^3/(C-1)^2, k_I = b^3/(C (N_c - 1))^2, k_W = u^3/N^2.

S14. NT-Xent on unit outputs y_i with class part a v_c (ETF): the class component of -dL/dy_i is
(2 a/(M tau |y_i|)) [C p_o/(C-1) - (s_p - sbar_i)] v_c, p_o the anchor's softmax weight on other
classes, s_p its positive cosine and sbar_i its softmax-weighted mean cosine. The bracket is negative
at small tau (same-class negatives repelled) and positive at large tau when s_same > s_out and
s_p - sbar_inf < C n/(C n - 1): a threshold tau* lies between.

S15. (a) explaining away: the drift of a same-class logit is -A_ij (g_ij - gbar_i) =
A_ij <q_i, V (x_j - xbar_i)>, xbar_i = sum_k A_ik x_k; as the positive takes the row (a_pos -> 1)
xbar_i -> x_i', whose class part equals x_j's, so the class channel's push vanishes and the sign is
the instance and view channels'. (b) pre-LN: the heads read LN(z) = (sqrt(D)/|z|) z: S13 holds with
a, b, u scaled by sqrt(D)/|z| (it does not vanish), and at uniform attention the S11 factor is 1, so
any change of r is the shift shared by all tokens. (c) batch size at equal steps and lr enters the
drift only through S14's bracket, which tends to a limit as N grows (the positive's share of the
softmax falls like 1/N).
"""

from __future__ import annotations

import numpy as np

from deepfusion.errors import ConfigError

# ---------------------------------------------------------------------------------------------- S13


def score_gradient(A, X, grad_out, V):
    """S13: dL/dB (D, D) for one head: sum_ij A_ij (g_ij - gbar_i) x_i x_j^T, g_ij = <grad_out_i, V x_j>.

    A (M, M) attention (rows sum to one, masked entries 0), X (M, D) the tokens the head reads,
    grad_out (M, D) dL/do_i, V (D, D) the value-output map W_O W_V."""
    A, X, G = (np.asarray(t, dtype=float) for t in (A, X, grad_out))
    g = G @ np.asarray(V, float) @ X.T  # (M, M): g_ij = <G_i, V x_j>
    W = A * (g - (A * g).sum(1, keepdims=True))
    return X.T @ W @ X


def span_drift(grad_B, P, dim):
    """S13: d beta_X/dt = -tr(P_X dL/dB)/dim X under gradient flow on B."""
    return -float(np.trace(np.asarray(P) @ np.asarray(grad_B))) / dim


def uniform_drift_constants(C, Nc, a, b, u):
    """S13: (k_V, k_I, k_W) with d beta_X/dt = k_X lambda_X Gamma_X at uniform attention over both
    views on the two-view configuration (N = C Nc instances, M = 2N tokens)."""
    N = C * Nc
    return a**3 / (C - 1.0) ** 2, b**3 / (C * (Nc - 1.0)) ** 2, u**3 / float(N) ** 2


# ---------------------------------------------------------------------------------------------- S14


def ntxent_blocks(s_p, s_s, s_o, n_s, n_o, tau):
    """S14: an anchor's softmax over the other tokens in blocks: (pi_p, pi_s, pi_o) per entry and
    (p_o, sbar) with p_o = n_o pi_o the mass on other classes and sbar the weighted mean cosine."""
    logits = np.array([s_p, s_s, s_o], float) / tau
    logits = logits - logits.max()
    w = np.exp(logits) * np.array([1.0, n_s, n_o])
    w = w / w.sum()
    sbar = w[0] * s_p + w[1] * s_s + w[2] * s_o
    return w / np.array([1.0, max(n_s, 1), max(n_o, 1)]), float(w[2]), float(sbar)


def class_bracket(s_p, s_s, s_o, C, n_s, n_o, tau):
    """S14: C p_o/(C-1) - (s_p - sbar): the sign of the class component of -dL/dy (positive: the loss
    pulls each output toward its class mean; negative: it pushes it away)."""
    _, p_o, sbar = ntxent_blocks(s_p, s_s, s_o, n_s, n_o, tau)
    return C * p_o / (C - 1.0) - (s_p - sbar)


def class_force(a, s_p, s_s, s_o, C, n_s, n_o, tau, M, norm=1.0):
    """S14: the class coefficient of -dL/dy_i for L the mean of the M anchors' NT-Xent losses:
    (2 a/(M tau |y_i|)) times the bracket (anchor term and the equal term from the other anchors)."""
    return 2.0 * a / (M * tau * norm) * class_bracket(s_p, s_s, s_o, C, n_s, n_o, tau)


def tau_star(s_p, s_s, s_o, C, n_s, n_o, lo=1e-2, hi=1e3, grid=400, iters=100):
    """S14: the largest temperature in [lo, hi] where the bracket changes sign (scanned down from hi on
    a log grid, then bisected); None without a sign change. Below lo the softmax underflows to the
    positive alone and the bracket to 0 in floating point."""
    f = lambda t: class_bracket(s_p, s_s, s_o, C, n_s, n_o, t)  # noqa: E731
    taus = np.exp(np.linspace(np.log(hi), np.log(lo), grid))
    signs = np.sign([f(t) for t in taus])
    change = np.nonzero(signs[1:] * signs[0] < 0)[0]
    if signs[0] == 0 or not len(change):
        return None
    a, b = np.log(taus[change[0] + 1]), np.log(taus[change[0]])
    for _ in range(iters):
        m = 0.5 * (a + b)
        if np.sign(f(np.exp(m))) == signs[0]:
            b = m
        else:
            a = m
    return float(np.exp(0.5 * (a + b)))


def two_view_cosines(a, b, u, w, C, Nc):
    """S14: (s_p, s_s, s_o) of unit tokens with coefficients (a, b, u, w) on the two-view configuration
    (own view u, the positive's view w; independent views: s_p gets 2uw)."""
    n2 = a * a + b * b + u * u + w * w
    return (a * a + b * b + 2 * u * w) / n2, (a * a - b * b / (Nc - 1.0)) / n2, -a * a / ((C - 1.0) * n2)


# ---------------------------------------------------------------------------------------------- S15


def logit_drift(A, X, grad_out, V):
    """S15(a): -dL/ds_ij = -A_ij (g_ij - gbar_i) = A_ij <q_i, V (x_j - xbar_i)> (M, M), q = -grad_out."""
    A, X, G = (np.asarray(t, dtype=float) for t in (A, X, grad_out))
    g = G @ np.asarray(V, float) @ X.T
    return -A * (g - (A * g).sum(1, keepdims=True))


def batch_limit_gap(s_p, s_s, s_o, C, Nc, tau):
    """S15(c): |bracket(N) - bracket(infinity)| at N = C Nc instances (both views visible), the
    limit taking the positive's share of the softmax to 0."""
    if Nc < 2:
        raise ConfigError(f"a batch needs >= 2 instances per class, got {Nc}")
    n_s, n_o = 2 * Nc - 2, 2 * C * Nc - 2 * Nc
    finite = class_bracket(s_p, s_s, s_o, C, n_s, n_o, tau)
    ls, lo = s_s / tau, s_o / tau
    top = max(ls, lo)
    ws, wo = np.exp(ls - top), (C - 1.0) * np.exp(lo - top)
    p_o, sbar = wo / (ws + wo), (ws * s_s + wo * s_o) / (ws + wo)
    return abs(finite - (C * p_o / (C - 1.0) - (s_p - sbar)))


# ------------------------------------------------------------------------------- the configuration


def _simplex(k):
    """(k, k) rows: k unit vectors with pairwise cosine -1/(k-1), summing to zero."""
    E = np.eye(k) - 1.0 / k
    return E / np.linalg.norm(E, axis=1, keepdims=True)


def two_view_configuration(C, Nc, a, b, u):
    """S13: the two-view configuration, view-major (tokens 0..N-1 first views, N..2N-1 second views;
    instance k = i mod N of class k // Nc): x_i = a v_c + b p_k + u w_i with w_i' = -w_i.

    Returns (X (2N, D), labels, inst, projectors {"V", "I", "W"} (D, D), dims {"V", "I", "W"}),
    D = C + C Nc + N; the spans are orthogonal."""
    if C < 2 or Nc < 2:
        raise ConfigError(f"the two-view configuration needs C >= 2 and Nc >= 2, got C={C}, Nc={Nc}")
    N = C * Nc
    D = C + C * Nc + N
    V = np.zeros((C, D))
    V[:, :C] = _simplex(C)
    P = np.zeros((N, D))
    for c in range(C):
        P[c * Nc : (c + 1) * Nc, C + c * Nc : C + (c + 1) * Nc] = _simplex(Nc)
    W = np.zeros((N, D))
    W[:, C + C * Nc :] = np.eye(N)
    inst = np.arange(2 * N) % N
    labels = inst // Nc
    sign = np.where(np.arange(2 * N) < N, 1.0, -1.0)[:, None]
    X = a * V[labels] + b * P[inst] + u * sign * W[inst]

    def proj(rows):
        Q, s, _ = np.linalg.svd(rows.T, full_matrices=False)
        Q = Q[:, s > 1e-10]
        return Q @ Q.T, Q.shape[1]

    (PV, dV), (PI, dI), (PW, dW) = proj(V), proj(P), proj(W)
    return X, labels, inst, {"V": PV, "I": PI, "W": PW}, {"V": dV, "I": dI, "W": dW}
