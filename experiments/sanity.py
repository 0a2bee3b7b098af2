"""The parts of the sanity study (``experiments.studies.sanity``, behind ``deepfusion sanity``):
(a) untrained idealised layers against the S5 mean-field recursion, judged by the theory's
tolerances (``idealised_layers``); the token statistics of every block of a trained head, for (b)
(``block_statistics``); and the printed table of the record (``format_summary``). What each part
computes, and its budgets, are in the command's help (``deepfusion/commands/sanity.py``).
"""

from __future__ import annotations

import numpy as np

from deepfusion.experiments import metrics as mt
from deepfusion.experiments.capture import capture, disjoint_batches
from deepfusion.experiments.sanity_record import Block, Idealised, IdealisedRow, SanityResult, TrainedHead
from deepfusion.theory import fusion
from deepfusion.theory.checks_fusion import M_TOL, R_TOL, REGIMES
from deepfusion.theory.simulation import simulate_fusion

# (a): S5 geometry of the theory's own check; the regimes and tolerances are imported from it.
GEOMETRY = {"C": 4, "n": 64, "d": 2048, "layers": 10}


# ----------------------------------------------------------------------------- (a) idealised layers


def idealised_layers(quick: bool = False) -> Idealised:
    """(a): simulation against mean_field per regime and seed; ``passed`` says whether all agree."""
    C, n, d, layers = (GEOMETRY[k] for k in ("C", "n", "d", "layers"))
    seeds = (0,) if quick else (0, 1, 2)
    rows = []
    for name, (beta, alpha, r0) in REGIMES.items():
        for seed in seeds:
            sim = simulate_fusion(C, n, d, beta, alpha, r0, layers, seed=seed)
            # the module attribute, looked up at call time: a patched recursion is what gets tested
            mf = fusion.mean_field(C, n, beta, alpha, sim.r[0], layers)
            dm = float(np.abs(sim.m - mf.m).max())
            dr = float(np.abs(sim.r / mf.r - 1.0).max())
            ratio_sim, ratio_mf = float(sim.r[-1] / sim.r[0]), float(mf.r[-1] / mf.r[0])
            failures = []
            if not dm < M_TOL:
                failures.append(f"max |m_sim - m_mf| = {dm:.4f} >= {M_TOL}")
            if not dr < R_TOL:
                failures.append(f"max |r_sim / r_mf - 1| = {dr:.4f} >= {R_TOL}")
            if name == "fast" and not (ratio_sim < 0.01 and ratio_mf < 0.01):
                failures.append(f"fast fusion expected r_L/r_0 < 0.01, got sim {ratio_sim:.3g}, mf {ratio_mf:.3g}")
            if name == "stall" and not (ratio_sim > 0.99 and ratio_mf > 0.99):
                failures.append(
                    f"self-attention trap expected r_L/r_0 > 0.99, got sim {ratio_sim:.3g}, mf {ratio_mf:.3g}"
                )
            rows.append(
                IdealisedRow(
                    name,
                    seed,
                    beta,
                    alpha,
                    float(sim.r[0]),
                    dm,
                    dr,
                    ratio_sim,
                    ratio_mf,
                    sim.m.tolist(),
                    mf.m.tolist(),
                    sim.r.tolist(),
                    mf.r.tolist(),
                    not failures,
                    failures,
                )
            )
    return Idealised(dict(GEOMETRY), M_TOL, R_TOL, rows, all(r.passed for r in rows))


# ----------------------------------------------------------------------------- (b) trained heads


def block_statistics(model, augment, dataset, batches: int, per_class: int, seed: int = 0) -> list[Block]:
    """Token statistics of every block input and the last block's output (``head.trace`` tokens),
    averaged over ``batches`` analysis batches; works for heads with and without attention."""
    per_batch = []
    for b, idx in enumerate(disjoint_batches(dataset.y, batches, per_class, seed)):
        cap = capture(model, augment, dataset, idx, seed + b, "cpu")
        T, y = cap["tokens"].astype(np.float64), cap["labels"]
        per_batch.append(
            [
                (mt.relative_spread(t, y), mt.class_mean_cosine(t, y), mt.nc1(t, y), mt.residual_ratio(t, T[0]))
                for t in T
            ]
        )
    means = np.mean(np.asarray(per_batch, dtype=np.float64), axis=0)  # (blocks + 1, 4)
    return [Block(*(float(v) for v in row)) for row in means]


# ----------------------------------------------------------------------------- report


def _f(v, fmt=".3f") -> str:
    return "n/a" if v is None or not np.isfinite(v) else format(v, fmt)


def _idealised_lines(a: Idealised) -> list[str]:
    g = a.geometry
    lines = [
        f"(a) idealised layers vs mean-field recursion (C={g['C']}, n={g['n']}, d={g['d']}, {g['layers']} layers; "
        f"tolerances |dm| < {a.m_tol}, |dr/r| < {a.r_tol})",
        f"  {'regime':<7}{'seed':>5}{'beta':>6}{'alpha':>6}{'r0':>7}{'max|dm|':>9}{'max|dr/r|':>10}"
        f"{'rL/r0 sim':>11}{'rL/r0 mf':>10}  result",
    ]
    for r in a.rows:
        lines.append(
            f"  {r.regime:<7}{r.seed:>5}{r.beta:>6.1f}{r.alpha:>6.1f}{r.r0:>7.3f}{r.max_dm:>9.4f}"
            f"{r.max_dr:>10.4f}{r.r_ratio_sim:>11.3g}{r.r_ratio_mf:>10.3g}  "
            + ("pass" if r.passed else "FAIL: " + "; ".join(r.failures))
        )
    return lines


def _head_lines(name: str, e: TrainedHead) -> list[str]:
    ev = e.eval
    lines = [
        f"  {name}: kNN {_f(ev.knn)}, linear {_f(ev.linear)}, head 1-NN {_f(ev.head_loo1nn)} "
        f"(random backbone kNN {_f(ev.random_knn)}), trained in {_f(e.train_wall_s, '.0f')} s"
    ]
    for l, blk in enumerate(e.blocks):
        row = (
            f"    block {l if l < len(e.blocks) - 1 else 'out'}: r {_f(blk.relative_spread)}, "
            f"NC1 {_f(blk.nc1)}, residual {_f(blk.residual_ratio)}"
        )
        if l < len(e.layers):
            t = e.layers[l]
            ci = t.ratio_ci or [None, None]  # one seed: no interval over seeds
            row += (
                f" | ratio {_f(t.ratio, '.2f')}x [{_f(ci[0], '.2f')}, {_f(ci[1], '.2f')}], "
                f"S4 {_f(t.predicted_same_class_mass / e.chance, '.2f')}x, self {_f(t.self_mass)}, "
                f"pos {_f(t.positive_mass)}, beta {_f(t.beta_eff, '.2f')}"
            )
        lines.append(row)
    if e.verdict is not None:
        lines.append(f"    chance {e.chance:.4f}; verdict: {e.verdict}: {e.decided_by}")
    return lines


def format_summary(result: SanityResult) -> str:
    """The printed table of the record: (a) row by row, (b) head by head and block by block."""
    lines = _idealised_lines(result.idealised)
    b = result.trained
    if b is not None:
        lines.append(
            f"(b) trained heads on the synthetic mixture ({' '.join(b.overrides)}; "
            f"{b.batches} batches x {b.per_class} per class)"
        )
        for name, head in b.heads():
            lines += _head_lines(name, head)
    lines.append("(a) " + ("agrees with the theory" if result.idealised.passed else "DISAGREES with the theory"))
    return "\n".join(lines)
