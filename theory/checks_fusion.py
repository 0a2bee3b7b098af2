"""Checks of S2, S3, S4, S5 and S7 (numeric and property here, symbolic in ``checks_fusion_symbolic``),
collected by ``deepfusion verify``."""

from __future__ import annotations

import numpy as np
import torch

from deepfusion.theory import checks_fusion_symbolic as sym
from deepfusion.theory import fusion, properties_fusion
from deepfusion.theory.check import Check, require, run_properties
from deepfusion.theory.simulation import attention, block_stats, make_tokens, measure_tokens, simulate_fusion

# S5 regimes (C = 4, n = 64, d = 2048, 10 layers): name -> (beta, alpha, r0)
REGIMES = {"fast": (8.0, 1.0, 1.0), "slow": (2.0, 0.3, 1.0), "stall": (20.0, 1.0, 1.5)}
# Tolerances of simulation vs recursion (derivation in THEORY.md, S5). Finite n is not a tolerance:
# the recursion uses the exact cosines of zero-class-mean deviations. Finite d: a same-class cosine
# fluctuates with std sigma = r^2/((1+r^2) sqrt(d)) <= 0.011 at d = 2048; noise on the logits leaves
# the self weight alone but inflates the others by ~exp(beta^2 sigma^2 / 2), so |dm| <~ beta^2 sigma^2 / 2
# (0.004 at beta = 8, the largest beta with sigma not yet negligible): M_TOL = 0.01. Per layer that
# moves r'/r by at most ~alpha C/(C-1) |dm| ~ 0.5%; over 10 layers errors add up to 5%: R_TOL = 0.05.
M_TOL, R_TOL = 0.01, 0.05


def _props(statement):
    return run_properties(properties_fusion.PROPERTIES[statement])


def _one_layer(x, A, alpha):
    return x + alpha * (A @ x)


def s2_numeric(quick):
    """Arbitrary block attention on the symmetric configuration: class means and deviations scale
    exactly by the S2 factors, and the general-rho map predicts (r', rho') after projection."""
    rng = np.random.default_rng(1)
    worst = 0.0
    for C, n, rho in ((3, 5, None), (4, 8, None), (5, 4, 0.3), (3, 6, -0.2)):
        w = rng.uniform(0.1, 1.0, 3)
        w /= w[0] + (n - 1) * w[1] + (C - 1) * n * w[2]
        A = torch.as_tensor(fusion.block_matrix(C, n, *w))
        alpha = float(rng.uniform(0.2, 2.0))
        x = make_tokens(C, n, C + C * n + 3, 0.7, rho, noise="simplex")
        r0, rho0 = measure_tokens(x, C)
        y = _one_layer(x, A, alpha)
        m = w[0] + (n - 1) * w[1]
        if rho is None:
            mean_f, dev_f = fusion.layer_coefficients(w[0], w[1], m, C, alpha)
            xs, ys = x.reshape(C, n, -1), y.reshape(C, n, -1)
            mx, my = xs.mean(1), ys.mean(1)
            worst = max(
                worst,
                float((my - mean_f * mx).abs().max()),
                float(((ys - my[:, None]) - dev_f * (xs - mx[:, None])).abs().max()),
            )
        y = y / y.norm(dim=1, keepdim=True)
        r1, rho1 = measure_tokens(y, C)
        rp, rhop = fusion.layer_map_general(r0, rho0, w[0], w[1], m, C, alpha)
        worst = max(worst, abs(r1 / rp - 1), abs(rho1 - rhop))
    require(worst < 1e-10, f"S2 factors off by {worst:.2e}")
    gap = s2_counterexample()
    require(gap > 0.02, f"S2 counterexample: non-simplex deviations should miss the layer map, missed by {gap:.3f}")
    sim, mf = s2_unstable_etf(layers=100 if not quick else 60)
    drift = float(np.abs(sim.rho - mf.rho).max())
    require(drift < 1e-8, f"S2: rho of the simulation drifts from the recursion by {drift:.1e}")
    require(mf.rho[50] > 0.4 and sim.rho[50] > 0.4, f"S2: the off-ETF common part did not grow ({mf.rho[50]:.3f})")
    return (
        f"block layer on symmetric tokens (ETF and rho=0.3, -0.2): max error {worst:.1e}; "
        f"non-simplex deviations (a,-a,b,-b) miss the map by {gap:.1%}; rho = -1/3 + 1e-6 grows to "
        f"{sim.rho[50]:.3f} at layer 50 (recursion {mf.rho[50]:.3f}, tokens follow it to {drift:.0e})"
    )


