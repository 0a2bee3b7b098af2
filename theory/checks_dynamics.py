"""Checks of S13-S15 (the learning dynamics), collected by ``deepfusion verify``.

Symbolic: the softmax chain rule of S13 on a symbolic 3-token head; S14's large-temperature limit;
S15(c)'s limit in N. Numeric: the S13 gradient against torch autograd (any attention) and the
decoupled drifts on the exact two-view configuration; S14's class force against autograd of NT-Xent;
S15's explaining away, pre-LN scaling and batch limit. Property: Hypothesis draws of sizes and
coefficients for each closed form. A failure raises CheckFailed (never assert).
"""

from __future__ import annotations

import numpy as np
import sympy as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deepfusion.theory import dynamics as dy
from deepfusion.theory import learned
from deepfusion.theory.check import Check, require, run_properties

SETTINGS = settings(deadline=None, max_examples=25, derandomize=True, database=None)


def _unit_parts(X, P):
    parts = (P @ X.T).T
    n = np.linalg.norm(parts, axis=1, keepdims=True)
    return parts / np.where(n > 0, n, 1.0)


def _drifts(C, Nc, a, b, u, lam, q, A=None):
    """(measured, closed form) span drifts of beta_V, beta_I, beta_W for value eigenvalues lam."""
    X, _, _, P, dims = dy.two_view_configuration(C, Nc, a, b, u)
    M = X.shape[0]
    Vm = sum(lam[k] * P[k] for k in "VIW")
    A = np.full((M, M), 1.0 / M) if A is None else A
    G = dy.score_gradient(A, X, -q, Vm)
    got = np.array([dy.span_drift(G, P[k], dims[k]) for k in "VIW"])
    gam = np.array([float((q * _unit_parts(X, P[k])).sum()) for k in "VIW"])
    want = np.array(dy.uniform_drift_constants(C, Nc, a, b, u)) * np.array([lam[k] for k in "VIW"]) * gam
    return got, want, gam


# ---------------------------------------------------------------------------------------------- S13


def s13_symbolic(quick):
    """d/ds_j sum_k softmax(s)_k g_k = A_j (g_j - gbar) on three symbolic logits, hence dL/dB."""
    s = sp.symbols("s0:3")
    g = sp.symbols("g0:3")
    Z = sum(sp.exp(x) for x in s)
    A = [sp.exp(x) / Z for x in s]
    out = sum(a * gg for a, gg in zip(A, g))
    gbar = out
    for j in range(3):
        require(sp.simplify(sp.diff(out, s[j]) - A[j] * (g[j] - gbar)) == 0, f"S13 softmax chain rule, logit {j}")
    return (
        "d(sum_k A_k g_k)/ds_j = A_j (g_j - gbar) for softmax rows (sympy), "
        "so dL/dB = sum A_ij (g_ij - gbar_i) x_i x_j^T"
    )


