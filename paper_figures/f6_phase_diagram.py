"""F6: where Deep Fusion lives: head-only training on the theory's own data, against the theory.

Draws the record of ``experiments.studies.phase_diagram``: the transformer head trained alone on
features of ``data.name=theory`` (C classes with simplex-ETF means and within-class spread sigma, so
S1's radius eps_max is known for every run), each cell judged over its seeds (1 in quick mode) by
rule v3. A cell's colour is the last layer's same-class share as a multiple of chance, its mark the
outcome, its small number the S8 prediction of that ratio from the trained weights. Main panel:
sigma / eps_max against the loss temperature; the dashed line is S1's boundary (left of it, ReLU
attention on the clean features is exactly block-diagonal). Side panels, at the central cell:
attention scope and LayerNorm placement, batch size, and the number of classes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from deepfusion.experiments.runs import RunSpec
from deepfusion.experiments.studies import phase_diagram as study
from deepfusion.experiments.studies.phase_diagram import JudgedCell, PhaseDiagram
from deepfusion.experiments.verdict import LINE
from deepfusion.paper_figures import runs, style
from deepfusion.paper_figures.record import FigureRecord, figures_command

KEY = "F6"
TITLE = "Phase diagram: where trained heads fuse, against the theory"


def needed(quick: bool, data=None, seeds: int = 3) -> list[RunSpec]:
    """The runs this figure draws on (trained ahead by ``experiments.runs.prefetch``)."""
    return study.needed(quick, seeds)


MARK = {"observed": "●", "not observed": "○", "inconclusive": "?", "exploratory": "·"}


def _main_panel(ax, cells: list[JudgedCell]):
    ratios = sorted({c.cell.ratio for c in cells})
    temps = sorted({c.cell.temperature for c in cells})
    Z = np.full((len(temps), len(ratios)), np.nan)
    for c in cells:
        Z[temps.index(c.cell.temperature), ratios.index(c.cell.ratio)] = c.effect
    im = ax.imshow(
        Z, origin="lower", cmap=style.HEATMAP_CMAP, vmin=1.0, vmax=max(2.0, float(np.nanmax(Z))), aspect="auto"
    )
    for c in cells:
        i, j = temps.index(c.cell.temperature), ratios.index(c.cell.ratio)
        light = c.effect < 1.0 + 0.6 * (max(2.0, float(np.nanmax(Z))) - 1.0)
        color = "white" if light else "black"
        ax.text(j, i + 0.12, f"{MARK[c.outcome]} {c.effect:.2f}x", ha="center", va="center", fontsize=7, color=color)
        if c.s8 is not None:
            ax.text(j, i - 0.22, f"S8 {c.s8:.2f}x", ha="center", va="center", fontsize=5.5, color=color)
    if 1.0 in ratios or (ratios[0] < 1.0 < ratios[-1]):
        x = np.interp(1.0, ratios, np.arange(len(ratios)))
        ax.axvline(x, color=style.OKABE_ITO["vermillion"], ls="--", lw=1)
        ax.text(
            x + 0.05,
            len(temps) - 0.55,
            r"S1: $\sigma=\varepsilon_{max}$",
            color=style.OKABE_ITO["vermillion"],
            fontsize=6.5,
            va="top",
        )
    ax.set_xticks(range(len(ratios)), [f"{r:g}" for r in ratios])
    ax.set_yticks(range(len(temps)), [f"{t:g}" for t in temps])
    ax.set_xlabel(r"within-class spread $\sigma / \varepsilon_{max}$ (S1)")
    ax.set_ylabel("loss temperature τ")
    return im


def _side_panel(ax, cells: list[JudgedCell], label, title: str):
    x = np.arange(len(cells))
    eff = np.array([c.effect for c in cells])
    ci = np.array([c.ci if c.ci is not None else [c.effect, c.effect] for c in cells])
    ax.errorbar(
        x,
        eff,
        yerr=np.vstack([eff - ci[:, 0], ci[:, 1] - eff]).clip(min=0),
        fmt="none",
        color=style.REFERENCE_COLOR,
        lw=1,
    )
    for xi, c in zip(x, cells):
        filled = c.outcome == "observed"
        ax.plot(xi, c.effect, "o", color=style.OKABE_ITO["blue"], mfc=style.OKABE_ITO["blue"] if filled else "white")
        if c.s8 is not None:
            ax.plot(xi, c.s8, "s", color=style.OKABE_ITO["vermillion"], mfc="none", ms=4)
    ax.axhline(LINE, color=style.OKABE_ITO["green"], ls=":", lw=1)
    ax.axhline(1.0, color=style.REFERENCE_COLOR, ls=":", lw=1)
    ax.set_xticks(x, [label(c.cell) for c in cells], fontsize=6.5)
    ax.set_title(title, fontsize=8)


SCOPE_SHORT = {"both_views": "both", "per_view": "view", "mask_pair": "mask"}
SIDE = {
    "scope": (lambda c: f"{SCOPE_SHORT[c.scope]}\n{c.norm}", "scope (both, view, mask); LN"),
    "batch": (lambda c: f"{c.batch}\n({c.batch // c.classes}/cl.)", "batch size"),
    "classes": (lambda c: f"C={c.classes}", "classes"),
}


def plot(record: PhaseDiagram, out_dir: Path, stem: str) -> list[Path]:
    judged = record.panels
    sides = [k for k in SIDE if k in judged]
    if not sides:
        fig, axes = style.subplots(1, 1, width=style.COLUMN_WIDTH, height=2.6)
        im = _main_panel(axes[0][0], judged["main"])
        fig.colorbar(im, ax=axes[0][0], pad=0.02, shrink=0.9).set_label("last layer / chance", fontsize=7)
        return style.save(fig, out_dir, stem)
    fig = Figure(figsize=(style.FULL_WIDTH, 5.0))
    grid = fig.add_gridspec(2, 3, height_ratios=[1.25, 1.0], hspace=0.55, wspace=0.35)
    main = fig.add_subplot(grid[0, :])
    im = _main_panel(main, judged["main"])
    fig.colorbar(im, ax=main, pad=0.01, fraction=0.04).set_label("last layer / chance", fontsize=7)
    for i, key in enumerate(sides):
        ax = fig.add_subplot(grid[1, i])
        _side_panel(ax, judged[key], *SIDE[key])
        if i == 0:
            ax.set_ylabel("last layer / chance")
    return style.save(fig, out_dir, stem)


def caption(record: PhaseDiagram) -> str:
    cells = record.cells()
    pairs = [(c.s8, c.effect) for c in cells if c.s8 is not None]
    r2 = "n/a"
    if len(pairs) > 2:
        p, m = np.array(pairs).T
        r2 = f"{1 - ((m - p) ** 2).sum() / max(((m - m.mean()) ** 2).sum(), 1e-12):.2f}"
    counts = {o: sum(c.outcome == o for c in cells) for o in MARK}
    return (
        f"Head-only training of the transformer head on the theory's features (preset {study.PRESET}: frozen identity "
        f"backbone, simplex-ETF class means, within-class spread σ; {record.seeds} training seed(s) per cell"
        f"{f', {study.QUICK_EPOCHS} epochs' if record.quick else ''}). Colour and number: the last layer's same-class "
        f"attention share as a multiple of chance (pooled over seeds); ● observed, ○ not observed, ? inconclusive, "
        f"· exploratory under rule v3 ({counts['observed']}, {counts['not observed']}, {counts['inconclusive']} and "
        f"{counts['exploratory']} of {len(cells)} cells). "
        f"Small numbers and squares: the S8 prediction of that ratio from the trained query/key weights and the "
        f"layer's input tokens (R² over cells {r2}). Dashed: S1's boundary σ = ε_max. Side panels (if shown) vary "
        f"one setting at σ/ε_max = {study.CENTER['ratio']:g}, τ = {study.CENTER['temperature']:g}; dotted lines: "
        f"chance and the verdict's {LINE:g}x line."
    )


def make(
    out_dir, quick: bool, data=None, results_root=None, log=print, train_fn=None, seeds: int = 3
) -> list[FigureRecord]:
    """The phase-diagram study (every cell trained or loaded, and judged), drawn."""
    out_dir = Path(out_dir)
    results_root = runs.checked_root(True, None, results_root)  # the theory's data is generated: no --data
    record = study.phase_diagram(quick, results_root, seeds, log=log, train_fn=train_fn)
    with style.context():
        paths = plot(record, out_dir, "f6_phase_diagram")
    configs = [r for c in record.cells() for r in c.runs]
    return [
        FigureRecord(
            KEY, TITLE, paths, caption(record), figures_command(KEY, quick, None, results_root), configs, record
        )
    ]
