"""Symbolic checks of S8-S12 and S5b: each runs a derivation of ``theory.symbolic_learned`` and compares
the derived expressions with the numeric code at drawn points."""

from __future__ import annotations

import numpy as np
import sympy as sp

from deepfusion.theory import ffn, layernorm, learned, perturbation
from deepfusion.theory import symbolic_learned as sl
from deepfusion.theory.check import agree_at_points, require


def _rng(seed):
    return np.random.default_rng(seed)


def _count(quick):
    return 8 if quick else 40


def _symbol(expr, name):
    (sym,) = [s for s in expr.free_symbols if s.name == name]
    return sym


def _s8_points(rng, quick) -> list[tuple]:
    """S8's random points (C, n, beta_mu, beta_e, r, rho, tau) at which sympy and the code are compared."""
    pts = []
    for _ in range(_count(quick)):
        C, n = int(rng.integers(2, 12)), int(rng.integers(2, 100))
        pts.append(
            (
                C,
                n,
                rng.uniform(-3, 15),
                rng.uniform(-5, 15),
                rng.uniform(0.01, 3.0),
                rng.uniform(-1.0 / (C - 1), 0.9),
                rng.uniform(-2, 2),
            )
        )
    return pts


def s8_symbolic(quick):
    sl.derive_s8_block_averages()
    out, shift = sl.derive_s8(), sl.derive_s8_shift()
    rng = _rng(8)
    pts = _s8_points(rng, quick)
    syms = (sl.C, sl.n, sl.beta_mu, sl.beta_e, sl.r, sl.rho, sl.tau)
    w = 0.0
    for key, k in (("a_self", 0), ("a_same", 1)):
        w = max(
            w,
            agree_at_points(
                f"S8 {key}",
                out[key],
                syms,
                lambda C, n, bm, be, r, rho, tau, k=k: learned.learned_block_weights(C, n, bm, be, r, rho, tau=tau)[k],
                pts,
            ),
        )
    w = max(
        w,
        agree_at_points(
            "S8 m",
            out["m"],
            syms,
            lambda C, n, bm, be, r, rho, tau: learned.learned_block_mass(C, n, bm, be, r, rho, tau=tau),
            pts,
        ),
    )
    w = max(
        w,
        agree_at_points(
            "S8 m*",
            out["m_star"],
            (sl.C, sl.n, sl.beta_mu, sl.rho, sl.tau),
            lambda C, n, bm, rho, tau: learned.learned_m_star(C, n, bm, rho, tau=tau),
            [p[:3] + p[5:] for p in pts],
        ),
    )
    wsym = _symbol(shift["max_shift"], "w")
    w = max(
        w,
        agree_at_points(
            "S8(c) tanh(w/4)",
            shift["max_shift"],
            (wsym,),
            learned.mass_shift_bound,
            [(x,) for x in rng.uniform(0, 20, _count(quick))],
        ),
    )
    return (
        f"block averages of x^T B x fixed by tr(P_V B)/(C-1), tr(P_E B)/(C(n-1)) for a symbolic 8x8 B; "
        f"m* = {out['m_star']}; max mass shift tanh(w/4); code agrees to {w:.0e}"
    )


def s9_symbolic(quick):
    out = sl.derive_s9()
    rng = _rng(9)
    pts = []
    for _ in range(_count(quick)):
        C, n = int(rng.integers(2, 12)), int(rng.integers(2, 100))
        m, t = rng.uniform(0, 1, 2)
        pts.append(
            (
                C,
                n,
                rng.uniform(0.05, 2),
                rng.uniform(-2, 3),
                rng.uniform(-2, 3),
                t * m,
                (1 - t) * m / (n - 1),
                rng.uniform(0.1, 3),
            )
        )
    syms = (sl.C, sl.n, sl.alpha, sl.lam_mu, sl.lam_e, sl.a_self, sl.a_same, sl.r)
    pts = [p for p in pts if abs(1 + p[2] * p[3] * learned.kappa(p[5] + (p[1] - 1) * p[6], p[0])) > 1e-3]

    def coef(k):
        return lambda C, n, al, lm, le, s, a, r: learned.value_coefficients(s, a, s + (n - 1) * a, C, al, lm, le)[k]

    w = agree_at_points("S9 mean factor", out["mean_factor"], syms, coef(0), pts)
    w = max(w, agree_at_points("S9 deviation factor", out["deviation_factor"], syms, coef(1), pts))
    w = max(
        w,
        agree_at_points(
            "S9 |r'|",
            sp.Abs(out["r_next"]),
            syms,
            lambda C, n, al, lm, le, s, a, r: learned.value_layer_map(r, s, a, s + (n - 1) * a, C, al, lm, le),
            pts,
        ),
    )
    a_out = lambda C, n, s, a: (1 - s - (n - 1) * a) / ((C - 1) * n)  # noqa: E731
    w = max(
        w,
        agree_at_points(
            "S9 fusion part",
            out["fusion"],
            syms,
            lambda C, n, al, lm, le, s, a, r: learned.fusion_and_denoising(s, a, a_out(C, n, s, a), n, lm, le)[0],
            pts,
        ),
    )
    return f"mean factor {out['mean_factor']}; fusion + denoising = factor gap; code agrees to {w:.0e}"


