"""Figures of a user's own runs: ``deepfusion figures --run DIR [--run DIR ...]``.

For any trained runs (analysed here first when ``analysis.json``/``attention.npz`` are missing):

- per run, F1-style label-sorted attention maps per layer (mean over heads) of its first analysis
  batch;
- one F2-style plot of the same-class attention ratio to chance against depth: one line per run
  with its 95% interval over that run's analysis batches (one training seed each), and, when
  several runs differ only in ``train.seed``, their pooled line with the interval of the verdict
  (seeds, batches inside seeds).

Every figure carries a title naming the data and the runs, and says on the figure what its error
bars are. The command listed in the index regenerates the figures where they stand (``--out``).
"""

from __future__ import annotations

import shlex
import textwrap
from pathlib import Path

import numpy as np

from deepfusion.errors import DataError
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
    from deepfusion.experiments.pooling import seedless_hash

    return len(cfgs) > 1 and len({seedless_hash(c) for c in cfgs}) == 1 and len({c.train.seed for c in cfgs}) == len(cfgs)


def plot_ratios(records, names, pooled, title: str, out_dir: Path, stem: str) -> list[Path]:
    """Same-class mass over chance per layer: each run (95% CI over its batches), the pooled line."""
    fig, axes = style.subplots(1, 1, width=style.COLUMN_WIDTH + 0.6, height=3.2)
    ax = axes[0][0]
    L = max(r.num_layers for r in records)
    for i, (r, name) in enumerate(zip(records, names)):
        v = r.verdict
        mean, ci = np.asarray(v.layers), np.asarray(v.layers_ci)
        depth = np.arange(1, len(mean) + 1) + 0.06 * (i - (len(records) - 1) / 2)  # side by side, not on top
        ax.errorbar(depth, mean, yerr=np.vstack([mean - ci[:, 0], ci[:, 1] - mean]).clip(min=0), marker="o", ms=3,
                    lw=1, capsize=2, color=style.PALETTE[i % len(style.PALETTE)],
                    label=f"{name}: {v.outcome}")
    if pooled is not None:
        v = pooled.verdict
        mean, ci = np.asarray(v.layers), np.asarray(v.layers_ci)
        ax.fill_between(np.arange(1, len(mean) + 1), ci[:, 0], ci[:, 1], color=style.REFERENCE_COLOR, alpha=0.2,
                        label=f"pooled, {v.seeds} seeds: {v.outcome} (95% CI, band)")
    ax.axhline(1.0, color=style.REFERENCE_COLOR, ls=":", lw=1, label="chance (uniform attention)")
    ax.set_xticks(np.arange(1, L + 1))
    ax.set_xlabel("layer of the head (depth)")
    ax.set_ylabel("same-class mass / chance")
    batches = sorted({r.settings.batches for r in records})
    bars = (f"Error bars: 95% bootstrap interval over each run's {'/'.join(map(str, batches))} analysis batches "
            f"(one training seed per run)" + ("; band: seeds and batches inside seeds." if pooled is not None else "."))
    fig.suptitle(wrapped(title, 70), fontsize=8)
    fig.text(0.5, 0.01, bars, ha="center", va="bottom", fontsize=6, wrap=True)
    ax.legend(loc="upper left", fontsize=6)
    fig.subplots_adjust(top=0.84, bottom=0.24)
    return style.save(fig, out_dir, stem)


def make(run_dirs, out_dir, log=print) -> list[FigureRecord]:
    """Analyse (or read) each run; write its attention maps and the joint per-layer ratio plot."""
    from deepfusion.model.runs.loading import run_config

    run_dirs = [Path(d) for d in run_dirs]
    if not run_dirs:
        raise DataError("figures --run needs at least one run folder")
    if len({d.resolve() for d in run_dirs}) != len(run_dirs):
        raise DataError("figures --run: a run folder is given twice; give each once")
    out_dir = Path(out_dir)
    cfgs = [run_config(d) for d in run_dirs]
    records = [analysis_io.ensure_analysis(d, log=log) for d in run_dirs]
    names = [d.name for d in run_dirs]
    data = sorted({data_label(c) for c in cfgs})
    cmd = command(run_dirs, out_dir)
    made = []
    with style.context():
        for d, cfg, r, name in zip(run_dirs, cfgs, records, names):
            attn, labels = analysis_io.load_attention(d)
            L, H, M, _ = attn.shape
            title = f"Attention of run {name} on {data_label(cfg)} (one batch, no error bars)"
            paths = plot_maps(attn.mean(1), labels, out_dir, f"runs_attention_{len(made)}_{name}",
                              f"mean of {H} heads", title=wrapped(title, 100))
            caption = (f"{title}: label-sorted attention of one analysis batch of {M} tokens (both views of {M // 2} "
                       f"test samples, {len(np.unique(labels))} classes), mean over the {H} heads, one panel per layer "
                       f"(L={L}); class boundaries in vermillion. A single batch of one run: no error bars. Verdict "
                       f"on this run alone: {r.verdict.label}.")
            made.append(FigureRecord(KEY, title, paths, caption, cmd, [name]))
        pooled = analysis_io.pooled_analysis(run_dirs, log=log) if _same_config(cfgs) else None
        title = f"Same-class attention against depth: {', '.join(data)}; runs {', '.join(names)}"
        paths = plot_ratios(records, names, pooled, title, out_dir, "runs_same_class_ratio")
        caption = (f"{title}. Per layer, the head-averaged weight a token puts on other samples of its class (its own "
                   "token and positive view excluded) as a multiple of chance under uniform attention. Error bars: "
                   "95% bootstrap interval over each run's analysis batches, one training seed per run"
                   + (f"; band: the pooled verdict over {pooled.verdict.seeds} seeds ({pooled.verdict.label})."
                      if pooled is not None else "." if len(run_dirs) == 1 else
                      "; the runs differ in more than train.seed, so they are not pooled."))
        made.append(FigureRecord(KEY, title, paths, caption, cmd, names))
    return made