def s2_counterexample(beta=2.0, alpha=1.0, r=0.8):
    """S2 needs regular-simplex deviations: C = 2, n = 4, deviations (a, -a, b, -b) with a orthogonal to b
    (zero class mean, equal norms) have same-class cosines 0.22 and 0.61 at r = 0.8; softmax attention
    is then not block-structured and r' misses the layer map. Returns |r'_tokens / r'_map - 1|."""
    C, n, d = 2, 4, 10
    x = torch.zeros(C * n, d, dtype=torch.float64)
    for c in range(C):
        x[c * n : (c + 1) * n, 0] = 1.0 - 2.0 * c
        for k, (col, sign) in enumerate(((2, 1), (2, -1), (3, 1), (3, -1))):
            x[c * n + k, col + 4 * c] = sign * r
    x = x / x.norm(dim=1, keepdim=True)
    y = _one_layer(x, attention(x.clone(), beta), alpha)
    r1, _ = measure_tokens(y / y.norm(dim=1, keepdim=True), C)
    return abs(r1 / fusion.mean_field(C, n, beta, alpha, measure_tokens(x, C)[0], 1).r[1] - 1)


def s2_unstable_etf(layers=100, C=4, n=16, beta=2.0, alpha=1.0, r0=1.0, off=1e-6):
    """S2: the ETF is an unstable invariant. Exactly symmetric tokens with rho = -1/(C-1) + off, run
    through idealised layers, and the general-rho recursion from the same start; rho climbs to 1."""
    sim = simulate_fusion(C, n, C + C * n, beta, alpha, r0, layers, rho=-1.0 / (C - 1) + off, noise="simplex")
    return sim, fusion.mean_field(C, n, beta, alpha, sim.r[0], layers, rho=sim.rho[0])


def s3_numeric(quick):
    """A block layer at a grid of m with a_self = a_same on Gaussian tokens: r'/r (before projection)
    equals 1/(1 + alpha kappa(m)), below 1 exactly when m > 1/C."""
    C, n, alpha = 4, 16, 0.8
    x = make_tokens(C, n, 128, 1.0, seed=3, project=False)
    r0, _ = measure_tokens(x, C)
    worst = 0.0
    for m in np.linspace(0.05, 1.0, 20):
        A = torch.as_tensor(fusion.block_matrix(C, n, m / n, m / n, (1 - m) / ((C - 1) * n)))
        r1, _ = measure_tokens(_one_layer(x, A, alpha), C)
        pred = 1.0 / (1.0 + alpha * fusion.kappa(m, C))
        worst = max(worst, abs(r1 / r0 - pred))
        if abs(m - 1 / C) > 1e-6:
            require((r1 < r0) == (m > 1 / C), f"S3 sign fails at m={m:.3f}")
    require(worst < 1e-10, f"S3 ratio off by {worst:.2e}")
    return f"r'/r = 1/(1+alpha kappa(m)) on a grid of 20 m, sign flips at 1/C; max error {worst:.1e}"