def s10_symbolic(quick):
    out = sl.derive_s10()
    rng = _rng(10)
    ideal = out["ln_ideal"]
    xs = sorted((s for s in ideal.free_symbols if s.name.startswith("x")), key=lambda s: s.name)
    gamma = _symbol(ideal, "gamma")
    worst = 0.0
    for _ in range(_count(quick)):
        x3, g = rng.standard_normal(3), rng.uniform(0.1, 3)
        x = np.append(x3, -x3.sum())
        got = np.array(ideal.subs({**dict(zip(xs, x3)), gamma: g}), dtype=float).ravel()
        worst = max(worst, float(np.abs(got - layernorm.layer_norm(x, np.full(4, g), np.zeros(4), 0.0)).max()))
    require(worst < 1e-10, f"S10(a): derived LN differs from layer_norm by {worst:.1e}")
    dsym = _symbol(out["pre_ln_alpha"], "d")
    pts = [(rng.uniform(0.1, 3), rng.integers(2, 512), rng.uniform(0.1, 50)) for _ in range(_count(quick))]
    w = agree_at_points(
        "S10(d) alpha",
        out["pre_ln_alpha"],
        (_symbol(out["pre_ln_alpha"], "gamma"), dsym, sl.nu),
        lambda g, d, nu: layernorm.pre_ln_alpha(nu, g, d),
        pts,
    )
    mf, df = _symbol(out["pre_ln_norm"], "mean_f"), _symbol(out["pre_ln_norm"], "dev_f")
    # pre_ln_map with one head, a_self - a_same and kappa chosen so that the factors are mean_f, dev_f
    pts = [
        (rng.uniform(0.5, 2), rng.uniform(0.2, 2), rng.uniform(0.1, 3), rng.uniform(0.5, 20))
        for _ in range(_count(quick))
    ]

    def nu_next(mean_f, dev_f, r, nu, C=4, d=64, gamma=1.0):
        al = layernorm.pre_ln_alpha(nu, gamma, d)
        m = (((mean_f - 1) / al) * (C - 1) + 1) / C  # kappa(m) = (mean_f - 1)/alpha with lambda_mu = 1
        return layernorm.pre_ln_map(r, nu, [(dev_f - 1) / al], [0.0], [m], C, gamma, d, [1.0], [1.0])[1]

    w = max(w, agree_at_points("S10(d) norm", out["pre_ln_norm"], (mf, df, sl.r, sl.nu), nu_next, pts))
    return (
        f"LN(x) = gamma sqrt(d) x/|x| for centred x (code to {worst:.0e}); error-bound steps; pre-LN alpha "
        f"{out['pre_ln_alpha']}, norm update; code agrees to {w:.0e}"
    )


