"""Symbolic checks of S2-S5 and S7: each runs a sympy derivation of ``theory.symbolic_fusion`` and
compares the derived expressions with the numeric code of ``theory.fusion`` at drawn points."""

from __future__ import annotations

import numpy as np

from deepfusion.theory import fusion
from deepfusion.theory import symbolic_fusion as sf
from deepfusion.theory.check import agree_at_points


def _draws(quick, seed):
    """Random (C, n, alpha, beta, r, rho, a_self, a_same) with rows of the block matrix summing to one
    and rho in the equiangular range [-1/(C-1), 1)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(8 if quick else 40):
        C, n = int(rng.integers(2, 12)), int(rng.integers(2, 100))
        m, t = rng.uniform(0.0, 1.0, 2)
        out.append(
            dict(
                C=C,
                n=n,
                alpha=rng.uniform(0.05, 3.0),
                beta=rng.uniform(0.05, 25.0),
                r=rng.uniform(0.01, 3.0),
                rho=rng.uniform(-1.0 / (C - 1), 0.9),
                a_self=t * m,
                a_same=(1 - t) * m / (n - 1),
                m=m,
            )
        )
    return out


def _pts(draws, *names):
    return [tuple(d[k] for k in names) for d in draws]


def s2_symbolic(quick):
    out = sf.derive_s2()
    sf.derive_s2_explicit()
    grow = sf.derive_s2_common_growth()
    d = _draws(quick, 2)
    syms = (sf.C, sf.alpha, sf.m, sf.a_self, sf.a_same)
    pts = _pts(d, "C", "alpha", "m", "a_self", "a_same")
    w = agree_at_points(
        "S2 mean factor",
        out["mean_factor"],
        syms,
        lambda C, al, m, s, a: fusion.layer_coefficients(s, a, m, C, al)[0],
        pts,
    )
    w = max(
        w,
        agree_at_points(
            "S2 deviation factor",
            out["deviation_factor"],
            syms,
            lambda C, al, m, s, a: fusion.layer_coefficients(s, a, m, C, al)[1],
            pts,
        ),
    )
    kap = _symbol(grow["growth"], "kappa")
    w = max(
        w,
        agree_at_points(
            "S2 growth of the common part",
            grow["growth"].subs(kap, sf.kappa_expr()),
            (sf.C, sf.alpha, sf.m),
            lambda C, al, m: fusion.common_growth_factor(m, C, al),
            [p[:3] for p in pts if 1 + p[1] * fusion.kappa(p[2], p[0]) > 1e-3],
        ),
    )
    return (
        f"block eigenvalues: means {out['mean_factor']}, deviations {out['deviation_factor']}, common "
        f"1+alpha; common/centred grows by {grow['growth']}; code agrees to {w:.0e}"
    )


def s3_symbolic(quick):
    out = sf.derive_s3()
    expr = out["ratio_minus_one"]
    m_pos = _symbol(expr, "m")  # derive_s3 works with a positive m
    pts = [
        p for p in _pts(_draws(quick, 3), "C", "n", "alpha", "m") if 1 + p[2] * fusion.kappa(p[3], p[0]) > 1e-3
    ]  # S2 needs 1 + alpha kappa != 0
    w = agree_at_points(
        "S3 r'/r - 1 at a_self = a_same",
        expr,
        (sf.C, sf.n, sf.alpha, m_pos),
        lambda C, n, al, m: fusion.layer_map(1.0, m / n, m / n, m, C, al) - 1.0,
        pts,
    )
    return f"kappa - (a_self - a_same) = n (a_same - a_out), chance {out['chance']}; code agrees to {w:.0e}"


def _symbol(expr, name):
    (sym,) = [s for s in expr.free_symbols if s.name == name]
    return sym


def s4_symbolic(quick):
    unc = sf.derive_s4()
    cen = sf.derive_s4_centred()
    d = _draws(quick, 4)
    pts = _pts(d, "C", "n", "beta", "r", "rho")
    syms = (sf.C, sf.n, sf.beta, sf.r, sf.rho)
    w = agree_at_points("S4 m*", unc["m_star"], (sf.C, sf.beta, sf.rho), fusion.m_star, _pts(d, "C", "beta", "rho"))
    for key, k in (("a_self", 0), ("a_same", 1)):
        w = max(
            w,
            agree_at_points(
                f"S4 centred {key}",
                cen[key],
                syms,
                lambda C, n, b, r, rho, k=k: fusion.softmax_block_weights(C, n, b, r, rho)[k],
                pts,
            ),
        )
    w = max(
        w,
        agree_at_points(
            "S4 centred m", cen["m"], syms, lambda C, n, b, r, rho: fusion.block_mass(C, n, b, r, rho), pts
        ),
    )
    a_s, a_m, _, m_unc = sf.softmax_forms(centred=False)
    w = max(
        w,
        agree_at_points(
            "S4 n -> infinity m",
            m_unc,
            syms,
            lambda C, n, b, r, rho: fusion.block_mass(C, n, b, r, rho, centred=False),
            pts,
        ),
    )
    return (
        f"m* = {unc['m_star']}; dlogR/ds = {unc['dlogR_ds']} (n -> inf), dlogR/dt = beta rho - beta w_c "
        f"(centred), both < 0 for rho <= 0; code agrees to {w:.0e}"
    )


def s5_symbolic(quick):
    out = sf.derive_s5()
    d = _draws(quick, 5)
    w = agree_at_points(
        "S5 rate",
        out["rate"],
        (sf.C, sf.beta, sf.alpha, sf.rho),
        fusion.asymptotic_rate,
        _pts(d, "C", "beta", "alpha", "rho"),
    )
    w = max(
        w,
        agree_at_points("S5 critical spread", out["r_c"], (sf.n, sf.rho), fusion.critical_spread, _pts(d, "n", "rho")),
    )
    return f"rate {out['rate']}, r_c = {out['r_c']}; code agrees to {w:.0e}"


def s7_symbolic(quick):
    out = sf.derive_s7()
    d = [p for p in _draws(quick, 7) if p["beta"] * (1 - p["rho"]) > 1e-3]  # kappa(m*) > 0
    w = agree_at_points(
        "S7 cubic coefficient",
        out["cubic_coefficient"],
        (sf.C, sf.n, sf.beta, sf.rho),
        fusion.cubic_collapse_coefficient,
        _pts(d, "C", "n", "beta", "rho"),
    )
    return (
        f"kappa(1/C) = 0, uniform image rank {out['rank_uniform']}, no-residual r' ~ "
        f"{out['cubic_coefficient']} r^3; code agrees to {w:.0e}"
    )
