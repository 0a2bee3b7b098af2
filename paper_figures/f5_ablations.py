"""F5: ablations over batch size, temperature, weight decay and depth of the transformer head.

One sweep per hyper-parameter around the preset's value (the other settings held at the preset),
linear probe and kNN against the swept value, one panel per sweep. The preset's own value is shared
by every sweep, so the result cache trains it once. Quick mode sweeps fewer values on digits with
the epochs shortened (``QUICK_EPOCHS``), which the caption states.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepfusion.experiments.runs import RunSpec, run_all, seed_specs
from deepfusion.paper_figures import runs, style
from deepfusion.paper_figures.record import FigureRecord, figures_command

KEY = "F5"
TITLE = "Ablations: batch size, temperature, weight decay and depth"
QUICK_EPOCHS = runs.QUICK_EPOCHS  # half the digits preset's 30, as every quick figure
PAPER_PRESET = "cifar10"


@dataclass(frozen=True)
class Sweep:
    key: str  # config key, section.name
    label: str  # axis label
    values: tuple
    scale: str = "linear"  # x-axis scale: linear | log | symlog


QUICK_SWEEPS = (
    Sweep("train.batch_size", "batch size N (samples)", (64, 128, 256), "log"),
    Sweep("loss.temperature", "temperature τ", (0.1, 0.2, 0.5), "log"),
    Sweep("optim.weight_decay", "weight decay", (0.0, 1e-4, 1e-2), "symlog"),
    Sweep("model.depth", "head depth L (layers)", (1, 2, 4)),
)
PAPER_SWEEPS = (
    Sweep("train.batch_size", "batch size N (samples)", (256, 512, 1024), "log"),
    Sweep("loss.temperature", "temperature τ", (0.02, 0.05, 0.1, 0.2), "log"),
    Sweep("optim.weight_decay", "weight decay", (0.0, 1e-4, 5e-4, 1e-3), "symlog"),
    Sweep("model.depth", "head depth L (layers)", (2, 4, 6, 10)),
)


def base(quick: bool, data=None) -> RunSpec:
    if quick:
        return runs.base_spec(runs.QUICK_PRESET, None).with_overrides("model.head=transformer")
    return runs.base_spec(PAPER_PRESET, data).with_overrides("model.head=transformer")


def plan(quick: bool, data=None, seeds: int = 1) -> dict[Sweep, list[list[RunSpec]]]:
    """{sweep: [[spec per seed] per value]}; specs equal to the base collapse in the cache."""
    b = base(quick, data)
    sweeps = QUICK_SWEEPS if quick else PAPER_SWEEPS
    return {s: [seed_specs(b.with_overrides(f"{s.key}={v}"), seeds) for v in s.values] for s in sweeps}


def needed(quick: bool, data=None, seeds: int = 1) -> list[RunSpec]:
    """The runs this figure draws on (trained ahead by ``experiments.runs.prefetch``)."""
    return [s for grid in plan(quick, data, seeds).values() for specs in grid for s in specs]


def _base_value(spec: RunSpec, key: str):
    section, name = key.split(".")
    return getattr(getattr(spec.config(), section), name)


def collect(quick, data, results_root, seeds, log=None, train_fn=None):
    """{sweep: {metric: [[per-seed values] per swept value]}}, the base values, and the runs used."""
    out, used, seen = {}, [], {}
    b = base(quick, data)
    for sweep, grid in plan(quick, data, seeds).items():
        out[sweep] = {m: [] for m in ("linear", "knn")}
        for specs in grid:
            results = run_all(specs, results_root, log=log, train_fn=train_fn)
            for r in results:
                seen.setdefault(r.config_hash, r)
            for m in out[sweep]:
                out[sweep][m].append([r.eval.percent(m) for r in results])
    used = list(seen.values())
    return out, {s.key: _base_value(b, s.key) for s in out}, used


def plot(data, base_values, out_dir: Path, stem: str) -> list[Path]:
    sweeps = list(data)
    fig, axes = style.subplots(1, len(sweeps), width=style.FULL_WIDTH, height=2.2, sharey=True)
    colors = {"linear": style.OKABE_ITO["blue"], "knn": style.OKABE_ITO["vermillion"]}
    markers = {"linear": "o", "knn": "s"}
    for ax, sweep in zip(axes[0], sweeps):
        x = np.asarray(sweep.values, dtype=float)
        for m, per_value in data[sweep].items():
            stats = [runs.summarize(v) for v in per_value]
            mean = np.array([s.mean for s in stats])
            err = np.array([s.std if s.n > 1 else 0.0 for s in stats])
            ax.errorbar(x, mean, yerr=err if err.any() else None, marker=markers[m], color=colors[m],
                        label=runs.METRICS[m])
        if sweep.scale == "log":
            ax.set_xscale("log")
        elif sweep.scale == "symlog":
            ax.set_xscale("symlog", linthresh=min(v for v in x if v > 0))
        ax.set_xticks(x, [f"{v:g}" for v in sweep.values])
        ax.minorticks_off()
        ax.axvline(base_values[sweep.key], color=style.REFERENCE_COLOR, ls=":", lw=1)
        ax.set_xlabel(sweep.label)
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[0][0].legend(loc="lower left")
    fig.tight_layout()
    return style.save(fig, out_dir, stem)


def make(out_dir, quick: bool, data=None, results_root=None, seeds: int = 1, log=print, train_fn=None) -> list[FigureRecord]:
    """Train or load the sweep runs, write ``f5_ablations.{png,pdf}``; one record."""
    out_dir = Path(out_dir)
    results_root = runs.checked_root(quick, data, results_root)
    curves, base_values, used = collect(quick, data, results_root, seeds, log=log, train_fn=train_fn)
    with style.context():
        paths = plot(curves, base_values, out_dir, "f5_ablations")
    b = base(quick, data)
    setting = (
        f"digits preset with epochs shortened to {QUICK_EPOCHS} (preset: 30) so the sweep stays cheap on a CPU"
        if quick else f"{PAPER_PRESET} preset"
    )
    caption = (
        f"Linear probe and kNN test accuracy (%) of the transformer head against one hyper-parameter at a "
        f"time: batch size, NT-Xent temperature, weight decay and head depth; all other settings at the "
        f"{setting} (base run: {b.describe()}). The dotted line marks the base value. "
        + (f"Points are means over {seeds} seeds with sample-std error bars. " if seeds > 1 else "One seed (train.seed=0) per point, so no spread is shown. ")
        + f"{len(used)} distinct runs, every number read from their eval.json."
    )
    command = figures_command(KEY, quick, data, results_root, [f"--ablation-seeds={seeds}"])
    return [FigureRecord(KEY, TITLE, paths, caption, command, [r.describe() for r in used])]
