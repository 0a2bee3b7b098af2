"""Sympy derivations of S8-S12 and S5b, executed by the checks (nothing here is a pasted result).

Each function derives its statement and returns the derived expressions; a step that does not come
out as claimed raises CheckFailed. ``theory.checks_learned`` evaluates the returned expressions at
drawn points against the numeric code (``theory.learned``, ``layernorm``, ``ffn``, ``perturbation``).
"""

from __future__ import annotations

from functools import lru_cache

import sympy as sp

from deepfusion.theory.check import require

C, n, alpha, r, nu = sp.symbols("C n alpha r nu", positive=True)
beta_mu, beta_e, tau, lam_mu, lam_e = sp.symbols("beta_mu beta_e tau lambda_mu lambda_e", real=True)
a_self, a_same, a_out, m = sp.symbols("a_self a_same a_out m", nonnegative=True)
rho = sp.Symbol("rho", real=True)
t = sp.Symbol("t", positive=True)  # t = 1/(1 + r^2)


def _zero(expr, what):
    res = sp.simplify(expr)
    require(res == 0, f"{what}: residual {res}")


def kappa_expr(mm=m):
    return (C * mm - 1) / (C - 1)


@lru_cache(maxsize=1)
def derive_s8_block_averages(Cv=2, nv=3):
    """S8(a) on an explicit configuration (C = 2, n = 3, ETF means +-e_1, simplex deviations in their
    own coordinates) with a fully symbolic 8 x 8 matrix B: the block averages of the scores
    x_i^T B x_j (means and deviations unnormalised) satisfy s_self - s_same = beta_e r^2 n/(n-1) and
    s_same - s_out = beta_mu (1 - rho) - beta_e r^2/(n-1), with beta_mu = tr(P_V B)/(C-1) and
    beta_e = tr(P_E B)/(C(n-1)) -- whatever B is (orbit average + trace of the compression)."""
    d = 1 + Cv * nv  # ETF of two classes: mu = +-e_0 (rho = -1)
    B = sp.Matrix(d, d, lambda i, j: sp.Symbol(f"b_{i}_{j}"))
    rr = sp.Symbol("r", positive=True)
    simplex = (sp.eye(nv) - sp.ones(nv, nv) / nv) * rr / sp.sqrt(1 - sp.Rational(1, nv))
    X = sp.zeros(Cv * nv, d)
    for c in range(Cv):
        for i in range(nv):
            X[c * nv + i, 0] = 1 - 2 * c
            for k in range(nv):
                X[c * nv + i, 1 + c * nv + k] = simplex[i, k]
    S = X * B * X.T
    M = Cv * nv
    pairs = {"self": [], "same": [], "out": []}
    for i in range(M):
        for j in range(M):
            key = "self" if i == j else ("same" if i // nv == j // nv else "out")
            pairs[key].append(S[i, j])
    avg = {k: sp.Add(*v) / len(v) for k, v in pairs.items()}
    P_V = sp.zeros(d, d)
    P_V[0, 0] = 1
    P_E = sp.zeros(d, d)
    for c in range(Cv):
        blk = sp.eye(nv) - sp.ones(nv, nv) / nv
        P_E[1 + c * nv : 1 + (c + 1) * nv, 1 + c * nv : 1 + (c + 1) * nv] = blk
    bm = (P_V * B).trace() / (Cv - 1)
    be = (P_E * B).trace() / (Cv * (nv - 1))
    _zero(avg["self"] - avg["same"] - be * rr**2 * nv / (nv - 1), "S8 self - same")
    _zero(avg["same"] - avg["out"] - (bm * 2 - be * rr**2 / (nv - 1)), "S8 same - out (rho = -1)")
    return {"self_minus_same": avg["self"] - avg["same"], "same_minus_out": avg["same"] - avg["out"]}


@lru_cache(maxsize=1)
def derive_s8():
    """S8(b): softmax with the S8 logits on unit tokens (nu = 1, g = t = 1/(1 + r^2)). Jensen: the class
    average of the logits (self included) exceeds the cross-class one by t beta_mu (1 - rho), so
    m > 1/C when beta_mu (1 - rho) > 0, for any beta_e; d log R/dt = -beta_mu (1 - rho)
    + beta_e (e^l_self - e^l_same)/W_in; the limit t -> 1 gives m* with beta_mu and tau."""
    l_self = t * beta_mu * (1 - rho) + beta_e * (1 - t) + tau  # logits relative to the cross-class one
    l_same = t * beta_mu * (1 - rho) - beta_e * (1 - t) / (n - 1)
    _zero(l_self.subs(tau, 0) - l_same - beta_e * (1 / t - 1) * t * n / (n - 1), "S8 self - same in t")
    _zero(((l_self.subs(tau, 0) + (n - 1) * l_same) / n) - t * beta_mu * (1 - rho), "S8 Jensen step")
    w_in = sp.exp(l_self) + (n - 1) * sp.exp(l_same)
    mm = w_in / (w_in + (C - 1) * n)
    dlogR = sp.diff(sp.log(n / w_in), t)
    _zero(dlogR - (-beta_mu * (1 - rho) + beta_e * (sp.exp(l_self) - sp.exp(l_same)) / w_in), "S8 dlogR/dt")
    m_star = sp.simplify(mm.subs(t, 1))
    target = (sp.exp(tau) + n - 1) / (sp.exp(tau) + n - 1 + (C - 1) * n * sp.exp(-beta_mu * (1 - rho)))
    _zero(m_star - target, "S8 m*")
    a_s, a_m = sp.exp(l_self) / (w_in + (C - 1) * n), sp.exp(l_same) / (w_in + (C - 1) * n)
    return {
        "m": mm.subs(t, 1 / (1 + r**2)),
        "a_self": a_s.subs(t, 1 / (1 + r**2)),
        "a_same": a_m.subs(t, 1 / (1 + r**2)),
        "m_star": m_star,
        "dlogR_dt": dlogR,
    }


@lru_cache(maxsize=1)
def derive_s8_shift():
    """S8(c): the largest change of sigma(L) under a logit shift w is at L = -w/2 and equals tanh(w/4)."""
    L, w = sp.Symbol("L", real=True), sp.Symbol("w", positive=True)
    sig = lambda x: 1 / (1 + sp.exp(-x))  # noqa: E731
    gap = sig(L + w) - sig(L)
    crit = sp.solve(sp.Eq(sp.diff(gap, L), 0), L)
    require(any(sp.simplify(c + w / 2) == 0 for c in crit), f"S8(c): stationary points {crit}")
    top = sp.simplify((gap.subs(L, -w / 2) - sp.tanh(w / 4)).rewrite(sp.exp))
    require(top == 0, f"S8(c): maximal shift residual {top}")
    return {"max_shift": sp.tanh(w / 4)}


@lru_cache(maxsize=1)
def derive_s9():
    """S9: a block attention layer with a value map acting as lambda_mu on the means and lambda_e on the
    deviations: x + alpha A V x has mean factor 1 + alpha lambda_mu kappa(m) and deviation factor
    1 + alpha lambda_e (a_self - a_same); the gap between the factors splits into fusion by attention
    lambda_mu n (a_same - a_out) and denoising by the value map (lambda_mu - lambda_e)(a_self - a_same)."""
    a_out_m = (1 - (a_self + (n - 1) * a_same)) / ((C - 1) * n)
    mm = a_self + (n - 1) * a_same
    on_means = (a_same - a_out_m) * n + (a_self - a_same)  # S2's block eigenvalue on ETF means
    _zero(on_means - kappa_expr(mm), "S9 attention eigenvalue on the means")
    mean_f, dev_f = 1 + alpha * lam_mu * on_means, 1 + alpha * lam_e * (a_self - a_same)
    fuse, denoise = lam_mu * n * (a_same - a_out_m), (lam_mu - lam_e) * (a_self - a_same)
    _zero((mean_f - dev_f) / alpha - fuse - denoise, "S9 fusion + denoising")
    return {
        "mean_factor": mean_f,
        "deviation_factor": dev_f,
        "r_next": r * dev_f / mean_f,
        "fusion": fuse,
        "denoising": denoise,
    }


@lru_cache(maxsize=1)
def derive_s11(heads=3):
    """S11: heads add; means scale by 1 + alpha sum_h lambda_mu^h kappa_h, deviations by
    1 + alpha sum_h lambda_e^h delta_h, and mean - deviation factor = alpha sum_h [lambda_mu^h n
    (a_same^h - a_out^h) + (lambda_mu^h - lambda_e^h) delta_h] (per head identity of S3)."""
    terms_mean, terms_dev, margin = 0, 0, 0
    for h in range(heads):
        s, a, lm, le = sp.symbols(f"a_self{h} a_same{h} lambda_mu{h} lambda_e{h}", real=True)
        ao = (1 - (s + (n - 1) * a)) / ((C - 1) * n)
        terms_mean += lm * ((a - ao) * n + s - a)
        terms_dev += le * (s - a)
        margin += lm * n * (a - ao) + (lm - le) * (s - a)
    _zero(terms_mean - terms_dev - margin, "S11 margin")
    return {"mean_factor": 1 + alpha * terms_mean, "deviation_factor": 1 + alpha * terms_dev, "margin": margin}


@lru_cache(maxsize=1)
def derive_s10(dv=4):
    """S10(a): for x with zero feature mean, constant gain gamma, no bias and eps = 0, LayerNorm is
    gamma sqrt(d) x/|x| (explicit d = 4). S10(b): 1 - (1 + a)^(-1/2) <= a/2 and
    2 sin(theta/2) <= sqrt(2) sin(theta) on [0, pi/2]. S10(d): the pre-LN norm update."""
    gamma = sp.Symbol("gamma", positive=True)
    xs = sp.symbols(f"x0:{dv - 1}", real=True)
    x = sp.Matrix(list(xs) + [-sum(xs)])  # zero mean over the features
    var = (x.T * x)[0] / dv
    ln = gamma * x / sp.sqrt(var)
    ideal = gamma * sp.sqrt(dv) * x / sp.sqrt((x.T * x)[0])
    require(sp.simplify(ln - ideal) == sp.zeros(dv, 1), "S10(a): LayerNorm is not sqrt(d) gamma times the projection")
    a = sp.Symbol("a", nonnegative=True)
    gap = a / 2 - (1 - 1 / sp.sqrt(1 + a))
    require(
        gap.subs(a, 0) == 0
        and sp.simplify(sp.diff(gap, a) - (sp.Rational(1, 2) - (1 + a) ** sp.Rational(-3, 2) / 2)) == 0,
        "S10(b): eps step",
    )
    th = sp.Symbol("theta", nonnegative=True)
    ratio = sp.simplify(2 * sp.sin(th / 2) / sp.sin(th) - 1 / sp.cos(th / 2))
    require(ratio == 0 and sp.simplify(1 / sp.cos(sp.pi / 4) - sp.sqrt(2)) == 0, "S10(b): angle step")
    mf, df = sp.symbols("mean_f dev_f", real=True)
    # symmetric tokens z = nu (mu + e)/sqrt(1 + r^2), |mu| = 1, e orthogonal of norm r
    nu_next2 = nu**2 * (mf**2 * 1 + df**2 * r**2) / (1 + r**2)
    return {
        "ln_ideal": ideal,
        "pre_ln_alpha": gamma * sp.sqrt(sp.Symbol("d", positive=True)) / nu,
        "pre_ln_norm": sp.sqrt(nu_next2),
    }


@lru_cache(maxsize=1)
def derive_s12():
    """S12: gelu(x) = x Phi(x); gelu'' = 0 at x = +-sqrt(2), so max |gelu'| = Phi(sqrt 2) + sqrt(2) phi(sqrt 2);
    the spread and mean bounds give r'/r in [(1 - L)/(g + L r), (1 + L)/(g - L r)]."""
    x = sp.Symbol("x", real=True)
    Phi = (1 + sp.erf(x / sp.sqrt(2))) / 2
    g1 = sp.diff(x * Phi, x)
    crit = sp.solve(sp.Eq(sp.simplify(sp.diff(g1, x) * sp.exp(x**2 / 2)), 0), x)
    require(set(crit) == {sp.sqrt(2), -sp.sqrt(2)}, f"S12: stationary points of gelu' {crit}")
    top = sp.simplify(g1.subs(x, sp.sqrt(2)))
    bottom = sp.simplify(g1.subs(x, -sp.sqrt(2)))
    require(sp.simplify(top + bottom - 1) == 0, "S12: gelu'(sqrt 2) + gelu'(-sqrt 2) = 1")
    require(float(top) > abs(float(bottom)) and float(top) > float(g1.subs(x, 50)), "S12: max |gelu'| at sqrt 2")
    L, g, s, mn = sp.symbols("L g s m_norm", positive=True)
    hi = ((1 + L) * s) / ((g - L * s / mn) * mn)
    _zero(hi - (s / mn) * (1 + L) / (g - L * (s / mn)), "S12 upper bound in r")
    return {"gelu_derivative": g1, "lipschitz": top, "upper": (s / mn) * (1 + L) / (g - L * (s / mn))}


@lru_cache(maxsize=1)
def derive_s5b():
    """S5b: the projection step |H_ij/sqrt(D_i D_j) - H0_ij/N0| <= (1 + c) eta/(N0 - eta), from
    1/(N0 - eta) - 1/N0 = eta/(N0 (N0 - eta)) (and the smaller gap on the other side), and the
    row-mass bound tanh(beta delta/2) = S8(c) at omega = 2 beta delta."""
    N0, eta, c = sp.symbols("N0 eta c", positive=True)
    _zero(1 / (N0 - eta) - 1 / N0 - eta / (N0 * (N0 - eta)), "S5b reciprocal gap")
    below = sp.simplify((1 / N0 - 1 / (N0 + eta)) - eta / (N0 * (N0 - eta)))
    require(sp.simplify(below * N0 * (N0 + eta) * (N0 - eta) + 2 * eta**2) == 0, "S5b other side")
    step = eta / (N0 - eta) + c * N0 * eta / (N0 * (N0 - eta))
    _zero(step - (1 + c) * eta / (N0 - eta), "S5b projection step")
    b, dl, a = sp.symbols("beta delta a", positive=True)
    pre = (1 + alpha) ** 2 * dl + 2 * alpha * (1 + alpha) * a + alpha**2 * a**2
    w = derive_s8_shift()["max_shift"].free_symbols.pop()
    return {
        "eta": pre,
        "next_delta": (1 + c) * pre / (N0 - pre),
        "m_bound": derive_s8_shift()["max_shift"].subs(w, 2 * b * dl),
    }


def derive_s5b_gaussian():
    """S5b: the Gaussian model's delta_0 bound, step by step. The centring matrix P = I - 11^T/n has
    |P|_inf = (1 - 1/n) + (n - 1)/n = 2(n-1)/n (derived on a symbolic n x n matrix for n = 2..6 and
    in closed form), and an entry of P W P^T is bounded by |P|_inf^2 max|W| (two sums, one per side),
    so the raw bound sigma^2 tau is multiplied by the *square*; then S5b's projection step with
    N0 = 1 + r^2 and c N0 the largest |off-diagonal| entry of the symmetric Gram."""
    n = sp.symbols("n", positive=True, integer=True)
    for k in range(2, 7):
        P = sp.eye(k) - sp.ones(k, k) / k
        row = max(sum(abs(P[i, j]) for j in range(k)) for i in range(k))
        _zero(row - 2 * sp.Rational(k - 1, k), f"S5b centring inf-norm at n={k}")
    gain = (1 - 1 / n) + (n - 1) / n
    C, kd, sigma, p = sp.symbols("C k sigma p", positive=True)
    x = sp.log(2 * (C * n) ** 2 / p)
    tau = 2 * sp.sqrt(x / kd) + 2 * x / kd
    eta = gain**2 * sigma**2 * tau
    r2 = sigma**2 * (n - 1) / n
    N0 = 1 + r2
    c = sp.Max(sp.Abs(1 - r2 / (n - 1)), 1 / (C - 1)) / N0
    return {"centring_gain": sp.simplify(gain), "eta0": eta, "delta0": (1 + c) * eta / (N0 - eta)}
