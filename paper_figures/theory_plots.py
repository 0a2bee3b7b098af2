"""Theory figures (F3): the fusion region (S5), eps_max against C (S1), the recursion curves (S5).

Each ``plot_*(path)`` draws from the closed forms (and, for the curves, a finite simulation) and
writes ``path``; a path ending in .png or .pdf gets that file, a path without either suffix gets both
``path.png`` and ``path.pdf``. Returns the list of files written. They draw with the figures' one
style (``paper_figures/style.py``).
"""

from __future__ import annotations

from functools import lru_cache

import matplotlib
import matplotlib.ticker
import numpy as np

from deepfusion.paper_figures import style
from deepfusion.theory import bounds
from deepfusion.theory.checks_fusion import REGIMES
from deepfusion.theory.fusion import mean_field
from deepfusion.theory.simulation import simulate_fusion

C_ = style.OKABE_ITO
BLUE, ORANGE, GREEN, VERMILLION, BLACK = C_["blue"], C_["orange"], C_["green"], C_["vermillion"], C_["black"]
GRAY = style.REFERENCE_COLOR
WIDTH = style.COLUMN_WIDTH

FIG_C, FIG_N, FIG_D, FIG_LAYERS = 4, 64, 2048, 10


@lru_cache(maxsize=2)
def fusion_region_data(C=FIG_C, n=FIG_N, alpha=1.0, layers=FIG_LAYERS, size=160):
    """S5 on a (beta, r0) grid: log10(r_L / r0) after `layers` layers, and the self weight a_self at
    r0 (the trap: above 1/2 a token attends mostly to itself, r'/r -> 1 and fusion stalls)."""
    beta = np.linspace(0.0, 30.0, size)
    r0 = np.linspace(0.05, 3.0, size)
    B, R = np.meshgrid(beta, r0)
    mf = mean_field(C, n, B, alpha, R, layers)
    ratio = np.log10(np.maximum(mf.r[..., -1], 1e-300) / R)
    return beta, r0, ratio, mf.a_self[..., 0]


def figure_fusion_region(C=FIG_C, n=FIG_N, alpha=1.0, layers=FIG_LAYERS):
    """S5: where L layers of the mean-field recursion fuse (r_L << r0) and where the self-attention
    trap stalls fusion, in the (beta, r0) plane."""
    beta, r0, ratio, a_self = fusion_region_data(C, n, alpha, layers)
    with style.context():
        fig, ax = style.subplots(width=WIDTH, height=2.7, squeeze=True)
        lo = max(-8.0, float(np.floor(ratio.min())))
        im = ax.pcolormesh(
            beta,
            r0,
            np.clip(ratio, lo, None),
            cmap="cividis",
            shading="auto",
            vmin=lo,
            vmax=max(0.0, float(ratio.max())),
            rasterized=True,
        )
        cb = fig.colorbar(im, ax=ax, pad=0.02)
        cb.set_label(rf"$\log_{{10}}(r_{{{layers}}}/r_0)$")
        # solid: a single-colour contour at a negative level would be dashed by default, unlike its legend line
        ax.contour(beta, r0, ratio, levels=[-1.0], colors=[ORANGE], linewidths=1.5, linestyles="solid")
        with matplotlib.rc_context({"hatch.color": VERMILLION, "hatch.linewidth": 0.8}):
            ax.contourf(beta, r0, a_self, levels=[0.5, 2.0], colors="none", hatches=["////"])
        ax.contour(beta, r0, a_self, levels=[0.5], colors=[VERMILLION], linewidths=1.2, linestyles="--")
        ax.plot([], [], color=ORANGE, label=rf"$r_{{{layers}}} = r_0/10$")
        ax.fill_between(
            [],
            [],
            hatch="////",
            facecolor="none",
            edgecolor=VERMILLION,
            label=r"self-attention trap: $a_{self}(r_0) > 1/2$",
        )
        ax.set_xlabel(r"inverse temperature $\beta$")
        ax.set_ylabel(r"initial spread $r_0$")
        ax.set_title(f"S5 fusion region (C={C}, n={n}, $\\alpha$={alpha:g}, L={layers})", fontsize=8)
        ax.legend(loc="upper right", fontsize=6.5, frameon=True, framealpha=0.9)
        return fig


