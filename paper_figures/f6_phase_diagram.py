"""F6: where Deep Fusion lives: head-only training on the theory's own data, against the theory.

The transformer head is trained alone (``train.freeze_backbone``, identity backbone) on features of
``data.name=theory``: C classes with simplex-ETF means and within-class spread sigma, so S1's
radius eps_max and S6's n_min are known for every run. Each cell is 3 training seeds (1 in quick
mode) judged by rule v3; its colour is the last layer's same-class mass as a multiple of
chance, its mark the outcome, its small number the S8 prediction of that ratio from the trained
weights. Main panel: sigma / eps_max against the loss temperature; the dashed line is S1's
boundary (left of it, ReLU attention on the clean features is exactly block-diagonal). Side panels,
at the central cell: attention scope and LayerNorm placement, batch size (with S6's n_min), and the
number of classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from deepfusion.experiments.runs import RunSpec, run_all, seed_specs
from deepfusion.experiments.studies import deep_fusion
from deepfusion.experiments.verdict import LINE
from deepfusion.model.data.theory_features import etf_rho, theory_numbers
from deepfusion.paper_figures import runs, style
from deepfusion.paper_figures.record import FigureRecord, figures_command

KEY = "F6"
TITLE = "Phase diagram: where trained heads fuse, against the theory"
PRESET = "theory_head"
QUICK_EPOCHS = 30  # of the preset's 100
CENTER = {"ratio": 8.0, "temperature": 0.5}


@dataclass(frozen=True)
class Cell:
    ratio: float  # sigma / eps_max
    temperature: float
    classes: int = 4
    scope: str = "both_views"
    norm: str = "post"
    batch: int = 256

    def spec(self, quick: bool) -> RunSpec:
        sigma = self.ratio * theory_numbers(self.classes, etf_rho(self.classes), 1.0)["eps_max"]
        overrides = (f"data.options.num_classes={self.classes}", f"data.options.sigma={sigma:.6g}",
                     f"loss.temperature={self.temperature}", f"model.scope={self.scope}", f"model.norm={self.norm}",
                     f"train.batch_size={self.batch}")
        if quick:
            overrides += (f"train.epochs={QUICK_EPOCHS}",)
        return RunSpec(PRESET, overrides)


def grid(quick: bool) -> dict[str, list[Cell]]:
    """{panel: cells}: the main (sigma, temperature) grid and the side sweeps at its centre."""
    if quick:
        return {"main": [Cell(r, t) for t in (0.1, 0.5) for r in (2.0, 8.0)]}
    c = Cell(CENTER["ratio"], CENTER["temperature"])
    return {
        "main": [Cell(r, t) for t in (0.02, 0.1, 0.5) for r in (0.5, 2.0, 8.0, 32.0)],
        "scope": [Cell(c.ratio, c.temperature, scope=s, norm=n) for n in ("post", "pre")
                  for s in ("both_views", "per_view", "mask_pair")],
        "batch": [Cell(c.ratio, c.temperature, batch=b) for b in (64, 256, 1024)],
        "classes": [Cell(c.ratio, c.temperature, classes=k) for k in (2, 4, 10)],
    }


def needed(quick: bool, data=None, seeds: int = 3) -> list[RunSpec]:
    """The runs this figure draws on (trained ahead by ``experiments.runs.prefetch``)."""
    n = 1 if quick else seeds
    return [s for cells in grid(quick).values() for c in cells for s in seed_specs(c.spec(quick), n)]


@dataclass(frozen=True)
class JudgedCell:
    """One cell of the diagram judged over its seeds: what the figure draws."""

    cell: Cell
    effect: float  # the last layer's ratio to chance, pooled over seeds
    ci: list[float] | None  # its interval over seeds (None with one seed)
    outcome: str  # rule v3
    s8: float | None  # the S8 prediction of that ratio from the trained weights
    runs: list[str]  # the runs it pools, described


def judge(cell: Cell, quick: bool, results_root, seeds: int, log=None, train_fn=None) -> JudgedCell:
    """Train or load the cell's seeds, pool their analyses; the numbers the figure shows."""
    results = run_all(seed_specs(cell.spec(quick), 1 if quick else seeds), results_root, log=log,
                           train_fn=train_fn)
    pooled = deep_fusion.analyze_runs([r.run_dir for r in results], log=log)
    v = pooled.verdict
    s8 = pooled.layers[-1].get("predicted_mass")
    return JudgedCell(cell, v.effect, v.effect_ci, v.outcome, None if s8 is None else s8 / pooled.chance,
                      [r.describe() for r in results])


MARK = {"observed": "●", "not observed": "○", "inconclusive": "?", "exploratory": "·"}


