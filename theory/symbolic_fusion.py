"""Sympy derivations of S2, S3, S4, S5 and S7, executed by the checks (nothing here is a pasted result).

The checks evaluate the returned expressions at drawn points and compare them with the numeric code
of ``theory.fusion`` (``theory.checks_fusion``).

Each function derives its statement and returns the derived expressions; it raises CheckFailed if
a step does not simplify to what the statement claims.
"""

from __future__ import annotations

import sympy as sp

from deepfusion.theory.check import require

C, n, alpha, beta, r = sp.symbols("C n alpha beta r", positive=True)
a_self, a_same, a_out, m = sp.symbols("a_self a_same a_out m", nonnegative=True)
rho = sp.Symbol("rho", real=True)


def _zero(expr, what):
    res = sp.simplify(expr)
    require(res == 0, f"{what}: residual {res}")


def _given_c_above_1(expr):
    """expr with C = 1 + q, q > 0, so that sympy's sign deduction knows C > 1."""
    return sp.simplify(expr.subs(C, 1 + sp.Symbol("q", positive=True)))


def kappa_expr(mm=m):
    return (C * mm - 1) / (C - 1)


def derive_s2():
    """S2: eigenvalues of block attention on ETF means and zero-class-mean deviations.

    A = a_out J_C (x) J_n + (a_same - a_out) I_C (x) J_n + (a_self - a_same) I_M. A vector that is a
    class pattern p (x) 1_n gets J_n 1_n = n 1_n and J_C p = (sum p) 1_C; a deviation pattern (zero
    sum inside each class) is killed by I_C (x) J_n and J_C (x) J_n. The mean matrix of an ETF has
    column sums zero (sum of means = 0), so the common-mode term drops."""
    s = sp.Symbol("s")  # sum over classes of the pattern p: 0 for ETF means
    # means: A (p (x) 1_n) = [a_out n s 1 + (a_same - a_out) n p + (a_self - a_same) p]; coefficient of p
    on_means = sp.expand((a_same - a_out) * n + (a_self - a_same) + a_out * n * s)
    on_means = on_means.subs(s, 0)
    on_devs = a_self - a_same
    on_common = sp.expand((a_same - a_out) * n + (a_self - a_same) + a_out * n * C)  # p = 1_C
    # express with m = a_self + (n-1) a_same and the row sum m + (C-1) n a_out = 1
    a_out_m = sp.solve(sp.Eq(m + (C - 1) * n * a_out, 1), a_out)[0]
    mean_coef = on_means.subs(a_self, m - (n - 1) * a_same).subs(a_out, a_out_m)
    _zero(mean_coef - kappa_expr(), "S2 mean eigenvalue = kappa(m)")
    common = on_common.subs(a_self, m - (n - 1) * a_same).subs(a_out, a_out_m)
    _zero(common - 1, "S2 common-mode eigenvalue = 1 (rows sum to one)")
    r_next = r * (1 + alpha * on_devs) / (1 + alpha * kappa_expr())
    return {
        "mean_factor": 1 + alpha * sp.simplify(mean_coef),
        "deviation_factor": 1 + alpha * on_devs,
        "common_factor": 1 + alpha * sp.simplify(common),
        "r_next": r_next,
    }


def derive_s2_common_growth():
    """S2 (the ETF is an unstable invariant): with mean factor 1 + alpha kappa and common factor 1 + alpha,
    |u'|^2/|v'|^2 = ((1 + alpha)/(1 + alpha kappa))^2 |u|^2/|v|^2; the factor is > 1 iff kappa < 1
    (alpha > 0, 1 + alpha kappa > 0). rho' in terms of U = |u'|^2 and V = |v'|^2."""
    k = sp.Symbol("kappa", real=True)
    u2, v2 = sp.symbols("u2 v2", positive=True)
    U, V = (1 + alpha) ** 2 * u2, (1 + alpha * k) ** 2 * v2
    factor = sp.simplify((U / V) / (u2 / v2))
    _zero(factor - ((1 + alpha) / (1 + alpha * k)) ** 2, "S2 growth of the common part")
    # factor - 1 = alpha (1 - kappa)(2 + alpha (1 + kappa)) / (1 + alpha kappa)^2: > 0 for kappa in (-1/alpha... 1)
    _zero(sp.factor(factor - 1) - alpha * (1 - k) * (2 + alpha + alpha * k) / (1 + alpha * k) ** 2, "S2 factor - 1")
    # means of norm 1 with cosine rho: |u|^2 = (1 + (C-1) rho)/C, |v|^2 = (C-1)(1 - rho)/C; after the layer
    # <mu_a', mu_b'> = U - V/(C-1) and |mu'|^2 = U + V
    rho_from = sp.simplify(
        ((1 + (C - 1) * rho) / C - (C - 1) * (1 - rho) / C / (C - 1))
        / ((1 + (C - 1) * rho) / C + (C - 1) * (1 - rho) / C)
    )
    _zero(rho_from - rho, "S2 cosine from the common and centred parts")
    return {"growth": factor, "rho_next": (U - V / (C - 1)) / (U + V)}