def s13_numeric(quick):
    """The chain-rule gradient equals torch autograd for random tokens, scores, value map and loss
    gradient; at uniform attention on the two-view configuration the span drifts are
    k_X lambda_X Gamma_X exactly."""
    rng = np.random.default_rng(13)
    worst = 0.0
    for M, D in ((6, 5), (10, 8)):
        X, B, Vm, G = (
            rng.standard_normal((M, D)),
            rng.standard_normal((D, D)) * 0.3,
            rng.standard_normal((D, D)),
            rng.standard_normal((M, D)),
        )
        Bt = torch.tensor(B, requires_grad=True)
        Xt = torch.tensor(X)
        At = torch.softmax(Xt @ Bt @ Xt.T, dim=1)
        (((At @ Xt @ torch.tensor(Vm).T) * torch.tensor(G)).sum()).backward()
        A = At.detach().numpy()
        ours = dy.score_gradient(A, X, G, Vm)
        worst = max(worst, float(np.abs(ours - Bt.grad.numpy()).max() / np.abs(Bt.grad.numpy()).max()))
    require(worst < 1e-10, f"S13: chain-rule gradient misses autograd by {worst:.1e}")
    exact = 0.0
    for C, Nc, a, b, u in ((3, 4, 1.0, 0.7, 0.4), (4, 3, 0.6, 1.3, 0.9), (2, 5, 1.7, 0.2, 0.5)):
        lam = {"V": rng.normal(), "I": rng.normal(), "W": rng.normal()}
        q = rng.standard_normal((2 * C * Nc, C + 2 * C * Nc))
        got, want, _ = _drifts(C, Nc, a, b, u, lam, q)
        exact = max(exact, float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-300)))
    require(exact < 1e-9, f"S13: uniform-attention drifts miss k_X lambda_X Gamma_X by {exact:.1e}")
    value = _value_drift_gap(rng)
    require(value < 1e-10, f"S13(c): d lambda_V/dt misses sum_i kappa a <q_i, v_c>/(C-1) by {value:.1e}")
    return (
        f"dL/dB = autograd to {worst:.0e}; decoupled drifts d beta_X/dt = k_X lambda_X Gamma_X exact to {exact:.0e}; "
        f"d lambda_V/dt at block attention exact to {value:.0e}"
    )


def _value_drift_gap(rng):
    """S13(c): with block attention (self, positive, same class, other class) on the configuration,
    -tr(P_V dL/dV)/(C-1) = sum_i kappa a <q_i, v_c(i)>/(C-1), dL/dV = -sum_i q_i xbar_i^T."""
    C, Nc, a, b, u = 3, 4, 0.9, 0.6, 0.4
    X, labels, inst, P, dims = dy.two_view_configuration(C, Nc, a, b, u)
    M = X.shape[0]
    w = rng.uniform(0.1, 1.0, 4)
    same, own = labels[:, None] == labels[None, :], inst[:, None] == inst[None, :]
    A = np.where(np.eye(M, dtype=bool), w[0], np.where(own, w[1], np.where(same, w[2], w[3])))
    A = A / A.sum(1, keepdims=True)
    q = rng.standard_normal(X.shape)
    got = float(np.trace(P["V"] @ (q.T @ (A @ X)))) / dims["V"]
    m = (A * same).sum(1)
    kappa = (C * m - 1.0) / (C - 1.0)
    want = float((kappa * a * (q * _unit_parts(X, P["V"])).sum(1)).sum()) / (C - 1.0)
    return abs(got - want) / max(abs(want), 1e-300)


@SETTINGS
@given(
    C=st.integers(2, 5),
    Nc=st.integers(2, 5),
    a=st.floats(0.1, 2.0),
    b=st.floats(0.1, 2.0),
    u=st.floats(0.1, 2.0),
    lv=st.floats(-2, 2),
    seed=st.integers(0, 2**31 - 1),
)
def s13_beta_drift_sign_is_lambda_times_gamma(C, Nc, a, b, u, lv, seed):
    """S13: at uniform attention sign(d beta_V/dt) = sign(lambda_V Gamma_V), whatever the other channels."""
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((2 * C * Nc, C + 2 * C * Nc))
    got, want, gam = _drifts(C, Nc, a, b, u, {"V": lv, "I": rng.normal(), "W": rng.normal()}, q)
    require(abs(got[0] - want[0]) <= 1e-9 * max(1.0, abs(want[0])), (C, Nc, got[0], want[0]))
    if abs(want[0]) > 1e-9:
        require(np.sign(got[0]) == np.sign(lv * gam[0]), (C, Nc, got[0], lv, gam[0]))


# ---------------------------------------------------------------------------------------------- S14


