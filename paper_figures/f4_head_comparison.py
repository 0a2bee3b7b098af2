"""F4: the head comparison table (transformer vs SimCLR MLP with/without BatchNorm vs FFN blocks).

For each dataset and each projection head, train ``seeds`` runs through the result cache and
report the linear probe, kNN and the head's leave-one-out 1-NN (mean, sample std, n). The
random-backbone row is the evaluation of an untrained backbone, taken from the transformer runs
(one per seed). Written as Markdown, CSV (with every per-seed value) and a bar chart.
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

KEY = "F4"
TITLE = "Projection heads compared: linear probe and kNN over seeds"
CHART_METRICS = ("linear", "knn")
RANDOM_KEYS = {"linear": "random_linear", "knn": "random_knn"}


def plan(quick: bool, data=None, seeds: int = 3) -> dict[str, dict[str, list[RunSpec]]]:
    """{preset: {head: [spec per seed]}}: the runs F4 needs."""
    out = {}
    for preset in runs.datasets(quick):
        base = runs.base_spec(preset, data)
        out[preset] = {h: seed_specs(base.with_overrides(f"model.head={h}"), seeds) for h in runs.heads()}
    return out


def needed(quick: bool, data=None, seeds: int = 3) -> list[RunSpec]:
    """The runs this figure draws on (trained ahead by ``experiments.runs.prefetch``)."""
    return [s for by_head in plan(quick, data, seeds).values() for specs in by_head.values() for s in specs]


def collect(quick, data, results_root, seeds, log=None, train_fn=None):
    """Rows ``(preset, head, metric, [per-seed values])`` in table order, plus the runs used."""
    rows, used = [], []
    for preset, by_head in plan(quick, data, seeds).items():
        for head, specs in by_head.items():
            results = run_all(specs, results_root, log=log, train_fn=train_fn)
            used += results
            for m in runs.METRICS:
                rows.append((preset, head, m, [r.eval.percent(m) for r in results]))
            if head == "transformer":
                random_rows = [
                    (preset, "random", m, [r.eval.percent(k) for r in results]) for m, k in RANDOM_KEYS.items()
                ]
        rows += random_rows
    return rows, used


def write_tables(rows, out_dir: Path, stem: str) -> list[Path]:
    """Markdown (mean ± std (n) per metric) and CSV (every value) of the rows."""
    md_path, csv_path = out_dir / f"{stem}.md", out_dir / f"{stem}.csv"
    table = io.StringIO(newline="")  # built in memory, then written atomically like every output
    w = csv.writer(table)
    w.writerow(["dataset", "head", "metric", "mean", "std", "n", "values"])
    for preset, head, m, values in rows:
        s = runs.summarize(values)
        w.writerow([preset, head, m, f"{s.mean:.2f}", f"{s.std:.2f}", s.n, ";".join(f"{v:.2f}" for v in values)])
    cols = list(runs.METRICS)
    lines = []
    for preset in dict.fromkeys(r[0] for r in rows):
        cells = {(h, m): runs.summarize(v).text() for p, h, m, v in rows if p == preset}
        heads = list(dict.fromkeys(h for p, h, _, _ in rows if p == preset))
        lines += [f"### {preset} (accuracy %, mean ± std over seeds)", ""]
        lines.append("| head | " + " | ".join(runs.METRICS[c] for c in cols) + " |")
        lines.append("|---|" + "---|" * len(cols))
        for h in heads:
            lines.append(f"| {runs.head_label(h)} | " + " | ".join(cells.get((h, c), "n/a") for c in cols) + " |")
        lines.append("")
    write_text_atomic(csv_path, table.getvalue())
    write_text_atomic(md_path, "\n".join(lines))
    return [md_path, csv_path]


def plot(rows, out_dir: Path, stem: str) -> list[Path]:
    presets = list(dict.fromkeys(r[0] for r in rows))
    heads = [h for h in (*runs.heads(), "random") if any(r[1] == h for r in rows)]
    width = style.COLUMN_WIDTH if len(presets) == 1 else style.FULL_WIDTH
    fig, axes = style.subplots(1, len(presets), width=width, height=2.6, sharey=True)
    colors = dict(zip(heads, style.PALETTE[: len(heads) - 1] + [style.OKABE_ITO["black"]]))
    step = 0.8 / len(heads)
    shown = [v for p, h, m, vals in rows if m in CHART_METRICS for v in vals]
    for ax, preset in zip(axes[0], presets):
        for j, head in enumerate(heads):
            for i, m in enumerate(CHART_METRICS):
                values = next((v for p, h, mm, v in rows if (p, h, mm) == (preset, head, m)), None)
                if not values:
                    continue
                s = runs.summarize(values)
                x = i + (j - (len(heads) - 1) / 2) * step
                # Mean with a +-1 std whisker and every seed as a dot: accuracies differ by a point or
                # two, which bars drawn from zero would hide.
                ax.errorbar(
                    x,
                    s.mean,
                    yerr=s.std if s.n > 1 else None,
                    fmt="D",
                    ms=4,
                    color=colors[head],
                    ecolor=colors[head],
                    elinewidth=1.0,
                    capsize=2,
                    label=runs.head_label(head) if i == 0 else None,
                    zorder=2,
                )
                ax.plot(
                    np.full(len(values), x + step * 0.3),
                    values,
                    "o",
                    ms=2,
                    color="white",
                    mec="black",
                    mew=0.4,
                    zorder=3,
                )
        ax.set_xticks(range(len(CHART_METRICS)), [runs.METRICS[m] for m in CHART_METRICS])
        for i in range(len(CHART_METRICS) - 1):
            ax.axvline(i + 0.5, color="0.85", lw=0.6, zorder=0)
        ax.set_title(preset)
        if shown:
            ax.set_ylim(max(0.0, np.floor(min(shown)) - 1.0), min(100.0, np.ceil(max(shown)) + 1.0))
    axes[0][0].set_ylabel("test accuracy (%)")
    fig.legend(
        *axes[0][0].get_legend_handles_labels(),
        loc="upper center",
        ncol=min(3, len(heads)),
        bbox_to_anchor=(0.5, 0.0),
        fontsize=7,
    )
    return style.save(fig, out_dir, stem)


def make(
    out_dir, quick: bool, data=None, results_root=None, seeds: int = 3, log=print, train_fn=None
) -> list[FigureRecord]:
    """Train or load the runs, write ``f4_head_comparison.{png,pdf,md,csv}``; one record."""
    out_dir = Path(out_dir)
    results_root = runs.checked_root(quick, data, results_root)
    rows, used = collect(quick, data, results_root, seeds, log=log, train_fn=train_fn)
    stem = "f4_head_comparison"
    with style.context():
        paths = plot(rows, out_dir, stem) + write_tables(rows, out_dir, stem)
    n_runs = len(used)
    presets = ", ".join(runs.datasets(quick))
    caption = (
        f"Linear probe and kNN test accuracy (%) of SimCLR with four projection heads on {presets}: "
        f"the transformer head attending across the batch, the SimCLR MLP with and without BatchNorm, "
        f"and the paper's feed-forward baseline (Linear + BatchNorm + ReLU blocks). Diamonds are means over "
        f"{seeds} seed(s) (train.seed = 0..{seeds - 1}), whiskers the sample standard deviation, small dots the "
        f"single seeds; black is an untrained (random) backbone evaluated the same way, from the "
        f"transformer runs. {n_runs} runs, every number read from their eval.json; the table files also "
        f"give the head's leave-one-out 1-NN accuracy on test batches."
        + (
            f" Quick mode: the digits preset on CPU with its epochs shortened to {runs.QUICK_EPOCHS} (preset: 30), "
            "not the paper's datasets."
            if quick
            else ""
        )
    )
    command = figures_command(KEY, quick, data, results_root, [f"--seeds={seeds}"])
    return [FigureRecord(KEY, TITLE, paths, caption, command, [r.describe() for r in used], rows)]
