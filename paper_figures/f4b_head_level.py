"""F4b: the paper's head claim at head level: heads trained alone on fixed features.

The backbone is a fixed map (PCA-whitened pixels, ``train.freeze_backbone``), so the head is the
only thing that learns and the comparison is between heads, not between what heads did to a
backbone. Each registered head (the transformer attending across the batch, the SimCLR MLP with and
without BatchNorm, the paper's FFN baseline) is trained over seeds on Fashion-MNIST (the
``fmnist_head`` preset; digits in quick mode, where Fashion-MNIST may be absent) and scored on its
*outputs*: the paper's "unsupervised accuracy", the kNN of test head outputs against the training
set's (``head_knn``) and the leave-one-out 1-NN within test batches (``head_loo1nn``), each beside
the same head untrained (at initialisation) on the same batches.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from deepfusion.experiments.runs import RunSpec, run_all, seed_specs
from deepfusion.model.runs.layout import write_text_atomic
from deepfusion.paper_figures import runs, style
from deepfusion.paper_figures.record import FigureRecord, figures_command

KEY = "F4B"
TITLE = "Heads compared at head level: kNN and leave-one-out 1-NN of head outputs on fixed features"
PRESET = "fmnist_head"
METRICS = {"head_knn": "kNN of head outputs", "head_loo1nn": "head leave-one-out 1-NN"}
QUICK = (
    "data.name=digits",
    "data.augment=digits",
    "data.options={}",
    "data.test_fraction=0.2",
    "model.dim=64",
    "model.depth=4",
    "model.heads=4",
    "model.ffn_dim=128",
    "model.out_dim=64",
    "model.mlp_hidden=128",
    "train.epochs=10",
)


def base(quick: bool, data=None) -> RunSpec:
    """The preset (Fashion-MNIST from its default folder, whatever ``--data`` holds), or digits when quick."""
    return RunSpec(PRESET, QUICK) if quick else RunSpec(PRESET)


def plan(quick: bool, data=None, seeds: int = 3) -> dict[str, list[RunSpec]]:
    """{head: [spec per seed]}; one seed in quick mode."""
    b = base(quick, data)
    return {h: seed_specs(b.with_overrides(f"model.head={h}"), 1 if quick else seeds) for h in runs.heads()}


def needed(quick: bool, data=None, seeds: int = 3) -> list[RunSpec]:
    """The runs this figure draws on (trained ahead by ``experiments.runs.prefetch``)."""
    return [s for specs in plan(quick, data, seeds).values() for s in specs]


def collect(quick, data, results_root, seeds, log=None, train_fn=None):
    """Rows ``(head, metric, [trained per seed], [untrained per seed])`` and the runs used."""
    rows, used = [], []
    for head, specs in plan(quick, data, seeds).items():
        results = run_all(specs, results_root, log=log, train_fn=train_fn)
        used += results
        for m in METRICS:
            rows.append(
                (head, m, [r.eval.percent(m) for r in results], [r.eval.percent(f"untrained_{m}") for r in results])
            )
    return rows, used


def write_tables(rows, out_dir: Path, stem: str) -> list[Path]:
    md_path, csv_path = out_dir / f"{stem}.md", out_dir / f"{stem}.csv"
    table = io.StringIO(newline="")
    w = csv.writer(table)
    w.writerow(["head", "metric", "mean", "std", "n", "untrained_mean", "gain_over_untrained", "values"])
    lines = [
        "| head | " + " | ".join(f"{label} (untrained)" for label in METRICS.values()) + " |",
        "|---|" + "---|" * len(METRICS),
    ]
    by_head = {}
    for head, m, values, untrained in rows:
        s, u = runs.summarize(values), float(np.mean(untrained))
        w.writerow(
            [
                head,
                m,
                f"{s.mean:.2f}",
                f"{s.std:.2f}",
                s.n,
                f"{u:.2f}",
                f"{s.mean - u:+.2f}",
                ";".join(f"{v:.2f}" for v in values),
            ]
        )
        by_head.setdefault(head, []).append(f"{s.text()} ({u:.1f})")
    lines += [f"| {runs.head_label(h)} | " + " | ".join(cells) + " |" for h, cells in by_head.items()]
    write_text_atomic(csv_path, table.getvalue())
    write_text_atomic(md_path, "\n".join(lines) + "\n")
    return [md_path, csv_path]


def plot(rows, out_dir: Path, stem: str) -> list[Path]:
    heads = list(dict.fromkeys(r[0] for r in rows))
    fig, axes = style.subplots(1, 1, width=style.COLUMN_WIDTH, height=2.6)
    ax = axes[0][0]
    colors = dict(zip(heads, style.PALETTE))
    step = 0.8 / len(heads)
    for i, m in enumerate(METRICS):
        for j, head in enumerate(heads):
            values, untrained = next((v, u) for h, mm, v, u in rows if (h, mm) == (head, m))
            s = runs.summarize(values)
            x = i + (j - (len(heads) - 1) / 2) * step
            ax.errorbar(
                x,
                s.mean,
                yerr=s.std if s.n > 1 else None,
                fmt="D",
                ms=4,
                color=colors[head],
                capsize=2,
                label=runs.head_label(head) if i == 0 else None,
                zorder=2,
            )
            ax.plot(
                np.full(len(values), x + step * 0.3), values, "o", ms=2, color="white", mec="black", mew=0.4, zorder=3
            )
            ax.plot(x, float(np.mean(untrained)), "_", ms=9, mew=1.5, color=colors[head], alpha=0.6, zorder=1)
    ax.plot([], [], "_", ms=9, mew=1.5, color=style.REFERENCE_COLOR, label="same head untrained")
    ax.set_xticks(range(len(METRICS)), list(METRICS.values()), fontsize=7)
    ax.axvline(0.5, color="0.85", lw=0.6, zorder=0)
    ax.set_ylabel("test accuracy (%)")
    fig.legend(*ax.get_legend_handles_labels(), loc="upper center", ncol=2, bbox_to_anchor=(0.5, 0.0), fontsize=6.5)
    return style.save(fig, out_dir, stem)


def make(
    out_dir, quick: bool, data=None, results_root=None, seeds: int = 3, log=print, train_fn=None
) -> list[FigureRecord]:
    """Train or load the head-only runs; write ``f4b_head_level.{png,pdf,md,csv}``."""
    out_dir = Path(out_dir)
    results_root = runs.checked_root(True, None, results_root)  # Fashion-MNIST from its default folder or data
    rows, used = collect(quick, data, results_root, seeds, log=log, train_fn=train_fn)
    stem = "f4b_head_level"
    with style.context():
        paths = plot(rows, out_dir, stem) + write_tables(rows, out_dir, stem)
    where = "digits (quick mode, small heads)" if quick else "a 10,000-image Fashion-MNIST training subset"
    caption = (
        f"Each head trained alone on fixed features (PCA-whitened pixels, frozen; preset {PRESET}) of {where}, "
        f"{1 if quick else seeds} seed(s): test accuracy (%) of the kNN of head outputs against the training set's "
        f"head outputs, "
        f"and of the leave-one-out 1-NN within test batches (the paper's unsupervised accuracy). Diamonds: means "
        f"with the standard deviation over seeds, dots single seeds; dashes: the same head untrained, on the same "
        f"batches. {len(used)} runs; numbers read from their eval.json."
    )
    command = figures_command(KEY, quick, data, results_root, [f"--seeds={seeds}"])
    return [FigureRecord(KEY, TITLE, paths, caption, command, [r.describe() for r in used])]