def figure_eps_max(C_max=50):
    """S1: the exact threshold eps_max and the Cauchy-Schwarz bound against C (ETF rho), with the
    SLSQP worst case at a few C and the same-class limit 1/sqrt(2)."""
    Cs = np.arange(2, C_max + 1)
    rho = bounds.etf_rho(Cs)
    marks = np.array([2, 3, 5, 10, 20, 50])
    marks = marks[marks <= C_max]
    numeric = [bounds.numeric_threshold(bounds.etf_rho(c), starts=2) for c in marks]
    with style.context():
        fig, ax = style.subplots(width=WIDTH, height=2.5, squeeze=True)
        ax.plot(Cs, bounds.eps_max(rho), color=BLUE, label=r"exact $\varepsilon_{max}$ (S1)")
        ax.plot(
            Cs, bounds.simple_bound(rho), color=VERMILLION, ls="--", label=r"Cauchy-Schwarz bound $\sqrt{1-\rho}-1$"
        )
        ax.plot(marks, numeric, "o", mfc="none", color=BLACK, label="numeric worst case (SLSQP)")
        ax.axhline(1 / np.sqrt(2), color=GRAY, ls=":", lw=1)
        ax.text(
            C_max, 1 / np.sqrt(2), r"same-class limit $1/\sqrt{2}$", ha="right", va="bottom", fontsize=7, color=GRAY
        )
        ax.set_xscale("log")
        ax.set_xticks([2, 3, 5, 10, 20, 50])
        ax.set_xticklabels(["2", "3", "5", "10", "20", "50"])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_ylim(0, 0.8)
        ax.set_xlabel(r"classes $C$ (simplex ETF, $\rho=-1/(C-1)$)")
        ax.set_ylabel(r"largest noise radius $\varepsilon$")
        ax.legend(loc="center right", bbox_to_anchor=(1.0, 0.6))
        return fig


@lru_cache(maxsize=1)
def recursion_data(C=FIG_C, n=FIG_N, d=FIG_D, layers=FIG_LAYERS, seed=0):
    """S5: per regime of the S5 check (checks_fusion.REGIMES), the mean-field (r, m) and a finite
    simulation's (r, m) on the same settings."""
    out = {}
    for name, (beta, alpha, r0) in REGIMES.items():
        sim = simulate_fusion(C, n, d, beta, alpha, r0, layers, seed=seed)
        mf = mean_field(C, n, beta, alpha, sim.r[0], layers)  # start from the measured spread
        out[name] = dict(
            beta=beta, alpha=alpha, r0=r0, mf_r=mf.r, mf_m=mf.m, sim_r=sim.r, sim_m=sim.m, m_star=float(mf.m_star)
        )
    return out


def figure_recursion_curves(C=FIG_C, n=FIG_N, d=FIG_D, layers=FIG_LAYERS):
    """S5: r_l and m_l against layer l from the recursion (lines) with a finite token simulation
    (markers, d tokens dimensions) on top, for a fast, a slow and a stalled regime."""
    data = recursion_data(C, n, d, layers)
    colours = {"fast": BLUE, "slow": GREEN, "stall": VERMILLION}
    marks = {"fast": "o", "slow": "s", "stall": "^"}
    with style.context():
        fig, (a1, a2) = style.subplots(1, 2, width=2 * WIDTH * 0.95, height=2.5, squeeze=True)
        for name, v in data.items():
            c = colours[name]
            lab = rf"{name}: $\beta$={v['beta']:g}, $\alpha$={v['alpha']:g}, $r_0$={v['r0']:g}"
            a1.plot(np.arange(layers + 1), v["mf_r"], color=c, label=lab)
            a1.plot(np.arange(layers + 1), v["sim_r"], marks[name], color=c, mfc="none")
            a2.plot(np.arange(layers), v["mf_m"], color=c)
            a2.plot(np.arange(layers), v["sim_m"], marks[name], color=c, mfc="none")
        a2.axhline(1.0 / C, color=GRAY, ls=":", lw=1)
        a2.text(layers - 1, 1.0 / C, "chance 1/C", ha="right", va="bottom", fontsize=7, color=GRAY)
        a1.plot([], [], "-", color=GRAY, label="mean-field recursion")
        a1.plot([], [], "o", color=GRAY, mfc="none", label=f"simulation (d={d}, n={n}, C={C})")
        a1.set_yscale("log")
        a1.set_xlabel("layer $l$")
        a1.set_ylabel("within-class spread $r_l$")
        a2.set_xlabel("layer $l$")
        a2.set_ylabel("same-class attention mass $m_l$")
        a2.set_ylim(0, 1.02)
        a1.legend(loc="lower left", fontsize=6.5)
        fig.tight_layout()
        return fig


def plot_fusion_region(path, C=FIG_C, n=FIG_N, alpha=1.0, layers=FIG_LAYERS):
    """Draw :func:`figure_fusion_region` into ``path`` (see the module docstring); returns the files."""
    return style.save_to(figure_fusion_region(C, n, alpha, layers), path)


def plot_eps_max(path, C_max=50):
    """Draw :func:`figure_eps_max` into ``path`` (see the module docstring); returns the files."""
    return style.save_to(figure_eps_max(C_max), path)


def plot_recursion_curves(path, C=FIG_C, n=FIG_N, d=FIG_D, layers=FIG_LAYERS):
    """Draw :func:`figure_recursion_curves` into ``path`` (see the module docstring); returns the files."""
    return style.save_to(figure_recursion_curves(C, n, d, layers), path)