def s4_numeric(quick):
    """Attention computed from actual token cosines matches the S4 closed forms: exactly on the
    symmetric configuration, within finite-d fluctuations on Gaussian tokens; m(r) -> m*."""
    worst_exact, worst_d = 0.0, 0.0
    for C, n, beta, r in ((4, 16, 5.0, 0.8), (3, 32, 12.0, 1.5), (6, 8, 1.0, 0.3)):
        x = make_tokens(C, n, C + C * n, r, noise="simplex")
        got = np.array(block_stats(attention(x, beta), C)[1:])
        want = np.array(fusion.softmax_block_weights(C, n, beta, measure_tokens(x, C)[0]))
        worst_exact = max(worst_exact, float(np.abs(got - want).max()))
        x = make_tokens(C, n, 4096, r, seed=C)
        m_sim = block_stats(attention(x, beta), C)[0]
        worst_d = max(worst_d, abs(m_sim - fusion.block_mass(C, n, beta, measure_tokens(x, C)[0])))
    require(worst_exact < 1e-12, f"S4 closed forms off by {worst_exact:.2e} on the symmetric configuration")
    require(worst_d < M_TOL, f"S4 m off by {worst_d:.3f} on Gaussian tokens (d=4096)")
    for C, n, r in ((4, 16, 0.8), (3, 8, 2.5), (2, 5, 0.3)):  # ReLU closed forms, cross weights clamped
        x = make_tokens(C, n, C + C * n, r, noise="simplex")
        got = np.array(block_stats(attention(x, 0.0, kind="relu"), C)[1:])
        want = np.array(fusion.relu_block_weights(C, n, measure_tokens(x, C)[0]))
        worst_exact = max(worst_exact, float(np.abs(got - want).max()))
    require(worst_exact < 1e-12, f"S4 ReLU closed forms off by {worst_exact:.2e} on the symmetric configuration")
    lim = abs(fusion.block_mass(4, 64, 8.0, 1e-8) - fusion.m_star(4, 8.0))
    require(lim < 1e-12, f"S4: |m(1e-8) - m*| = {lim:.1e}")
    return (
        f"softmax and ReLU closed forms exact to {worst_exact:.1e} (symmetric), m within {worst_d:.1e} "
        f"(Gaussian, d=4096), |m(1e-8) - m*| = {lim:.1e}"
    )


def s5_gaps(layers=10, d=2048, n=64, C=4, seed=0):
    """Max |m_sim - m_mf| and max |r_sim/r_mf - 1| per regime, for the centred recursion (checked)
    and for the n -> infinity cosines (reported only)."""
    out = {}
    for name, (beta, alpha, r0) in REGIMES.items():
        sim = simulate_fusion(C, n, d, beta, alpha, r0, layers, seed=seed)
        row, mf = {}, {}
        for label, centred in (("centred", True), ("uncentred", False)):
            f = mf[label] = fusion.mean_field(C, n, beta, alpha, sim.r[0], layers, centred=centred)
            row[label] = (float(np.abs(sim.m - f.m).max()), float(np.abs(sim.r / f.r - 1).max()))
        row["r_ratio_sim"] = float(sim.r[-1] / sim.r[0])
        row["r_ratio_mf"] = float(mf["centred"].r[-1] / sim.r[0])
        out[name] = row
    return out


def s5_numeric(quick):
    """Finite simulation (d=2048, n=64, C=4, 10 layers) against mean_field in the fast, slow and
    stall regimes; the stall must be predicted (r barely moves) and observed."""
    gaps = s5_gaps()
    for name, row in gaps.items():
        dm, dr = row["centred"]
        require(dm < M_TOL, f"S5 {name}: m gap {dm:.4f} >= {M_TOL}")
        require(dr < R_TOL, f"S5 {name}: r gap {dr:.4f} >= {R_TOL}")
    fast, stall = gaps["fast"], gaps["stall"]
    require(fast["r_ratio_mf"] < 0.01 and fast["r_ratio_sim"] < 0.01, f"S5 fast regime did not fuse: {fast}")
    require(stall["r_ratio_mf"] > 0.99 and stall["r_ratio_sim"] > 0.99, f"S5 trap regime did not stall: {stall}")
    x = simulate_fusion(4, 8, 4 + 32, 3.0, 0.5, 1.0, 10, noise="simplex")
    exact = np.abs(x.r / fusion.mean_field(4, 8, 3.0, 0.5, x.r[0], 10).r - 1).max()
    require(exact < 1e-9, f"S5 symmetric configuration deviates from the recursion by {exact:.1e}")
    r_c = float(fusion.critical_spread(8, -1.0 / 3))
    above = simulate_fusion(4, 8, 4 + 32, 3.0, 0.5, 1.2 * r_c, 10, noise="simplex")
    grow = np.abs(above.r / fusion.mean_field(4, 8, 3.0, 0.5, above.r[0], 10).r - 1).max()
    require(np.all(np.diff(above.r) > 0) and grow < 1e-9, f"S5 converse: r0 = 1.2 r_c must grow ({above.r})")
    parts = [
        f"{k}: dm={v['centred'][0]:.1e} dr={v['centred'][1]:.1e} (n->inf form dr={v['uncentred'][1]:.1e})"
        for k, v in gaps.items()
    ]
    return "; ".join(parts) + (
        f"; symmetric config exact to {exact:.0e}; from 1.2 r_c r grows "
        f"{above.r[0]:.2f} -> {above.r[-1]:.2f} as the recursion says"
    )