def _ntxent_grad(Y, inst, tau):
    """-dL/dY of the mean NT-Xent over the anchors (torch autograd), L on cosines of Y's rows."""
    Yt = torch.tensor(Y, requires_grad=True)
    U = Yt / Yt.norm(dim=1, keepdim=True)
    S = U @ U.T / tau
    M = Y.shape[0]
    S = S.masked_fill(torch.eye(M, dtype=torch.bool), float("-inf"))
    pos = torch.tensor((np.arange(M) + M // 2) % M)
    loss = (torch.logsumexp(S, 1) - S[torch.arange(M), pos]).mean()
    loss.backward()
    return -Yt.grad.numpy()


def s14_numeric(quick):
    """On unit outputs of the two-view configuration (independent view parts: w_i' orthogonal to w_i)
    the class coefficient of -dL/dy_i equals class_force, for temperatures on both sides of tau*."""
    C, Nc = 3, 4
    N = C * Nc
    worst, signs = 0.0, []
    for a, b, u, tau in ((1.0, 0.8, 0.5, 0.1), (1.0, 0.8, 0.5, 3.0), (0.7, 1.2, 0.3, 0.5), (1.0, 0.3, 0.2, 10.0)):
        X, labels, inst, P, _ = dy.two_view_configuration(C, Nc, a, b, 0.0)
        view = np.zeros((2 * N, 2 * N))
        view[np.arange(2 * N), np.arange(2 * N)] = u  # independent view parts, one direction per token
        Y = np.hstack([X, view])
        q = _ntxent_grad(Y, inst, tau)
        vc = np.hstack([_unit_parts(X, P["V"]), np.zeros((2 * N, 2 * N))])
        got = (q * vc).sum(1)
        norm = float(np.linalg.norm(Y[0]))
        s_p, s_s, s_o = dy.two_view_cosines(a, b, u, 0.0, C, Nc)
        want = dy.class_force(a / norm, s_p, s_s, s_o, C, 2 * Nc - 2, 2 * N - 2 * Nc, tau, 2 * N, norm)
        worst = max(worst, float(np.abs(got - want).max() / max(abs(want), 1e-12)))
        signs.append(np.sign(want))
    require(worst < 1e-8, f"S14: class force misses autograd by {worst:.1e}")
    require(
        signs[0] < 0 < signs[1], f"S14: expected a negative bracket at tau=0.1 and a positive one at 3, got {signs}"
    )
    return (
        f"class component of -dL/dy = (2a/(M tau |y|)) [C p_o/(C-1) - (s_p - sbar)] to {worst:.0e}; "
        "sign flips across tau*"
    )


def s14_symbolic(quick):
    """As tau -> infinity the softmax is uniform: the bracket tends to C n_o/((C-1)(1+n_s+n_o)) -
    (s_p - (s_p + n_s s_s + n_o s_o)/(1 + n_s + n_o)) (sympy limit), compared with the code."""
    t = sp.symbols("t", positive=True)
    sp_, ss, so = sp.Rational(9, 10), sp.Rational(3, 10), sp.Rational(-1, 10)
    C, ns, no = 3, 6, 12
    w = [sp.exp(sp_ / t), ns * sp.exp(ss / t), no * sp.exp(so / t)]
    Z = sum(w)
    bracket = C * (w[2] / Z) / (C - 1) - (sp_ - (w[0] * sp_ + w[1] * ss + w[2] * so) / Z)
    lim = sp.limit(bracket, t, sp.oo)
    want = sp.Rational(C * no, (C - 1) * (1 + ns + no)) - (sp_ - (sp_ + ns * ss + no * so) / (1 + ns + no))
    require(sp.simplify(lim - want) == 0, f"S14 limit {lim} != {want}")
    got = dy.class_bracket(0.9, 0.3, -0.1, C, ns, no, 1e7)
    require(abs(got - float(want)) < 1e-6, f"S14: code's bracket at tau=1e7 {got} vs limit {float(want)}")
    return f"bracket -> {want} = {float(want):.4f} as tau -> infinity (sympy); code agrees"


@SETTINGS
@given(ss=st.floats(0.05, 0.6), gap=st.floats(0.05, 0.5), C=st.integers(2, 8), Nc=st.integers(2, 64))
def s14_bracket_changes_sign_at_tau_star(ss, gap, C, Nc):
    """S14: with s_same > s_out and the positive nearest, the bracket is negative below tau* and
    positive above it (when tau* exists in the scanned range)."""
    s_p, s_o = min(ss + gap, 1.0), -ss / (C - 1)
    n_s, n_o = 2 * Nc - 2, 2 * C * Nc - 2 * Nc
    t = dy.tau_star(s_p, ss, s_o, C, n_s, n_o)
    if t is None:
        return
    require(
        dy.class_bracket(s_p, ss, s_o, C, n_s, n_o, t * 0.9) < 0 < dy.class_bracket(s_p, ss, s_o, C, n_s, n_o, t * 1.1),
        (ss, gap, C, Nc, t),
    )


# ---------------------------------------------------------------------------------------------- S15


def s15_numeric(quick):
    """(a) explaining away: on the two-view configuration with a loss gradient toward each token's own
    instance (q with a positive instance part, lambda_I > 0), the drift of a same-class logit per unit
    of its weight, <q_i, V (x_j - xbar_i)>, is negative once the positive takes a fifth of the row and
    falls further as it takes more, while the positive's logit rises; the drift identity of S15(a)
    holds exactly. (b) pre-LN: reading LN(z) = s z scales the S13 drift constants by s^3 (not to zero).
    (c) the bracket's distance from its large-batch limit halves when N doubles."""
    rng = np.random.default_rng(15)
    C, Nc, a, b, u = 3, 4, 1.0, 0.8, 0.5
    X, labels, inst, P, dims = dy.two_view_configuration(C, Nc, a, b, u)
    M = X.shape[0]
    pos = (inst[:, None] == inst[None, :]) & ~np.eye(M, dtype=bool)
    same = (labels[:, None] == labels[None, :]) & ~pos & ~np.eye(M, dtype=bool)
    rows = []
    for lam_v in (-0.5, 0.5):
        Vm = lam_v * P["V"] + 0.8 * P["I"] + 0.3 * P["W"]
        q = 0.3 * rng.standard_normal(X.shape) + _unit_parts(X, P["I"]) - 0.5 * _unit_parts(X, P["V"])
        per = []
        for a_pos in (0.2, 0.5, 0.9, 0.99):
            A = np.where(pos, a_pos, (1 - a_pos) / (M - 1))
            A[np.arange(M), np.arange(M)] = (1 - a_pos) / (M - 1)
            D = dy.logit_drift(A, X, -q, Vm)
            ident = A * (X @ (Vm.T @ q.T)).T - A * ((q @ Vm) * (A @ X)).sum(1, keepdims=True)
            require(np.abs(D - ident).max() < 1e-12, "S15(a): logit drift identity")
            per.append((float((D[same] / A[same]).mean()), float((D[pos] / A[pos]).mean())))
        per = np.array(per)
        require(
            np.all(per[:, 0] < 0) and np.all(np.diff(per[:, 0]) < 0) and np.all(per[:, 1] > 0),
            f"S15(a): same-class drifts {per[:, 0]}, positive drifts {per[:, 1]} (lambda_V={lam_v})",
        )
        rows.append(np.round(per[:, 0], 3).tolist())
    s = 2.5  # pre-LN reading scale sqrt(D)/|z|
    k1 = np.array(dy.uniform_drift_constants(C, Nc, a, b, u))
    ks = np.array(dy.uniform_drift_constants(C, Nc, s * a, s * b, s * u))
    require(np.allclose(ks / k1, s**3), "S15(b): drift constants do not scale by s^3")
    gaps = [dy.batch_limit_gap(0.9, 0.3, -0.15, C, n, 0.5) for n in (16, 32, 64, 128)]
    rates = [gaps[i] / gaps[i + 1] for i in range(3)]
    require(all(1.8 < r < 2.2 for r in rates), f"S15(c): gap does not halve with N: {rates}")
    return (
        f"(a) same-class logit drift per weight at a_pos = 0.2, 0.5, 0.9, 0.99: {rows[0]} (lambda_V < 0), "
        f"{rows[1]} (lambda_V > 0), the positive's > 0; (b) s^3 scaling; (c) gap ratios "
        f"{np.round(rates, 3).tolist()} per doubling of N"
    )


def s15_symbolic(quick):
    """(c) the bracket's large-N limit: the positive's weight 1/(1 + n_s e^{(s_s-s_p)/tau} + ...) -> 0
    as n_s, n_o = 2Nc - 2, 2(C-1)Nc grow (sympy limit in Nc), leaving the same-vs-other-class softmax."""
    Nc, t = sp.symbols("N_c tau", positive=True)
    sp_, ss, so, C = sp.Rational(9, 10), sp.Rational(3, 10), sp.Rational(-15, 100), 3
    ns, no = 2 * Nc - 2, 2 * (C - 1) * Nc
    w = [sp.exp(sp_ / t), ns * sp.exp(ss / t), no * sp.exp(so / t)]
    lim = sp.limit(w[0] / sum(w), Nc, sp.oo)
    require(lim == 0, f"S15(c): the positive's weight tends to {lim}")
    po = sp.limit(w[2] / sum(w), Nc, sp.oo)
    want = (C - 1) * sp.exp(so / t) / (sp.exp(ss / t) + (C - 1) * sp.exp(so / t))
    require(sp.simplify(po - want) == 0, f"S15(c): p_o limit {po}")
    return f"positive weight -> 0 and p_o -> {want} as N_c -> infinity (sympy)"


@SETTINGS
@given(C=st.integers(2, 6), Nc=st.integers(2, 6), a=st.floats(0.2, 2.0), s=st.floats(0.2, 5.0))
def s15_pre_ln_uniform_layer_keeps_r(C, Nc, a, s):
    """S15(b): at uniform attention a head's block factors are equal (kappa = delta = 0), so its S11
    factor is 1 at any reading scale: the layer moves r only through the shift shared by all tokens."""
    n, M = 2 * Nc, 2 * C * Nc
    w = 1.0 / M
    r1 = learned.multihead_layer_map(
        0.7, np.array([w]), np.array([w]), np.array([n * w]), C, s, np.array([a]), np.array([-a])
    )
    require(abs(r1 - 0.7) < 1e-12, (C, Nc, a, s, r1))


PROPERTIES = {
    "S13": [s13_beta_drift_sign_is_lambda_times_gamma],
    "S14": [s14_bracket_changes_sign_at_tau_star],
    "S15": [s15_pre_ln_uniform_layer_keeps_r],
}

CHECKS: list[Check] = [
    Check("S13", "symbolic", "softmax chain rule for the score gradient", s13_symbolic),
    Check("S13", "numeric", "score gradient = autograd; decoupled uniform-attention drifts", s13_numeric),
    Check("S13", "property", "sign of the beta_V drift = sign(lambda_V Gamma_V)", run_properties(PROPERTIES["S13"])),
    Check("S14", "symbolic", "large-temperature limit of the class bracket", s14_symbolic),
    Check("S14", "numeric", "class force = autograd of NT-Xent on the two-view configuration", s14_numeric),
    Check("S14", "property", "bracket changes sign at tau*", run_properties(PROPERTIES["S14"])),
    Check("S15", "symbolic", "large-batch limit of the bracket", s15_symbolic),
    Check("S15", "numeric", "explaining away; pre-LN scaling; 1/N approach", s15_numeric),
    Check("S15", "property", "uniform attention keeps r (pre-LN)", run_properties(PROPERTIES["S15"])),
]