def derive_s2_explicit(Cv=3, nv=2):
    """S2 on an explicit (Cn x Cn) symbolic block matrix with concrete ETF means and deviations."""
    M = Cv * nv
    A = sp.Matrix(M, M, lambda i, j: a_self if i == j else (a_same if i // nv == j // nv else a_out))
    # ETF means as rows of centred basis vectors; deviations e_k in fresh coordinates, centred per class
    d = Cv + M
    mu = [sp.Matrix([[sp.KroneckerDelta(k, c) - sp.Rational(1, Cv) for k in range(Cv)] + [0] * M]) for c in range(Cv)]
    dev = []
    for i in range(M):
        row = [0] * d
        c = i // nv
        for j in range(c * nv, (c + 1) * nv):
            row[Cv + j] = (1 if j == i else 0) - sp.Rational(1, nv)
        dev.append(sp.Matrix([row]))
    X_mu = sp.Matrix.vstack(*[mu[i // nv] for i in range(M)])
    X_e = sp.Matrix.vstack(*dev)
    mm = a_self + (nv - 1) * a_same
    sub = {a_out: (1 - mm) / ((Cv - 1) * nv)}
    mean_err = (A * X_mu).subs(sub) - kappa_expr(mm).subs(C, Cv) * X_mu
    dev_err = A * X_e - (a_self - a_same) * X_e
    require(sp.simplify(mean_err) == sp.zeros(M, d), "S2 explicit: means not scaled by kappa(m)")
    require(sp.simplify(dev_err) == sp.zeros(M, d), "S2 explicit: deviations not scaled by a_self - a_same")
    return True


def derive_s3():
    """S3: kappa(m) - (a_self - a_same) = n (a_same - a_out); with a_self = a_same, r' < r iff m > 1/C."""
    a_out_m = (1 - (a_self + (n - 1) * a_same)) / ((C - 1) * n)
    gap = kappa_expr(a_self + (n - 1) * a_same) - (a_self - a_same)
    _zero(gap - n * (a_same - a_out_m), "S3 identity kappa - (a_self - a_same) = n (a_same - a_out)")
    ratio = (1 + alpha * (a_self - a_same)) / (1 + alpha * kappa_expr(a_self + (n - 1) * a_same))
    # ratio - 1 = -alpha n (a_same - a_out) / (1 + alpha kappa): sign fixed by a_same - a_out
    _zero(
        ratio - 1 + alpha * n * (a_same - a_out_m) / (1 + alpha * kappa_expr(a_self + (n - 1) * a_same)), "S3 ratio - 1"
    )
    equal = sp.simplify((ratio - 1).subs(a_self, a_same))  # a_self = a_same, m = n a_same
    mm = sp.Symbol("m", positive=True)
    equal_m = sp.simplify(equal.subs(a_same, mm / n))
    _zero(equal_m + alpha * kappa_expr(mm) / (1 + alpha * kappa_expr(mm)), "S3 a_self = a_same")
    root = sp.solve(sp.Eq(kappa_expr(mm), 0), mm)
    require(root == [1 / C], f"S3: chance level {root} != 1/C")
    return {"ratio_minus_one": equal_m, "chance": root[0]}


def softmax_forms(centred=True):
    """S4: the closed forms (a_self, a_same, a_out, m) of softmax attention at spread r."""
    s_inf = 1 / (1 + r**2)
    s = (1 - r**2 / (n - 1)) * s_inf if centred else s_inf
    w_self, w_same, w_out = sp.exp(beta), sp.exp(beta * s), sp.exp(beta * rho * s_inf)
    z = w_self + (n - 1) * w_same + (C - 1) * n * w_out
    return w_self / z, w_same / z, w_out / z, (w_self + (n - 1) * w_same) / z


def derive_s4():
    """S4: m(r) -> m* as r -> 0; m > 1/C; dm/dr < 0 for rho <= 0 (n -> infinity cosines and centred)."""
    _, _, _, mm = softmax_forms(centred=False)
    m_lim = sp.limit(mm, r, 0)
    target = 1 / (1 + (C - 1) * sp.exp(-beta * (1 - rho)))
    _zero(m_lim - target, "S4 limit m*")
    # centred cosines: the class-average cosine including self is exactly 1/(1 + r^2) (Jensen step)
    s_c = (1 - r**2 / (n - 1)) / (1 + r**2)
    _zero((1 + (n - 1) * s_c) / n - 1 / (1 + r**2), "S4 centred mean same-class cosine")
    # m = 1/(1 + (C-1) R) with R = n e^{beta rho s} / (e^beta + (n-1) e^{beta s}) (n -> inf cosines)
    s = sp.Symbol("s", positive=True)
    R = n * sp.exp(beta * rho * s) / (sp.exp(beta) + (n - 1) * sp.exp(beta * s))
    _zero(1 / (1 + (C - 1) * R.subs(s, 1 / (1 + r**2))) - mm, "S4 m in terms of R")
    w = sp.Symbol("w", positive=True)  # w = (n-1) e^{beta s} / (e^beta + (n-1) e^{beta s}) in (0, 1)
    dlogR = sp.diff(sp.log(R), s)
    w_expr = (n - 1) * sp.exp(beta * s) / (sp.exp(beta) + (n - 1) * sp.exp(beta * s))
    _zero(dlogR - (beta * rho - beta * w_expr), "S4 dlogR/ds")
    rho_np = sp.Symbol("rho_np", nonpositive=True)
    require((beta * rho_np - beta * w).is_negative, "S4: dlogR/ds < 0 needs rho <= 0")
    ds_dr = sp.diff(1 / (1 + r**2), r)
    require(ds_dr.is_negative, "S4: s must decrease in r")
    dm_dR = sp.diff(1 / (1 + (C - 1) * sp.Symbol("R", positive=True)), sp.Symbol("R", positive=True))
    require(_given_c_above_1(dm_dR).is_negative, "S4: m must decrease in R")
    # chain rule: dm/dr = dm/dR * R * dlogR/ds * ds/dr: (-) (+) (-) (-) < 0
    # above chance: m > 1/C iff e^beta + (n-1) e^{beta s} > n e^{beta rho s}
    # each same-class weight exceeds each cross-class one (s > rho s), and there are n of each per class
    sv = 1 / (1 + r**2)
    w_in, w_x = sp.exp(beta) + (n - 1) * sp.exp(beta * sv), n * sp.exp(beta * rho * sv)
    _zero(mm - 1 / C - (C - 1) * (w_in - w_x) / (C * (w_in + (C - 1) * w_x)), "S4 m - 1/C")
    return {"m_star": target, "dlogR_ds": beta * rho - beta * w, "ds_dr": ds_dr}


def derive_s4_centred():
    """S4 for the centred cosines s_c = (n t - 1)/(n - 1), t = 1/(1 + r^2) (zero-class-mean deviations):
    m -> m* as r -> 0, m - 1/C > 0 by Jensen (the class-average cosine is t), and
    d log R/dt = beta rho - beta n e^{beta s_c}/W_in < 0 for rho <= 0, with dt/dr < 0."""
    t = sp.Symbol("t", positive=True)
    s_c = (n * t - 1) / (n - 1)
    _zero(s_c.subs(t, 1 / (1 + r**2)) - (1 - r**2 / (n - 1)) / (1 + r**2), "S4 centred cosine in t")
    w_in = sp.exp(beta) + (n - 1) * sp.exp(beta * s_c)
    w_x = n * sp.exp(beta * rho * t)
    mm = w_in / (w_in + (C - 1) * w_x)
    a_s, a_m, _, m_r = softmax_forms(centred=True)
    _zero(mm.subs(t, 1 / (1 + r**2)) - m_r, "S4 centred m in t")
    target = 1 / (1 + (C - 1) * sp.exp(-beta * (1 - rho)))
    _zero(mm.subs(t, 1) - target, "S4 centred limit m*")
    _zero((1 + (n - 1) * s_c) / n - t, "S4 centred Jensen step")
    dlogR = sp.diff(sp.log(w_x / w_in), t)
    w_c = n * sp.exp(beta * s_c) / w_in
    _zero(dlogR - (beta * rho - beta * w_c), "S4 centred dlogR/dt")
    rho_np, wc = sp.Symbol("rho_np", nonpositive=True), sp.Symbol("w_c", positive=True)
    require((beta * rho_np - beta * wc).is_negative, "S4 centred: dlogR/dt < 0 needs rho <= 0")
    require(sp.diff(1 / (1 + r**2), r).is_negative, "S4: t must decrease in r")
    _zero(mm - 1 / C - (C - 1) * (w_in - w_x) / (C * (w_in + (C - 1) * w_x)), "S4 centred m - 1/C")
    return {"m": m_r, "a_self": a_s, "a_same": a_m, "dlogR_dt": beta * rho - beta * w_c}


def derive_s5():
    """S5: at r = 0 a_self = a_same, so r'/r -> 1/(1 + alpha kappa(m*)); kappa(m*) > 0 for beta > 0."""
    a_s, a_m, _, mm = softmax_forms(centred=False)
    ratio = (1 + alpha * (a_s - a_m)) / (1 + alpha * kappa_expr(mm))
    rate = sp.simplify(ratio.subs(r, 0))
    ms = 1 / (1 + (C - 1) * sp.exp(-beta * (1 - rho)))
    _zero(rate - 1 / (1 + alpha * kappa_expr(ms)), "S5 asymptotic rate")
    # kappa(m*) > 0 iff C m* > 1 iff (C-1)(1 - e^{-beta(1 - rho)}) > 0
    k = sp.simplify(kappa_expr(ms) * (1 + (C - 1) * sp.exp(-beta * (1 - rho))))
    _zero(k - (1 - sp.exp(-beta * (1 - rho))), "S5 kappa(m*) numerator")
    # the fixed point r = 0: r' = ratio * r vanishes there
    # centred cosines: a_same = a_out iff s_c = rho t iff r^2 = (n-1)(1 - rho): the critical spread
    r2 = sp.Symbol("r2", positive=True)
    crit = sp.solve(sp.Eq((1 - r2 / (n - 1)) / (1 + r2), rho / (1 + r2)), r2)
    require(len(crit) == 1, f"S5: critical spread solutions {crit}")
    _zero(crit[0] - (n - 1) * (1 - rho), "S5 critical spread r_c^2")
    return {"rate": rate, "kappa_m_star_times_denominator": k, "r_c": sp.sqrt(crit[0])}


def derive_s7(Cv=3, nv=2):
    """S7: without residual, kappa(1/C) = 0 kills ETF means; uniform attention makes A X rank <= 1."""
    _zero(kappa_expr(1 / C), "S7 kappa(1/C)")
    M = Cv * nv
    X = sp.Matrix(M, 4, lambda i, j: sp.Symbol(f"x_{i}_{j}"))
    AX = sp.ones(M, M) / M * X
    require(AX.rank() <= 1, "S7: uniform attention must collapse to rank 1")
    # with residual the mean factor is 1 + alpha kappa(m) >= 1 when m >= 1/C
    mm = sp.Symbol("m", nonnegative=True)
    factor = 1 + alpha * kappa_expr(mm)
    _zero(factor.subs(mm, 1 / C) - 1, "S7 residual factor at chance")
    require(_given_c_above_1(sp.diff(factor, mm)).is_positive, "S7: residual factor must grow with m")
    # no residual, softmax on the symmetric configuration (centred cosines): r'/r = (a_self - a_same)/kappa
    # with a_self - a_same = a_same (e^Delta - 1), Delta = beta (1 - s_c) = beta n r^2/((n-1)(1 + r^2))
    s_c = (1 - r**2 / (n - 1)) / (1 + r**2)
    delta = beta * n * r**2 / ((n - 1) * (1 + r**2))
    _zero(beta * (1 - s_c) - delta, "S7 self-minus-same logit")
    a_s, a_m, _, m_r = softmax_forms(centred=True)
    ratio_exp = sp.powsimp(a_s / a_m / sp.exp(delta))  # exp(something) that must be exp(0)
    _zero(
        sp.log(ratio_exp).expand(force=True) if ratio_exp.func == sp.exp else ratio_exp - 1,
        "S7 a_self / a_same = e^Delta",
    )
    slope = sp.limit((sp.exp(delta) - 1) / r**2, r, 0)  # (e^Delta - 1)/r^2 -> beta n/(n-1)
    _zero(slope - beta * n / (n - 1), "S7 slope of e^Delta - 1")
    ms = 1 / (1 + (C - 1) * sp.exp(-beta * (1 - rho)))
    _zero(a_m.subs(r, 0) - ms / n, "S7 a_same at r = 0")
    # r'/r^3 -> a_same(0) * slope / kappa(m*)
    cubic = sp.simplify(ms / n * slope / kappa_expr(ms))
    _zero(cubic - beta * ms / ((n - 1) * kappa_expr(ms)), "S7 cubic coefficient")
    return {"residual_factor": factor, "rank_uniform": AX.rank(), "cubic_coefficient": cubic}