def _main_panel(ax, cells: list[JudgedCell]):
    ratios = sorted({c.cell.ratio for c in cells})
    temps = sorted({c.cell.temperature for c in cells})
    Z = np.full((len(temps), len(ratios)), np.nan)
    for c in cells:
        Z[temps.index(c.cell.temperature), ratios.index(c.cell.ratio)] = c.effect
    im = ax.imshow(Z, origin="lower", cmap=style.HEATMAP_CMAP, vmin=1.0, vmax=max(2.0, float(np.nanmax(Z))),
                   aspect="auto")
    for c in cells:
        i, j = temps.index(c.cell.temperature), ratios.index(c.cell.ratio)
        light = c.effect < 1.0 + 0.6 * (max(2.0, float(np.nanmax(Z))) - 1.0)
        color = "white" if light else "black"
        ax.text(j, i + 0.12, f"{MARK[c.outcome]} {c.effect:.2f}x", ha="center", va="center", fontsize=7,
                color=color)
        if c.s8 is not None:
            ax.text(j, i - 0.22, f"S8 {c.s8:.2f}x", ha="center", va="center", fontsize=5.5, color=color)
    if 1.0 in ratios or (ratios[0] < 1.0 < ratios[-1]):
        x = np.interp(1.0, ratios, np.arange(len(ratios)))
        ax.axvline(x, color=style.OKABE_ITO["vermillion"], ls="--", lw=1)
        ax.text(x + 0.05, len(temps) - 0.55, r"S1: $\sigma=\varepsilon_{max}$", color=style.OKABE_ITO["vermillion"],
                fontsize=6.5, va="top")
    ax.set_xticks(range(len(ratios)), [f"{r:g}" for r in ratios])
    ax.set_yticks(range(len(temps)), [f"{t:g}" for t in temps])
    ax.set_xlabel(r"within-class spread $\sigma / \varepsilon_{max}$ (S1)")
    ax.set_ylabel("loss temperature τ")
    return im


def _side_panel(ax, cells: list[JudgedCell], label, title: str):
    x = np.arange(len(cells))
    eff = np.array([c.effect for c in cells])
    ci = np.array([c.ci if c.ci is not None else [c.effect, c.effect] for c in cells])
    ax.errorbar(x, eff, yerr=np.vstack([eff - ci[:, 0], ci[:, 1] - eff]).clip(min=0), fmt="none",
                color=style.REFERENCE_COLOR, lw=1)
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


def plot(judged: dict[str, list[JudgedCell]], out_dir: Path, stem: str) -> list[Path]:
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


def make(out_dir, quick: bool, data=None, results_root=None, log=print, train_fn=None, seeds: int = 3) -> list[FigureRecord]:
    """Train or load every cell, judge it, and draw the diagram."""
    out_dir = Path(out_dir)
    results_root = runs.checked_root(True, None, results_root)  # the theory's data is generated: no --data
    judged = {panel: [judge(c, quick, results_root, seeds, log, train_fn) for c in cells]
              for panel, cells in grid(quick).items()}
    with style.context():
        paths = plot(judged, out_dir, "f6_phase_diagram")
    cells = [c for cs in judged.values() for c in cs]
    pairs = [(c.s8, c.effect) for c in cells if c.s8 is not None]
    r2 = "n/a"
    if len(pairs) > 2:
        p, m = np.array(pairs).T
        r2 = f"{1 - ((m - p) ** 2).sum() / max(((m - m.mean()) ** 2).sum(), 1e-12):.2f}"
    counts = {o: sum(c.outcome == o for c in cells) for o in MARK}
    n = 1 if quick else seeds
    caption = (
        f"Head-only training of the transformer head on the theory's features (preset {PRESET}: frozen identity "
        f"backbone, simplex-ETF class means, within-class spread σ; {n} training seed(s) per cell"
        f"{f', {QUICK_EPOCHS} epochs' if quick else ''}). Colour and number: the last layer's same-class attention mass as a multiple "
        f"of chance (pooled over seeds); ● observed, ○ not observed, ? inconclusive, · exploratory under rule v3 "
        f"({counts['observed']}, {counts['not observed']}, {counts['inconclusive']} and {counts['exploratory']} of "
        f"{len(cells)} cells). "
        f"Small numbers and squares: the S8 prediction of that ratio from the trained query/key weights and the "
        f"layer's input tokens (R² over cells {r2}). Dashed: S1's boundary σ = ε_max. Side panels (if shown) vary "
        f"one setting at σ/ε_max = {CENTER['ratio']:g}, τ = {CENTER['temperature']:g}; dotted lines: chance and the "
        f"verdict's {LINE:g}x line."
    )
    configs = [r for c in cells for r in c.runs]
    return [FigureRecord(KEY, TITLE, paths, caption, figures_command(KEY, quick, None, results_root), configs)]
