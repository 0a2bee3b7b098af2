"""Figures of a user's own runs: ``deepfusion figures --run DIR [--run DIR ...]``.

For any trained runs (analysed here first when ``analysis.json``/``attention.npz`` are missing):

- per run, F1-style label-sorted attention maps per layer (mean over heads) of its first analysis
  batch;
- one F2-style plot of the same-class attention ratio to chance against depth (rule v3's ratio):
  one line per run (one training seed: no interval), and, when several runs differ only in
  ``train.seed``, their mean with the verdict's t-interval over seeds as a band.

Every figure carries a title naming the data and the runs, and says on the figure what its error
bars are. The command listed in the index regenerates the figures where they stand (``--out``).
"""

from __future__ import annotations

import shlex
import textwrap
from pathlib import Path

import numpy as np

from deepfusion.errors import DataError
from deepfusion.experiments.pooling import seedless_hash
from deepfusion.experiments.studies import deep_fusion
from deepfusion.model.runs.loading import run_config
from deepfusion.paper_figures import analysis_io, style
from deepfusion.paper_figures.f1_attention_maps import plot_maps
from deepfusion.paper_figures.record import FigureRecord

KEY = "RUNS"


def data_label(cfg) -> str:
    """The data a run trained on, in words: the dataset, or the file of an ``.npz`` run."""
    if cfg.data.name == "npz" and cfg.data.root:
        return f"{Path(str(cfg.data.root)).name} (own data)"
    return cfg.data.name


def wrapped(title: str, width: int = 80) -> str:
    """A figure title broken into lines that fit the figure."""
    return "\n".join(textwrap.wrap(title, width))


def command(run_dirs, out_dir) -> str:
    parts = ["deepfusion", "figures"]
    for d in run_dirs:
        parts += ["--run", str(d)]
    return shlex.join(parts + ["--out", str(out_dir)])


def _same_config(cfgs) -> bool:
    return (
        len(cfgs) > 1 and len({seedless_hash(c) for c in cfgs}) == 1 and len({c.train.seed for c in cfgs}) == len(cfgs)
    )


def plot_ratios(records, names, pooled, title: str, out_dir: Path, stem: str) -> list[Path]:
    """Same-class share over chance per layer: each run's line (one seed: no interval), and for runs that
    differ only in seed the mean with the verdict's t-interval over seeds (rule v3) as a band."""
    fig, axes = style.subplots(1, 1, width=style.COLUMN_WIDTH + 0.6, height=3.2)
    ax = axes[0][0]
    L = max(r.num_layers for r in records)
    for i, (r, name) in enumerate(zip(records, names)):
        layers = np.asarray(r.verdict.layers)
        ax.plot(
            np.arange(1, len(layers) + 1),
            layers,
            marker="o",
            ms=3,
            lw=1,
            color=style.PALETTE[i % len(style.PALETTE)],
            label=f"{name} (1 seed)",
        )
    bars = "Lines: single runs, one training seed each, no error bars (the rule sets no interval for one seed)."
    if pooled is not None:
        v = pooled.verdict
        mean = np.asarray(v.layers)
        ci = np.asarray([c if c is not None else [m, m] for c, m in zip(v.layers_ci, mean)])
        depth = np.arange(1, len(mean) + 1)
        ax.fill_between(depth, ci[:, 0], ci[:, 1], color=style.REFERENCE_COLOR, alpha=0.2, lw=0)
        ax.plot(depth, mean, color="black", lw=1.5, label=f"mean of {v.seeds} seeds: {v.outcome}")
        two_sided = 100 * (1 - 2 * v.level)
        bars += (
            f" Band: t-interval over the {v.seeds} seeds ({two_sided:.1f}% two-sided, the verdict's level at "
            f"{'the exploratory stage' if v.look == 0 else f'look {v.look}'})."
        )
    ax.axhline(1.0, color=style.REFERENCE_COLOR, ls=":", lw=1, label="chance (uniform attention)")
    ax.set_xticks(np.arange(1, L + 1))
    ax.set_xlabel("layer of the head (depth)")
    ax.set_ylabel("same-class share / chance")
    fig.suptitle(wrapped(title, 70), fontsize=8)
    fig.text(0.5, 0.01, "\n".join(textwrap.wrap(bars, 110)), ha="center", va="bottom", fontsize=6)
    ax.legend(loc="upper left", fontsize=6)
    fig.subplots_adjust(top=0.84, bottom=0.26)
    return style.save(fig, out_dir, stem), bars


def make(run_dirs, out_dir, log=print) -> list[FigureRecord]:
    """Analyse (or read) each run; write its attention maps and the joint per-layer ratio plot."""
    run_dirs = [Path(d) for d in run_dirs]
    if not run_dirs:
        raise DataError("figures --run needs at least one run folder")
    if len({d.resolve() for d in run_dirs}) != len(run_dirs):
        raise DataError("figures --run: a run folder is given twice; give each once")
    out_dir = Path(out_dir)
    cfgs = [run_config(d) for d in run_dirs]
    records = [deep_fusion.run_analysis(d, log=log) for d in run_dirs]
    names = [d.name for d in run_dirs]
    data = sorted({data_label(c) for c in cfgs})
    cmd = command(run_dirs, out_dir)
    made = []
    with style.context():
        for d, cfg, r, name in zip(run_dirs, cfgs, records, names):
            attn, labels = analysis_io.load_attention(d)
            L, H, M, _ = attn.shape
            title = f"Attention of run {name} on {data_label(cfg)} (one batch, no error bars)"
            paths = plot_maps(
                attn.mean(1),
                labels,
                out_dir,
                f"runs_attention_{len(made)}_{name}",
                f"mean of {H} heads",
                title=wrapped(title, 100),
            )
            caption = (
                f"{title}: label-sorted attention of one analysis batch of {M} tokens (both views of {M // 2} "
                f"test samples, {len(np.unique(labels))} classes), mean over the {H} heads, one panel per layer "
                f"(L={L}); class boundaries in vermillion. A single batch of one run: no error bars. Verdict "
                f"on this run alone: {r.verdict.label}."
            )
            made.append(FigureRecord(KEY, title, paths, caption, cmd, [name]))
        pooled = deep_fusion.analyze_runs(run_dirs, log=log) if _same_config(cfgs) else None
        title = f"Same-class attention against depth: {', '.join(data)}; runs {', '.join(names)}"
        paths, bars = plot_ratios(records, names, pooled, title, out_dir, "runs_same_class_ratio")
        caption = (
            f"{title}. Per layer, the share of a token's attention outside its own views (itself and its "
            "positive view removed, the row renormalised) that falls on other samples of its class, averaged "
            "over heads and analysis batches, as a multiple of that share under uniform attention (rule v3's "
            f"ratio). {bars}"
            + (
                f" Verdict over the seeds: {pooled.verdict.label}."
                if pooled is not None
                else ""
                if len(run_dirs) == 1
                else " The runs differ in more than train.seed, so they are not pooled."
            )
        )
        made.append(FigureRecord(KEY, title, paths, caption, cmd, names))
    return made
