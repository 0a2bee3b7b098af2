"""F7: the paper's regime: same-class attention by layer per arm with its nulls, and the ablations.

Draws the record of ``experiments.studies.paper_regime``. Top row, one panel per arm (the preset as
is, temperature 0.1, ``mask_pair``, temperature 0.5): the rule v3 ratio per layer, seeds averaged, with the
interval of the verdict's look; each seed's curve faintly; the label-permutation null's 97.5%
quantile and the untrained head; chance (1x) and the effect line; the verdict in the panel's
title. The last top panel: each seed's backbone kNN gain over its random backbone, per arm. When
the record holds the ablations, two more rows: per swept value the kNN gain and the last layer's
ratio (seed means, sample-std bars, single seeds as dots).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepfusion.experiments.studies.paper_regime import PaperRegime
from deepfusion.paper_figures import runs, style
from deepfusion.paper_figures.f2_block_mass import draw_nulls
from deepfusion.paper_figures.record import FigureRecord

KEY = "F7"
TITLE = "The paper's regime: same-class attention by layer per arm, with nulls, and the ablations"
ARM_COLORS = ("blue", "vermillion", "purple", "sky")  # green is the effect line, orange the untrained head


def _arm_panel(ax, arm, color) -> None:
    v = arm.pooled.verdict
    depth = np.arange(1, arm.pooled.num_layers + 1)
    for i, curve in enumerate(v.per_seed_layers):
        ax.plot(depth, curve, color=color, lw=0.6, alpha=0.35, label="single seeds" if i == 0 else None)
    mean = np.asarray(v.layers)
    ci = np.asarray([c if c is not None else [m, m] for c, m in zip(v.layers_ci, mean)])
    err = np.vstack([mean - ci[:, 0], ci[:, 1] - mean]).clip(min=0)
    ax.errorbar(depth, mean, yerr=err, marker="o", ms=3, color=color, label="trained, mean over seeds")
    draw_nulls(ax, depth, v)
    ax.axhline(1.0, color=style.REFERENCE_COLOR, ls=":", lw=1)
    ax.axhline(v.line, color=style.OKABE_ITO["green"], ls=":", lw=1, label=f"effect line {v.line}x")
    ax.set_title(f"{arm.name}\n{v.outcome}\n({v.seeds} seeds, last {v.last_layer_ratio:.2f}x)", fontsize=7)
    ax.set_xticks(depth[::3] if len(depth) > 6 else depth)
    ax.set_xlabel("layer of the head")


def _gain_panel(ax, arms) -> None:
    for i, arm in enumerate(arms):
        gain = np.asarray(arm.knn) - np.asarray(arm.random_knn)
        x = np.full(gain.shape, float(i)) + np.linspace(-0.12, 0.12, gain.size)
        ax.plot(x, gain, "o", ms=3, color=style.OKABE_ITO[ARM_COLORS[i % len(ARM_COLORS)]], alpha=0.8)
        ax.plot([i - 0.25, i + 0.25], [gain.mean()] * 2, color="black", lw=1.2)
    ax.axhline(0.0, color=style.REFERENCE_COLOR, ls=":", lw=1)
    ax.set_xticks(range(len(arms)), [a.name for a in arms], fontsize=6.5, rotation=40, ha="right")
    ax.yaxis.tick_right()  # its own scale, kept clear of the arm panel beside it
    ax.yaxis.set_label_position("right")
    ax.set_ylabel("backbone kNN gain\nover random (points)")
    ax.set_title("what the backbone\nlearned", fontsize=7)


def _tick(value) -> str:
    """1e-4 rather than 0.0001, so that neighbouring weight-decay ticks do not run together."""
    v = float(value)
    return f"{v:g}" if v == 0 or abs(v) >= 1e-3 else f"{v:.0e}".replace("e-0", "e-")


def _sweep_row(axes, sweeps, metric: str, ylabel: str, line: float | None = None) -> None:
    """One row of ablation panels; with ``line`` (the ratio row) the effect line is drawn and every
    panel spans chance to above it, so that a ratio of 1.002 does not look like an effect."""
    for ax, sweep in zip(axes, sweeps):
        x = np.asarray(sweep.values, dtype=float)
        if metric == "gain":
            cells = [np.asarray(k) - np.asarray(r) for k, r in zip(sweep.knn, sweep.random_knn)]
        else:
            cells = [np.asarray(c, dtype=float) for c in sweep.ratio]
        stats = [runs.summarize(c) for c in cells]
        mean = np.array([s.mean for s in stats])
        err = np.array([s.std if s.n > 1 else 0.0 for s in stats])
        for xi, c in zip(x, cells):
            ax.plot(np.full(c.shape, xi), c, ".", color=style.OKABE_ITO["sky"], ms=4)
        ax.errorbar(x, mean, yerr=err if err.any() else None, marker="s", ms=3, color=style.OKABE_ITO["blue"])
        if sweep.scale == "log":
            ax.set_xscale("log")
        elif sweep.scale == "symlog" and (x > 0).any():
            ax.set_xscale("symlog", linthresh=min(v for v in x if v > 0))
        ax.set_xticks(x, [_tick(v) for v in sweep.values])
        ax.minorticks_off()
        ax.axvline(sweep.base_value, color=style.REFERENCE_COLOR, ls=":", lw=1)
        ax.axhline(1.0 if metric == "ratio" else 0.0, color=style.REFERENCE_COLOR, ls=":", lw=0.8)
        ax.set_xlabel(sweep.label.replace(" (", "\n("))  # two lines: neighbouring labels stay apart
        if line is not None:
            ax.axhline(line, color=style.OKABE_ITO["green"], ls=":", lw=1)
            low, high = min(0.95, *(c.min() for c in cells)), max(line, *(c.max() for c in cells))
            ax.set_ylim(low - 0.02, high + 0.03)
    axes[0].set_ylabel(ylabel)


def plot(record: PaperRegime, out_dir: Path, stem: str) -> list[Path]:
    arms = record.arms
    sweeps = record.ablations.sweeps if record.ablations is not None else []
    rows = 3 if sweeps else 1
    # The arms' row and the ablations' rows have their own column counts: four arms do not squeeze
    # three sweeps, and the ablations keep a last column for the legend.
    fig = style.figure(width=style.FULL_WIDTH, height=2.4 * rows)
    grid = fig.add_gridspec(rows, 1, height_ratios=[1.15] + [1] * (rows - 1))
    top = grid[0].subgridspec(1, len(arms) + 1).subplots(squeeze=False)[0]
    for i, arm in enumerate(arms):
        if i:  # shared before drawing, so that the row's limits take in every arm's intervals
            top[i].sharey(top[0])
            top[i].tick_params(labelleft=False)  # the first panel's scale serves the row
        _arm_panel(top[i], arm, style.OKABE_ITO[ARM_COLORS[i % len(ARM_COLORS)]])
    top[0].set_ylabel("same-class share / chance")
    _gain_panel(top[len(arms)], arms)
    handles, labels = top[0].get_legend_handles_labels()
    if sweeps:
        low = grid[1:].subgridspec(2, len(sweeps) + 1).subplots(squeeze=False)
        _sweep_row(low[0], sweeps, "gain", "kNN gain over\nrandom (points)")
        line = arms[0].pooled.verdict.line if arms else 1.25
        _sweep_row(low[1], sweeps, "ratio", "last-layer ratio\n(same-class / chance)", line)
        for ax in low[:, -1]:
            ax.axis("off")
        low[0][-1].legend(handles, labels, loc="center", fontsize=6.5)
        fig.tight_layout()
    else:
        fig.tight_layout(rect=(0, 0.12, 1, 1))
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=6.5)
    return style.save(fig, out_dir, stem)


def caption(record: PaperRegime) -> str:
    s = record.arms[0].pooled.settings
    arms = "; ".join(
        f"{a.name}: {a.pooled.verdict.outcome} (seeds {_seeds(a.pooled.train_seeds)}, "
        f"last layer {a.pooled.verdict.last_layer_ratio:.2f}x)"
        for a in record.arms
    )
    text = (
        f"The paper's regime ({record.base}: its head, batch and temperature on a backbone that learns). "
        f"Top: rule v3's statistic per layer (the share of a token's attention outside its own views that "
        f"falls on other samples of its class, over its uniform value), seeds averaged with the interval of "
        f"the verdict's look, single seeds faint, the label-permutation null's 97.5% quantile (dashed) and "
        f"the untrained head on the same batches; {s.batches} test batches of {s.tokens_per_batch} tokens per "
        f"seed. Verdicts: {arms}. Top right: each seed's backbone kNN gain over its random backbone."
    )
    if record.ablations is not None:
        a = record.ablations
        text += (
            f" Rows 2-3, exploratory: one hyper-parameter at a time around the preset (dotted line), seeds "
            f"{_seeds(a.train_seeds or list(range(a.seeds)))}; kNN gain and the last layer's ratio, seed means "
            f"with sample-std bars and single seeds as dots."
        )
    return text


def _seeds(seeds) -> str:
    seeds = list(seeds)
    contiguous = seeds == list(range(seeds[0], seeds[0] + len(seeds)))
    return f"{seeds[0]}-{seeds[-1]}" if contiguous and len(seeds) > 1 else ",".join(map(str, seeds))


def make(record: PaperRegime, out_dir, command: str) -> FigureRecord:
    """F7 drawn from the study's record into ``f7_paper_regime.{png,pdf}``."""
    with style.context():
        paths = plot(record, Path(out_dir), "f7_paper_regime")
    runs_used = [r for a in record.arms for r in a.runs] + (record.ablations.runs if record.ablations else [])
    by_hash = {}  # an ablation cell equal to an arm is described twice: keep the arm's description
    for described in runs_used:
        by_hash.setdefault(described.rsplit("(config ", 1)[-1], described)
    return FigureRecord(KEY, TITLE, paths, caption(record), command, list(by_hash.values()), record)