def s7_numeric(quick):
    """No residual: at chance the class means vanish in one layer, uniform attention collapses the
    batch to one point. With the residual the class-mean factor is 1 + alpha kappa(m) >= 1."""
    C, n = 4, 16
    x = make_tokens(C, n, 128, 1.0, seed=5, project=False)
    A = attention(x.clone(), 0.0)  # beta = 0: uniform, m = 1/C exactly
    y = A @ x
    spread = float((y - y.mean(0)).norm() / x.norm())
    require(spread < 1e-12, f"S7: uniform attention leaves spread {spread:.1e}")
    m = 1.0 / C
    B = torch.as_tensor(fusion.block_matrix(C, n, 0.6 * m, 0.4 * m / (n - 1), (1 - m) / ((C - 1) * n)))
    means = float((B @ x).reshape(C, n, -1).mean(1).norm() / x.reshape(C, n, -1).mean(1).norm())
    require(means < 1e-12, f"S7: class means survive at chance without residual ({means:.1e})")
    sim = simulate_fusion(C, n, C + C * n, 0.0, 1.0, 1.0, 5, noise="simplex")
    drift = float(np.abs(sim.r / sim.r[0] - 1).max())
    require(drift < 1e-10, f"S7: at chance with the residual r must stay put, moved {drift:.1e}")
    C, n, beta = 4, 8, 4.0  # no residual on symmetric tokens: r' = r |a_self - a_same| / kappa, cubic at small r
    nores = simulate_fusion(C, n, C + C * n, beta, 0.0, 0.05, 2, noise="simplex", residual=False)
    a_s, a_m, _ = fusion.softmax_block_weights(C, n, beta, nores.r[0])
    want = fusion.no_residual_map(nores.r[0], a_s, a_m, a_s + (n - 1) * a_m, C)
    cubic = fusion.cubic_collapse_coefficient(C, n, beta) * nores.r[0] ** 3
    require(abs(nores.r[1] / want - 1) < 1e-9, f"S7: no-residual spread {nores.r[1]:.3e} vs map {want:.3e}")
    require(abs(nores.r[1] / cubic - 1) < 0.01, f"S7: no-residual spread {nores.r[1]:.3e} vs cubic law {cubic:.3e}")
    return (
        f"no residual: class means {means:.0e}, uniform collapse {spread:.0e}, r 0.05 -> {nores.r[1]:.2e} "
        f"(cubic law {cubic:.2e}); with residual at chance r constant to {drift:.0e}"
    )


CHECKS: list[Check] = [
    Check("S2", "symbolic", "block eigenvalues on means and deviations, growth of the common part", sym.s2_symbolic),
    Check("S2", "numeric", "block layer on symmetric tokens; non-simplex counterexample; unstable ETF", s2_numeric),
    Check("S2", "property", "layer map = block matrix = spread after the layer; ETF unstable invariant", _props("S2")),
    Check("S3", "symbolic", "kappa - (a_self - a_same) = n (a_same - a_out)", sym.s3_symbolic),
    Check("S3", "numeric", "r'/r across chance on Gaussian tokens", s3_numeric),
    Check("S3", "property", "spread shrinks iff above chance", _props("S3")),
    Check("S4", "symbolic", "m* limit, m > 1/C, dm/dr < 0, both cosine forms", sym.s4_symbolic),
    Check("S4", "numeric", "softmax and ReLU closed forms against attention of actual tokens", s4_numeric),
    Check("S4", "property", "mass above chance, monotone, tends to m*", _props("S4")),
    Check("S5", "symbolic", "fixed point r = 0, rate 1/(1 + alpha kappa(m*)), critical spread r_c", sym.s5_symbolic),
    Check("S5", "numeric", "simulation d=2048 n=64 C=4 against mean_field: fast, slow, stall; r0 > r_c", s5_numeric),
    Check("S5", "property", "r non-increasing below r_c, growing above; m non-decreasing; rate", _props("S5")),
    Check("S7", "symbolic", "one-step collapse without residual; cubic collapse coefficient", sym.s7_symbolic),
    Check("S7", "numeric", "collapse without residual, cubic law, persistence with the residual", s7_numeric),
    Check(
        "S7",
        "property",
        "means vanish at chance, deviations survive, cubic collapse; residual keeps means",
        _props("S7"),
    ),
]
