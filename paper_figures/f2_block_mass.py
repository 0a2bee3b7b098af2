"""F2: same-class attention against depth over training seeds, beside the nulls and the S4 prediction.

Per layer of the trained transformer head, pooled over the seeds of F4's transformer runs: the
head-averaged same-class mass (self and positive views excluded) as a multiple of its chance
level, with its 95% interval (seeds, and batches inside seeds); each seed's own curve faintly; the
97.5% quantile of the label-permutation null; the untrained head on the same batches; the S4
prediction from each layer's measured token spread and fitted inverse temperature; chance (1x) and
the verdict's effect line. The caption carries the verdict (rule v3).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepfusion.experiments.runs import RunSpec, seed_specs
from deepfusion.experiments.studies.deep_fusion import SeedStudy, seed_study
from deepfusion.paper_figures import runs, style
from deepfusion.paper_figures.f1_attention_maps import main_spec
from deepfusion.paper_figures.record import FigureRecord, figures_command

KEY = "F2"
TITLE = "Same-class attention against depth over seeds: measured, nulls and S4 prediction"


def needed(quick: bool, data=None, seeds: int = 3) -> list[RunSpec]:
    """The runs this figure draws on (trained ahead by ``experiments.runs.prefetch``)."""
    return seed_specs(main_spec(quick, data), seeds)


def draw_nulls(ax, depth, v) -> None:
    """The permutation null's 97.5% quantile per layer and, when given, the untrained head."""
    ax.plot(
        depth,
        v.permutation_null.layers_q975,
        color=style.REFERENCE_COLOR,
        ls="--",
        lw=1,
        label="labels permuted, 97.5% quantile",
    )
    if v.untrained_null.available:
        ax.plot(
            depth,
            v.untrained_null.layers,
            color=style.OKABE_ITO["orange"],
            marker="^",
            ms=3,
            lw=1,
            label="untrained head",
        )


def _predicted_ratio(pooled) -> np.ndarray:
    """S4's predicted same-class mass per layer over chance (NaN where a run had no prediction)."""
    masses = [e["predicted_same_class_mass"] for e in pooled.layers]
    return np.array([np.nan if m is None else m for m in masses]) / pooled.chance


def plot(study: SeedStudy, out_dir: Path, stem: str) -> list[Path]:
    """The study's per-layer ratio over seeds, its nulls and the S4 prediction."""
    pooled = study.pooled
    per_seed = [np.asarray(x) for x in pooled.verdict.per_seed_layers]
    v = pooled.verdict
    L = pooled.num_layers
    depth = np.arange(1, L + 1)
    fig, axes = style.subplots(1, 1, width=style.COLUMN_WIDTH, height=2.6)
    ax = axes[0][0]
    for i, curve in enumerate(per_seed):
        ax.plot(depth, curve, color=style.OKABE_ITO["sky"], lw=0.8, alpha=0.8, label="single seeds" if i == 0 else None)
    mean = np.asarray(v.layers)
    ci = np.asarray([c if c is not None else [m, m] for c, m in zip(v.layers_ci, mean)])
    ax.errorbar(
        depth,
        mean,
        yerr=np.vstack([mean - ci[:, 0], ci[:, 1] - mean]).clip(min=0),
        marker="o",
        color=style.OKABE_ITO["blue"],
        label=f"trained, {v.seeds} seeds (verdict's interval)",
    )
    draw_nulls(ax, depth, v)
    predicted = _predicted_ratio(pooled)
    if np.isfinite(predicted).any():
        ax.plot(
            depth,
            predicted,
            marker="s",
            ls="--",
            mfc="none",
            color=style.OKABE_ITO["vermillion"],
            label=r"S4 prediction (measured $r$, $\beta_{\rm eff}$)",
        )
    ax.axhline(1.0, color=style.REFERENCE_COLOR, ls=":", lw=1)
    ax.axhline(v.line, color=style.OKABE_ITO["green"], ls=":", lw=1, label=f"effect line {v.line}x")
    ax.set_xticks(depth)
    ax.set_xlabel("layer of the head (depth)")
    ax.set_ylabel("same-class share / chance")
    top = np.nanmax([ci.max(), np.max(per_seed), v.line, np.nanmax(predicted) if np.isfinite(predicted).any() else 0])
    ax.set_ylim(min(0.9, float(np.min(per_seed)) - 0.05), float(top) * 1.08)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, fontsize=6.5)
    return style.save(fig, out_dir, stem)


def make(
    out_dir, quick: bool, data=None, results_root=None, log=print, train_fn=None, seeds: int = 3
) -> list[FigureRecord]:
    """The Deep Fusion study over the seeds' transformer runs (trained or loaded), drawn per layer."""
    out_dir = Path(out_dir)
    results_root = runs.checked_root(quick, data, results_root)
    study = seed_study(main_spec(quick, data), seeds, results_root, log=log, train_fn=train_fn)
    with style.context():
        paths = plot(study, out_dir, "f2_block_mass")
    pooled = study.pooled
    v, s = pooled.verdict, pooled.settings
    caption = (
        f"Same-class attention of the trained transformer head ({main_spec(quick, data).describe()}, seeds "
        f"0-{seeds - 1}; {pooled.num_heads} heads, {pooled.num_layers} layers, {pooled.num_classes} classes): the "
        f"share of a token's attention outside its own views (itself and its positive view removed, the row "
        f"renormalised) that falls on other samples of its class, averaged over heads and {s.batches} disjoint "
        f"analysis batches of {s.tokens_per_batch} tokens, as a multiple of that share under uniform attention "
        f"(1x, dotted). Dark: mean over seeds with the verdict's t-interval over seeds (rule v3; none with one "
        f"seed); light: single seeds; dashed gray: the 97.5% quantile with per-sample labels permuted; "
        f"orange: the untrained head on the same batches; vermillion: the S4 prediction "
        f"from each layer's measured spread r and fitted inverse temperature; green: the verdict's effect line. "
        f"Verdict: {v.label}: {v.decided_by}."
    )
    return [
        FigureRecord(KEY, TITLE, paths, caption, figures_command(KEY, quick, data, results_root), study.runs, study)
    ]
