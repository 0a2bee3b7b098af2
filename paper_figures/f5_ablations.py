"""F5: ablations over batch size, temperature, weight decay and depth of the transformer head.

Draws the record of ``experiments.studies.ablations`` (one sweep per hyper-parameter around the
preset's value, linear probe and kNN against the swept value), one panel per sweep. Quick mode
sweeps fewer values on digits with the epochs shortened (``QUICK_EPOCHS``), which the caption states.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepfusion.experiments.runs import RunSpec
from deepfusion.experiments.studies import ablations as study
from deepfusion.paper_figures import runs, style
from deepfusion.paper_figures.record import FigureRecord, figures_command

KEY = "F5"
TITLE = "Ablations: batch size, temperature, weight decay and depth"
QUICK_EPOCHS = runs.QUICK_EPOCHS  # half the digits preset's 30, as every quick figure
PAPER_PRESET = "cifar10"


def base(quick: bool, data=None) -> RunSpec:
    if quick:
        return runs.base_spec(runs.QUICK_PRESET, None).with_overrides("model.head=transformer")
    return runs.base_spec(PAPER_PRESET, data).with_overrides("model.head=transformer")


def sweeps(quick: bool) -> tuple[study.Sweep, ...]:
    return study.QUICK_SWEEPS if quick else study.PAPER_SWEEPS


def plan(quick: bool, data=None, seeds: int = 1) -> dict[study.Sweep, list[list[RunSpec]]]:
    """{sweep: [[spec per seed] per value]} of this mode (``study.plan``)."""
    return study.plan(base(quick, data), sweeps(quick), seeds)


def needed(quick: bool, data=None, seeds: int = 1) -> list[RunSpec]:
    """The runs this figure draws on (trained ahead by ``experiments.runs.prefetch``)."""
    return study.needed(base(quick, data), sweeps(quick), seeds)


def plot(record: study.Ablations, out_dir: Path, stem: str) -> list[Path]:
    fig, axes = style.subplots(1, len(record.sweeps), width=style.FULL_WIDTH, height=2.2, sharey=True)
    colors = {"linear": style.OKABE_ITO["blue"], "knn": style.OKABE_ITO["vermillion"]}
    markers = {"linear": "o", "knn": "s"}
    for ax, sweep in zip(axes[0], record.sweeps):
        x = np.asarray(sweep.values, dtype=float)
        for m in study.METRICS:
            stats = [runs.summarize(v) for v in getattr(sweep, m)]
            mean = np.array([s.mean for s in stats])
            err = np.array([s.std if s.n > 1 else 0.0 for s in stats])
            ax.errorbar(
                x, mean, yerr=err if err.any() else None, marker=markers[m], color=colors[m], label=runs.METRICS[m]
            )
        if sweep.scale == "log":
            ax.set_xscale("log")
        elif sweep.scale == "symlog":
            ax.set_xscale("symlog", linthresh=min(v for v in x if v > 0))
        ax.set_xticks(x, [f"{v:g}" for v in sweep.values])
        ax.minorticks_off()
        ax.axvline(sweep.base_value, color=style.REFERENCE_COLOR, ls=":", lw=1)
        ax.set_xlabel(sweep.label)
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[0][0].legend(loc="lower left")
    fig.tight_layout()
    return style.save(fig, out_dir, stem)


def make(
    out_dir, quick: bool, data=None, results_root=None, seeds: int = 1, log=print, train_fn=None
) -> list[FigureRecord]:
    """The ablation study (runs trained or loaded), drawn into ``f5_ablations.{png,pdf}``; one record."""
    out_dir = Path(out_dir)
    results_root = runs.checked_root(quick, data, results_root)
    record = study.ablations(base(quick, data), sweeps(quick), seeds, results_root, log=log, train_fn=train_fn)
    with style.context():
        paths = plot(record, out_dir, "f5_ablations")
    setting = (
        f"digits preset with epochs shortened to {QUICK_EPOCHS} (preset: 30) so the sweep stays cheap on a CPU"
        if quick
        else f"{PAPER_PRESET} preset"
    )
    caption = (
        f"Linear probe and kNN test accuracy (%) of the transformer head against one hyper-parameter at a "
        f"time: batch size, NT-Xent temperature, weight decay and head depth; all other settings at the "
        f"{setting} (base run: {record.base}). The dotted line marks the base value. "
        + (
            f"Points are means over {seeds} seeds with sample-std error bars. "
            if seeds > 1
            else "One seed (train.seed=0) per point, so no spread is shown. "
        )
        + f"{len(record.runs)} distinct runs."
    )
    command = figures_command(KEY, quick, data, results_root, [f"--ablation-seeds={seeds}"])
    return [FigureRecord(KEY, TITLE, paths, caption, command, record.runs, record)]