def s11_symbolic(quick):
    heads = 3
    out = sl.derive_s11(heads)
    rng = _rng(11)
    names = [f"{k}{h}" for h in range(heads) for k in ("a_self", "a_same", "lambda_mu", "lambda_e")]
    syms = tuple(_symbol(out["mean_factor"] + out["deviation_factor"], nm) for nm in names)
    syms = syms + (sl.C, sl.n, sl.alpha)
    pts = []
    for _ in range(_count(quick)):
        C, n = int(rng.integers(2, 12)), int(rng.integers(2, 64))
        row = []
        for _h in range(heads):
            m, t = rng.uniform(0, 1, 2)
            row += [t * m, (1 - t) * m / (n - 1), rng.uniform(-2, 3), rng.uniform(-2, 3)]
        pts.append(tuple(row) + (C, n, rng.uniform(0.05, 2)))

    def split(p):
        a = np.array(p[:-3]).reshape(heads, 4)
        C, n, al = p[-3:]
        return a[:, 0], a[:, 1], a[:, 0] + (n - 1) * a[:, 1], C, n, al, a[:, 2], a[:, 3]

    def coef(k):
        def f(*p):
            s, a, m, C, n, al, lm, le = split(p)
            return learned.multihead_coefficients(s, a, m, C, al, lm, le)[k]

        return f

    def margin(*p):
        s, a, m, C, n, al, lm, le = split(p)
        return learned.multihead_fusion_margin(s, a, (1 - m) / ((C - 1) * n), n, lm, le)

    w = agree_at_points("S11 mean factor", out["mean_factor"], syms, coef(0), pts)
    w = max(w, agree_at_points("S11 deviation factor", out["deviation_factor"], syms, coef(1), pts))
    w = max(w, agree_at_points("S11 margin", out["margin"], syms, margin, pts))
    return (
        f"{heads} heads: factors add over heads; margin = sum_h lambda_mu n (a_same - a_out) + ...; "
        f"code agrees to {w:.0e}"
    )


def s12_symbolic(quick):
    out = sl.derive_s12()
    rng = _rng(12)
    x = _symbol(out["gelu_derivative"], "x")
    w = abs(float(out["lipschitz"]) - ffn.GELU_LIPSCHITZ)
    require(w < 1e-14, f"S12: derived max |gelu'| {float(out['lipschitz'])} vs GELU_LIPSCHITZ {ffn.GELU_LIPSCHITZ}")
    w = max(
        w,
        agree_at_points(
            "S12 gelu'",
            out["gelu_derivative"],
            (x,),
            ffn.gelu_derivative,
            [(v,) for v in rng.uniform(-8, 8, _count(quick))],
        ),
    )
    up = out["upper"]
    syms = tuple(_symbol(up, k) for k in ("s", "m_norm", "L", "g"))
    pts = [(s, mn, L, g) for s, mn, L, g in rng.uniform(0.05, 2.0, (_count(quick), 4)) if g > L * s / mn]
    w = max(
        w, agree_at_points("S12 upper bound", up, syms, lambda s, mn, L, g: ffn.spread_bounds(s / mn, L, g)[1], pts)
    )
    return (
        f"max |gelu'| = {out['lipschitz']} = {float(out['lipschitz']):.6f} at x = sqrt 2; bounds; "
        f"code agrees to {w:.0e}"
    )


def s5b_symbolic(quick):
    out = sl.derive_s5b()
    eta = out["eta"]
    syms = tuple(_symbol(eta, k) for k in ("delta", "a", "alpha"))
    rng = _rng(5)
    C, n, r = 3, 4, 0.8
    pts = []
    for _ in range(_count(quick)):
        beta, alpha, delta = rng.uniform(0.1, 5), rng.uniform(0.1, 2), rng.uniform(1e-4, 0.02)
        pts.append((delta, perturbation.softmax_row_shift(beta, delta), alpha))
    w = agree_at_points(
        "S5b eta", eta, syms, lambda dl, a, al: perturbation.layer_step(dl, C, n, np.log1p(a) / (2 * dl), al, r)[1], pts
    )
    g = sl.derive_s5b_gaussian()
    d0 = g["delta0"]
    syms = tuple(_symbol(d0, k) for k in ("C", "n", "k", "sigma", "p"))
    gpts = []
    for _ in range(_count(quick)):
        C, n, d = int(rng.integers(2, 8)), int(rng.integers(2, 64)), int(2 ** rng.integers(14, 20))
        gpts.append((C, n, d - C, rng.uniform(0.2, 1.5), 10.0 ** rng.uniform(-4, -1)))
    finite = [q for q in gpts if np.isfinite(perturbation.gaussian_delta_bound(q[0], q[1], q[2] + q[0], q[3], q[4]))]
    require(len(finite) >= len(gpts) // 2, "S5b: too few finite Gaussian bounds among the drawn points")
    w = max(
        w,
        agree_at_points(
            "S5b Gaussian delta0",
            d0,
            syms,
            lambda C, n, k, sg, p: perturbation.gaussian_delta_bound(int(C), int(n), int(k + C), sg, p),
            finite,
        ),
    )
    return (
        f"eta = {eta}; delta' = (1 + c) eta/(N0 - eta); m within {out['m_bound']}; centring gain "
        f"{g['centring_gain']} (squared in delta0); code agrees to {w:.0e}"
    )
