"""F1: label-sorted attention maps per layer, the Deep Fusion figure.

The attention of one analysis batch (both views, 2N tokens) with rows and columns sorted by class
label, one panel per layer; lines mark the class boundaries, so fusion shows as mass gathering in
the diagonal blocks with depth. Two figures: one chosen head, and the average over heads.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from deepfusion.experiments.runs import RunResult, RunSpec, run_all
from deepfusion.experiments.studies import deep_fusion
from deepfusion.paper_figures import analysis_io, runs, style
from deepfusion.paper_figures.record import FigureRecord, figures_command

KEY = "F1"
TITLE = "Label-sorted attention maps per layer"
MAX_COLS = 5
CLIP_QUANTILE = 0.995  # the self/positive-view entries would otherwise set the whole colour scale


def main_spec(quick: bool, data=None) -> RunSpec:
    """The transformer run F1 and F2 analyse: seed 0 of F4's transformer runs (shared through the cache)."""
    preset = runs.datasets(quick)[0]
    return runs.base_spec(preset, data).with_overrides("model.head=transformer", "train.seed=0")


def needed(quick: bool, data=None, seeds: int = 1) -> list[RunSpec]:
    """The runs this figure draws on (trained ahead by ``experiments.runs.prefetch``)."""
    return [main_spec(quick, data)]


def analysed_run(quick, data, results_root, log=None, train_fn=None) -> RunResult:
    result = run_all([main_spec(quick, data)], results_root, log=log, train_fn=train_fn)[0]
    deep_fusion.run_analysis(result.run_dir, log=log)
    return result


def sort_by_label(A: np.ndarray, labels: np.ndarray):
    """Rows and columns of ``A`` (..., M, M) in label order; returns (A_sorted, sorted labels, boundaries)."""
    order = np.argsort(labels, kind="stable")
    ys = labels[order]
    bounds = np.flatnonzero(np.diff(ys)) + 1  # index of the first token of each class after the first
    return A[..., order[:, None], order[None, :]], ys, bounds


def choose_head(run_dir) -> tuple[int, str]:
    """The head with the largest same-class ratio to chance in the last layer (from the analysis)."""
    ratio = deep_fusion.run_analysis(run_dir).layer_values("ratio")[-1]
    h = int(np.argmax(ratio))
    return h, f"head {h}, the head with the largest same-class mass over chance in the last layer ({ratio[h]:.2f}x)"


def plot_maps(
    maps: np.ndarray, labels: np.ndarray, out_dir: Path, stem: str, what: str, title: str | None = None
) -> list[Path]:
    """One panel per layer of ``maps`` (L, M, M), shared colour scale, class boundaries drawn; ``title``
    above the panels when given."""
    maps, ys, bounds = sort_by_label(maps, labels)
    L, M = maps.shape[0], maps.shape[-1]
    ncols = min(L, MAX_COLS)
    nrows = math.ceil(L / ncols)
    panel = style.FULL_WIDTH / (ncols + 0.4)
    fig, axes = style.subplots(nrows, ncols, width=style.FULL_WIDTH, height=panel * nrows + 0.35)
    vmax = float(np.quantile(maps, CLIP_QUANTILE))
    starts = np.concatenate([[0], bounds, [M]])
    centres = (starts[:-1] + starts[1:]) / 2 - 0.5
    classes = ys[starts[:-1]]
    for l in range(nrows * ncols):
        ax = axes[l // ncols][l % ncols]
        if l >= L:
            ax.axis("off")
            continue
        im = ax.imshow(maps[l], cmap=style.HEATMAP_CMAP, vmin=0.0, vmax=vmax, interpolation="nearest")
        for b in bounds:
            ax.axhline(b - 0.5, color=style.OKABE_ITO["vermillion"], lw=0.5)
            ax.axvline(b - 0.5, color=style.OKABE_ITO["vermillion"], lw=0.5)
        ax.set_title(f"layer {l + 1}")
        if len(classes) <= 20:
            ax.set_xticks(centres, [str(c) for c in classes], fontsize=5)
            ax.set_yticks(centres, [str(c) for c in classes], fontsize=5)
            ax.tick_params(length=0, pad=1)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
        if l % ncols == 0:
            ax.set_ylabel("query token (class)")
        if l // ncols == nrows - 1 or l + ncols >= L:
            ax.set_xlabel("key token (class)")
    cbar = fig.colorbar(
        im, ax=axes.ravel().tolist(), shrink=0.8, pad=0.02, extend="max" if vmax < maps.max() else "neither"
    )
    cbar.set_label(f"attention weight ({what})")
    if title:
        fig.suptitle(title, fontsize=8)
    return style.save(fig, out_dir, stem)


def make(out_dir, quick: bool, data=None, results_root=None, log=print, train_fn=None) -> list[FigureRecord]:
    """Analyse (or load) the main transformer run; write the chosen-head and head-mean map figures."""
    out_dir = Path(out_dir)
    results_root = runs.checked_root(quick, data, results_root)
    result = analysed_run(quick, data, results_root, log=log, train_fn=train_fn)
    attn, labels = analysis_io.load_attention(result.run_dir)
    h, why = choose_head(result.run_dir)
    L, H, M, _ = attn.shape
    with style.context():
        head_paths = plot_maps(attn[:, h], labels, out_dir, "f1_attention_head", f"head {h}")
        mean_paths = plot_maps(attn.mean(1), labels, out_dir, "f1_attention_mean", f"mean of {H} heads")
    common = (
        f"One analysis batch of {M} tokens (both augmented views of {M // 2} test samples, "
        f"{len(np.unique(labels))} classes) through the trained transformer head of run "
        f"{result.spec.describe()}; rows (queries) and columns (keys) sorted by class label, class "
        f"boundaries in vermillion, tick labels are the classes. Colour: attention weight, shared scale "
        f"across layers, clipped at the {CLIP_QUANTILE:.1%} quantile because each token's own and "
        f"positive-view weights dwarf the rest. Fusion shows as weight concentrating in the diagonal blocks."
    )
    command = figures_command(KEY, quick, data, results_root)
    configs = [result.describe()]
    return [
        FigureRecord(
            KEY,
            f"{TITLE}: {why.split(',')[0]}",
            head_paths,
            f"Attention of {why}, per layer (L={L}). " + common,
            command,
            configs,
        ),
        FigureRecord(
            KEY,
            f"{TITLE}: mean over heads",
            mean_paths,
            f"Attention averaged over the {H} heads, per layer (L={L}). " + common,
            command,
            configs,
        ),
    ]
