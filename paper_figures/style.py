"""One plotting style for every figure: readable at print size, colour-blind safe.

Sizes are chosen for a two-column paper: a single-column figure is 3.4 inches wide and its
text is 8-9 pt once printed at 100%. Lines and bars cycle through the Okabe-Ito palette,
which stays distinguishable under the common colour-vision deficiencies; heat maps use
``cividis``, which is perceptually uniform and reads the same in grayscale.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are written to files, never shown; works without a display

import matplotlib.pyplot as plt  # noqa: E402
from cycler import cycler  # noqa: E402

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


def subplots(nrows: int = 1, ncols: int = 1, width: float = COLUMN_WIDTH, height: float | None = None, **kwargs):
    """``plt.subplots`` at paper size; the height defaults to a 4:3 panel per row."""
    if height is None:
        height = width / ncols * 0.75 * nrows
    kwargs.setdefault("squeeze", False)
    return plt.subplots(nrows, ncols, figsize=(width, height), **kwargs)


def save(fig, out_dir: str | Path, name: str) -> list[Path]:
    """Write ``name.png`` (200 dpi) and ``name.pdf`` into ``out_dir``, close the figure, return both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    with context():
        fig.savefig(paths[0], dpi=DPI)
        fig.savefig(paths[1])
    plt.close(fig)
    return paths
