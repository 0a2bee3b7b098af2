"""F4 from whole-model runs paired by seed: ``deepfusion figures --heads GLOB``.

Draws a :class:`~deepfusion.experiments.studies.head_comparison.HeadComparison` (runs of one
config that differ only in ``model.head`` and ``train.seed``). One column per metric (backbone
kNN, linear probe, kNN and LOO 1-NN on head outputs). Top row: each head's test accuracy, one line
per training seed joining that seed's heads (they share backbone initialisation, batches and
views), the mean over seeds as a diamond, and for the backbone metrics the random-backbone
baseline. Bottom row: the transformer minus each other head, one dot per seed, the mean with its
95% t-interval over seeds, and zero (no difference) as a dashed line. The quick F4
(``f4_head_comparison.py``, digits) is unchanged.
"""

from __future__ import annotations

import shlex
import textwrap
from pathlib import Path

import numpy as np

from deepfusion.paper_figures import style
from deepfusion.paper_figures.record import FigureRecord

KEY = "F4"
STEM = "f4_head_comparison_paired"
SHORT = {"transformer": "Transformer", "mlp": "MLP + BN", "mlp_nobn": "MLP no BN", "ffn": "FFN (paper)"}


def short(head: str) -> str:
    return SHORT.get(head, head)


def _seed_colors(seeds) -> dict[int, str]:
    palette = [c for name, c in style.OKABE_ITO.items() if name not in ("black", "yellow")]
    return {s: palette[i % len(palette)] for i, s in enumerate(seeds)}


def _accuracy_panel(ax, rec, metric: str, colors) -> None:
    x = np.arange(len(rec.heads))
    for i, s in enumerate(rec.seeds):
        ax.plot(
            x,
            [h.values[metric][i] for h in rec.heads],
            "-o",
            color=colors[s],
            lw=0.8,
            ms=2.5,
            alpha=0.9,
            label=f"seed {s}",
        )
    ax.plot(x, [h.mean(metric) for h in rec.heads], "D", color="black", ms=4, zorder=4, label="mean over seeds")
    from deepfusion.experiments.studies.head_comparison import BASELINE_OF

    if metric in BASELINE_OF:
        base = float(np.mean(rec.heads[0].values[BASELINE_OF[metric]]))
        ax.axhline(base, color=style.REFERENCE_COLOR, ls="--", lw=0.9, label="random backbone (mean)")
    ax.set_xticks(x, [short(h.head) for h in rec.heads], rotation=35, ha="right")


def _difference_panel(ax, rec, metric: str, colors) -> None:
    others = rec.heads[1:]
    rng = np.random.default_rng(0)  # a fixed horizontal jitter, so equal values stay visible
    jitter = rng.uniform(-0.12, 0.12, len(rec.seeds))
    for j, h in enumerate(others):
        d = rec.difference(h.head, metric)
        for i, s in enumerate(rec.seeds):
            ax.plot(j + jitter[i], d.per_seed[i], "o", color=colors[s], ms=2.5, alpha=0.9)
        err = None if d.low is None else [[d.mean - d.low], [d.high - d.mean]]
        ax.errorbar(j + 0.3, d.mean, yerr=err, fmt="D", color="black", ms=4, elinewidth=1.0, capsize=2, zorder=4)
    ax.axhline(0.0, color=style.REFERENCE_COLOR, ls="--", lw=0.9)
    ax.set_xticks(np.arange(len(others)) + 0.1, [short(h.head) for h in others], rotation=35, ha="right")
    ax.set_xlim(-0.5, len(others) - 0.3)


def bars_text(rec) -> str:
    """What the marks and error bars are, in words (printed under the figure and in the caption)."""
    n = len(rec.seeds)
    interval = (
        f"whiskers: {100 * rec.level:.0f}% t-interval over the {n} seeds (n - 1 = {n - 1} degrees of freedom)"
        if n > 1
        else "one seed: no interval"
    )
    return (
        f"Top: test accuracy of each head, one line per training seed (a seed's heads share backbone "
        f"initialisation, batch order and augmented views); diamonds: mean over seeds; dashed: the random "
        f"(untrained) backbone evaluated alike, mean over seeds. Bottom: {short(rec.reference)} minus each head, "
        f"seed by seed (dots), and the mean of those differences (diamond; {interval}); dashed: no difference."
    )


def plot(rec, out_dir: Path, stem: str = STEM) -> list[Path]:
    from deepfusion.experiments.studies.head_comparison import METRICS

    metrics = list(METRICS)
    colors = _seed_colors(rec.seeds)
    fig, axes = style.subplots(2, len(metrics), width=style.FULL_WIDTH, height=5.4)
    for c, m in enumerate(metrics):
        _accuracy_panel(axes[0][c], rec, m, colors)
        _difference_panel(axes[1][c], rec, m, colors)
        axes[0][c].set_title(METRICS[m])
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[1][0].set_ylabel(f"{short(rec.reference)} minus head\n(percentage points)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 5), bbox_to_anchor=(0.5, 0.93), fontsize=7)
    fig.suptitle(title(rec), fontsize=9)
    fig.text(0.5, 0.005, "\n".join(textwrap.wrap(bars_text(rec), 150)), ha="center", va="bottom", fontsize=6)
    fig.subplots_adjust(top=0.80, bottom=0.2, hspace=0.75, wspace=0.45)
    return style.save(fig, out_dir, stem)


def title(rec) -> str:
    seeds = ",".join(map(str, rec.seeds))
    return (
        f"Projection heads on {rec.preset}, whole model trained per head, paired by training seed "
        f"(seeds {seeds}, n={len(rec.seeds)})"
    )


def command(patterns, out_dir) -> str:
    parts = ["deepfusion", "figures"]
    for p in patterns:
        parts += ["--heads", str(p)]
    return shlex.join(parts + ["--out", str(out_dir)])


def make(run_dirs, out_dir, patterns=None) -> list[FigureRecord]:
    """Compare the heads of ``run_dirs`` and write ``f4_head_comparison_paired.{png,pdf,json}``; one record
    naming every run and seed behind it. ``patterns``: the ``--heads`` values as given (for the command)."""
    from deepfusion.experiments.studies.head_comparison import compare_heads
    from deepfusion.model.runs.layout import write_json

    rec = compare_heads(run_dirs)
    out_dir = Path(out_dir)
    with style.context():
        paths = plot(rec, out_dir)
    paths.append(write_json(out_dir / f"{STEM}.json", rec.to_json()))
    n = len(rec.seeds)
    caption = (
        f"{title(rec)}. {bars_text(rec)} Every number is read from the runs' eval.json (offline evaluation of "
        f"the final weights on the test split; kNN and linear probe on frozen backbone features, head kNN and "
        f"LOO 1-NN on head outputs); {len(rec.heads)} heads x {n} seeds = {len(rec.heads) * n} runs of config "
        f"{rec.config_hash} (model.head and train.seed left out)."
        + (" Fewer than 6 seeds: exploratory." if n < 6 else "")
    )
    runs = [
        f"{run}: model.head={h.head} train.seed={s} (config {rec.config_hash} apart from head and seed)"
        for h in rec.heads
        for s, run in zip(rec.seeds, h.runs)
    ]
    cmd = command(patterns or [str(d) for d in run_dirs], out_dir)
    return [FigureRecord(KEY, f"Head comparison paired by seed ({rec.preset})", paths, caption, cmd, runs)]
