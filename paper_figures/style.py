"""One plotting style for every figure: readable at print size, colour-blind safe.

Sizes are chosen for a two-column paper: a single-column figure is 3.4 inches wide and its
text is 8-9 pt once printed at 100%. Lines and bars cycle through the Okabe-Ito palette,
which stays distinguishable under the common colour-vision deficiencies; heat maps use
``cividis``, which is perceptually uniform and reads the same in grayscale.

Figures are ``matplotlib.figure.Figure`` objects made here, never pyplot's: no backend is chosen
on import, no global figure list grows, and every figure, theory plots included, draws with this
one style.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
from cycler import cycler
from matplotlib.figure import Figure

# Okabe & Ito (2008), "Color Universal Design"; black last so it can mark references.
OKABE_ITO = {
    "blue": "#0072B2",
    "orange": "#E69F00",
    "green": "#009E73",
    "vermillion": "#D55E00",
    "sky": "#56B4E9",
    "purple": "#CC79A7",
    "yellow": "#F0E442",
    "black": "#000000",
}
PALETTE = list(OKABE_ITO.values())
HEATMAP_CMAP = "cividis"
REFERENCE_COLOR = "#555555"  # chance levels, zero lines: gray, dashed

COLUMN_WIDTH = 3.4  # inches, one column of a two-column paper
FULL_WIDTH = 7.0  # inches, both columns
DPI = 200

RC = {
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.prop_cycle": cycler(color=PALETTE),
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "lines.linewidth": 1.5,
    "lines.markersize": 4,
    "errorbar.capsize": 3,
    "legend.frameon": False,
    "image.cmap": HEATMAP_CMAP,
    "savefig.dpi": DPI,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.02,
    "pdf.fonttype": 42,  # embed TrueType so the PDF text stays editable and searchable
    "ps.fonttype": 42,
}


def context():
    """Context manager applying the style; ``with style.context(): ...`` around plotting code."""
    return matplotlib.rc_context(RC)


def figure(width: float = COLUMN_WIDTH, height: float | None = None) -> Figure:
    """An empty figure at paper size, for layouts :func:`subplots` cannot give (nested grids)."""
    return Figure(figsize=(width, width * 0.75 if height is None else height))


def subplots(nrows: int = 1, ncols: int = 1, width: float = COLUMN_WIDTH, height: float | None = None, **kwargs):
    """A figure at paper size and its axes (a 2-D array unless ``squeeze=True``); the height defaults
    to a 4:3 panel per row. Call it inside :func:`context` so the axes take the style."""
    if height is None:
        height = width / ncols * 0.75 * nrows
    kwargs.setdefault("squeeze", False)
    fig = figure(width, height)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def save(fig, out_dir: str | Path, name: str) -> list[Path]:
    """Write ``name.png`` (200 dpi) and ``name.pdf`` into ``out_dir``; return both paths."""
    return save_to(fig, Path(out_dir) / name)


def save_to(fig, path: str | Path) -> list[Path]:
    """Write ``path`` if it ends in .png or .pdf, else ``path.png`` and ``path.pdf``; return the paths."""
    path = Path(path)
    paths = [path] if path.suffix in (".png", ".pdf") else [path.with_name(path.name + s) for s in (".png", ".pdf")]
    path.parent.mkdir(parents=True, exist_ok=True)
    with context():
        for p in paths:
            fig.savefig(p, dpi=DPI)
    return paths
