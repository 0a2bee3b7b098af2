"""F3: the theory figures, drawn by ``paper_figures.theory_plots`` (no training, no data).

Three plots of the project's formalisation: the fusion region of S5 in (β, r0), the largest
admissible augmentation ε_max of S1 against the number of classes C, and the spread recursion
r_l of S2+S4 layer by layer.
"""

from __future__ import annotations

from pathlib import Path

from deepfusion.paper_figures import style
from deepfusion.paper_figures import theory_plots as plots
from deepfusion.paper_figures.record import FigureRecord, figures_command

KEY = "F3"
PLOTS = (
    # (function in paper_figures.theory_plots, file stem, title, caption)
    (
        "plot_fusion_region",
        "f3_fusion_region",
        "Fusion region of S5 in (β, r0)",
        "Where iterating the one-layer map of S2 with S4's softmax block weights shrinks the within-class "
        "spread r to 0 (fusion) and where it stalls (the self-attention trap), over the inverse temperature β "
        "and the initial relative spread r0; computed from the closed forms, no training.",
    ),
    (
        "plot_eps_max",
        "f3_eps_max",
        "Largest augmentation ε_max of S1 against C",
        "S1's exact largest noise radius ε_max = sin((arccos ρ − π/2)/2) for which ReLU attention is exactly "
        "block-diagonal, with ρ = −1/(C−1) of the simplex ETF, beside the looser triangle-inequality bound "
        "sqrt(1 − ρ) − 1, against the number of classes C; closed forms, checked numerically by `deepfusion verify`.",
    ),
    (
        "plot_recursion_curves",
        "f3_recursion",
        "Spread recursion r_l of S5",
        "Relative within-class spread r_l against layer l from the S2+S4 recursion for several (β, r0), "
        "showing geometric fusion and the stall; closed forms, no training.",
    ),
)


def make(out_dir, quick: bool, data=None, results_root=None, log=print, **_) -> list[FigureRecord]:
    """Write the three theory figures as PNG and PDF; one record each."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for func, stem, title, caption in PLOTS:
        paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
        with style.context():
            for p in paths:
                getattr(plots, func)(p)
        records.append(
            FigureRecord(
                KEY,
                title,
                paths,
                caption + f" Drawn by paper_figures.theory_plots.{func}.",
                figures_command(KEY, quick),
            )
        )
    return records
