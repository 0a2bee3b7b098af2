"""Measure trained heads' attention layer by layer, against the theory and two nulls, and judge Deep Fusion.

Give one run folder, or several that differ only in train.seed (repeat --run, or give a glob):
the training seeds are then the verdict's unit. Each run is analysed on disjoint, class-balanced
batches of the split --split names (test by default), drawn afresh for each training seed from
--seed and that seed (analysis.json and attention.npz written into its folder; an analysis made
with the same settings is reused), then the seeds are judged together. Or give attention from any
model with --attention FILE.npz, one file per training seed, holding
  attention  float (B, L, H, M, M): analysis batches, layers, heads, query token, key token; each
             row sums to 1 over its visible keys
  labels     int (B, M); instance int (B, M): tokens with one id are views of one sample, and an id
             names one sample of the analysed split in every batch and file
  untrained  optional, like attention: the head at initialisation on the same batches (without it
             that null is not available and the verdict cannot be "observed")
  visible    optional bool (M, M) or (B, M, M)
(a run folder's attention.npz is such a file). One row per layer:

  share        attention on other samples of the token's class, as a part of the attention it
               puts outside its own views (self and positive view removed, row renormalised)
  chance       that share under uniform attention
  ratio [CI]   share over chance, seeds averaged, with the interval of this look (t over seeds)
  perm q975    the 97.5% quantile of the ratio with per-sample labels permuted (the first null)
  untrained    the ratio of the untrained head on the same batches (the second null)
  own views    attention on the token itself and its positive view, reported apart
  S8, S4       the ratio S8 predicts from the layer's weights; the mass S4 predicts from spread
               r, class-mean cosine and beta_eff (run folders only)
  r, r'/r      within-class spread of the layer's input tokens; its change (predicted by S9-S12)
  beta (R2)    fitted inverse temperature of a softmax of token cosines, and its R2

then the verdict (rule v3, experiments/verdict.py). Thresholds: the last layer's ratio must clear
1.25x chance; a decision needs at least 6 training seeds (fewer: "exploratory (k seeds)"); the
pre-registered plan looks at 6, 12 and 24 seeds (only those counts decide; others are exploratory)
and spends one-sided alpha 0.025 as 0.0083 per look and direction (t-intervals over seeds at that
level); observed also needs the per-seed slope of the ratio over layers above 0, permutation p <=
0.025 for both, and both above the untrained head (paired over seeds). Not observed: the interval
lies below 1.25. Otherwise inconclusive, with the seeds the next look needs. On --split train the
verdict is exploratory ("training split: not evidence of generalising structure"). Examples:

  deepfusion analyze --run runs/digits_s1
  deepfusion analyze --run 'runs/digits_s*' --out pooled.json
  deepfusion analyze --attention seed1.npz --attention seed2.npz ... --attention seed6.npz
  deepfusion analyze --calibrate          # the rule on synthetic attention with known answers
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np

from deepfusion.errors import ConfigError, DataWarning

# The study, calibration and torch-backed modules are imported inside run(): `deepfusion --help` and
# argument errors must not pay torch's ~2 s import (see ARCHITECTURE.md, Command line).


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _add_inputs(parser)
    _add_batches(parser)
    _add_run_options(parser)
    _add_calibration(parser)


def _add_inputs(parser: argparse.ArgumentParser) -> None:
    """What is analysed: run folders or attention files."""
    parser.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="DIR",
        help="run folder written by deepfusion train; repeat it (or give a glob) to pool seeds",
    )
    parser.add_argument(
        "--attention",
        action="append",
        default=[],
        metavar="FILE",
        help="an .npz of one training seed's attention (arrays above); repeat it, one per seed; instead of --run",
    )


def _add_batches(parser: argparse.ArgumentParser) -> None:
    """How the analysis batches are drawn."""
    parser.add_argument(
        "--batches", type=int, default=5, metavar="N", help="disjoint analysis batches per run (default 5)"
    )
    parser.add_argument(
        "--per-class",
        type=int,
        default=None,
        metavar="K",
        help="samples of every class in a batch (default: the most that fit N disjoint batches, "
        "at most 16); the head sees 2 views of each",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="S",
        help="analysis seed, 0 or more (default 0): each run draws its batches from it and its training "
        "seed; it also draws the label permutations (and the calibration's data)",
    )
    parser.add_argument(
        "--views",
        choices=("two_views", "eval_view"),
        default="two_views",
        help="two_views: augmented training input (default); eval_view: unaugmented, "
        "so each token's positive is an exact copy",
    )
    parser.add_argument(
        "--split", choices=("test", "train"), default="test", help="data split to draw from (default test)"
    )


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """The null's size, what is written, and where it runs."""
    parser.add_argument(
        "--n-perm",
        type=int,
        default=200,
        metavar="P",
        help="label permutations of the first null (at least 200; default 200)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace an analysis.json made with other settings or of another checkpoint",
    )
    parser.add_argument(
        "--out",
        metavar="FILE",
        default=None,
        help="also write the pooled record (settings, layers, verdict) as JSON to FILE",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:K or auto (default cpu)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="T",
        help="CPU threads for torch and BLAS; 1 (default) avoids oversubscription on "
        "shared small machines, where the many small matrices gain nothing from more; "
        "0 leaves the libraries' defaults",
    )


def _add_calibration(parser: argparse.ArgumentParser) -> None:
    """--calibrate: the rule on synthetic attention with a known answer."""
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="instead of analysing runs: apply the rule to synthetic attention whose answer is "
        "known and print how often it says observed",
    )
    parser.add_argument("--draws", type=int, default=100, metavar="N", help="synthetic draws per case with --calibrate")
    parser.add_argument(
        "--case",
        action="append",
        default=[],
        metavar="NAME",
        help="with --calibrate: only this case (repeat for several; default every case)",
    )


COLUMNS = (
    "layer",
    "share",
    "chance",
    "ratio [CI]",
    "perm q975",
    "untrained",
    "own views",
    "S8",
    "S4",
    "r",
    "r'/r (pred)",
    "beta (R2)",
)


def _ci(ci) -> str:
    return "[n/a]" if ci is None else f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def layer_rows(pooled) -> list[list[str]]:
    """One row of strings per layer, in the order of ``COLUMNS``."""
    v = pooled.verdict
    untrained = v.untrained_null.layers or [None] * len(v.layers)
    rows = []
    for l, entry in enumerate(pooled.layers):
        s8 = entry.get("predicted_mass")
        rows.append(
            [
                str(l),
                f"{v.share[l]:.4f}",
                f"{v.chance[l]:.4f}",
                f"{v.layers[l]:.2f}x {_ci(v.layers_ci[l])}",
                f"{v.permutation_null.layers_q975[l]:.2f}x",
                "n/a" if untrained[l] is None else f"{untrained[l]:.2f}x",
                f"{v.own_view[l]:.4f}",
                "n/a" if s8 is None else f"{s8 / entry['chance']:.2f}x",
                _num(entry.get("predicted_same_class_mass"), ".4f"),
                _num(entry.get("relative_spread"), ".3f"),
                f"{_num(entry.get('measured_r_ratio'), '.3f')} ({_num(entry.get('predicted_r_ratio'), '.3f')})",
                f"{_num(entry.get('beta_eff'), '.2f')} ({_num(entry.get('beta_r2'), '.2f')})",
            ]
        )
    return rows


def _num(v, fmt: str) -> str:
    return "n/a" if v is None or not np.isfinite(v) else format(v, fmt)


def format_table(pooled) -> str:
    """The per-layer table, the seed-level statistics with both nulls, the runs and the verdict line."""
    rows = [list(COLUMNS)] + layer_rows(pooled)
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    v, s = pooled.verdict, pooled.settings
    pn, un = v.permutation_null, v.untrained_null
    stage = (
        f"look {v.look} of 3 (plan 6/12/24 seeds), intervals at one-sided {v.level:.4f}"
        if v.look
        else "exploratory stage (fewer than 6 seeds), two-sided 95% intervals"
    )
    per = (
        f"{pooled.num_classes} classes x {s.per_class} samples x 2 views"
        if s.per_class
        else f"{pooled.num_classes} classes"
    )
    lines += [
        f"{v.seeds} seed(s) x {s.batches} batches of {s.tokens_per_batch} tokens ({per}), {pooled.num_heads} heads, "
        f"scope {s.scope}, split {s.split}; {stage}; {pn.n_perm} label permutations over {pn.samples} samples",
        f"EFFECT (last layer) {v.last_layer_ratio:.2f}x chance {_ci(v.effect_ci)}   line {v.line}x   permutation q975 "
        f"{pn.effect_q975:.2f}x (p {pn.effect_p:.3f})   untrained "
        + (f"{un.effect:.2f}x (difference {_ci(un.effect_difference_ci)})" if un.available else "not available"),
        f"TREND (slope per layer) {v.trend:+.3f} {_ci(v.trend_ci)}   permutation q975 {pn.trend_q975:+.3f} "
        f"(p {pn.trend_p:.3f})   untrained "
        + (f"{un.trend:+.3f} (difference {_ci(un.trend_difference_ci)})" if un.available else "not available"),
    ]
    if len(pooled.per_run) > 1:
        lines.append(
            "seeds: "
            + "; ".join(f"{r['run']} (seed {r['train_seed']}): {r['last_ratio']:.2f}x" for r in pooled.per_run)
        )
    lines.append(f"verdict: {v.label}: {v.decided_by}; would change it: {v.would_change}")
    return "\n".join(lines)


def check_args(args) -> None:
    """One-line errors for options out of range, before anything is read or written."""
    if args.seed < 0:
        raise ConfigError(f"--seed={args.seed} must be 0 or more")
    for name in ("batches", "draws"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name}={getattr(args, name)} must be at least 1")
    if not args.calibrate and args.batches < 2:
        raise ConfigError(f"--batches={args.batches} must be at least 2: each seed averages several analysis batches")
    if args.n_perm < 200:
        raise ConfigError(f"--n-perm={args.n_perm} is too few for the permutation null; use at least 200")
    if args.per_class is not None and args.per_class < 2:
        raise ConfigError(
            f"--per-class={args.per_class} must be at least 2 (a token needs another sample of its class)"
        )
    if args.run and args.attention:
        raise ConfigError("give run folders (--run) or attention files (--attention), not both")


def run(args: argparse.Namespace) -> int:
    from deepfusion.model.runs.devices import limit_threads, resolve_device

    check_args(args)
    if args.calibrate:
        from deepfusion.experiments.calibration import CASES, calibrate, format_calibration

        unknown = [c for c in args.case if c not in CASES]
        if unknown:
            raise ConfigError(f"--case {unknown[0]} is not a calibration case; choose from {', '.join(CASES)}")
        with limit_threads(args.threads):
            print(
                format_calibration(
                    calibrate(
                        draws=args.draws, seed=args.seed, n_perm=args.n_perm, cases=tuple(args.case) or tuple(CASES)
                    )
                )
            )
        return 0
    if not args.run and not args.attention:
        raise ConfigError(
            "give a run folder with --run DIR or attention files with --attention FILE (repeat either "
            "for several seeds), or --calibrate"
        )
    if args.split == "train":
        from deepfusion.experiments.verdict import TRAIN_SPLIT_LABEL

        warnings.warn(f"--split train: {TRAIN_SPLIT_LABEL}; the verdict is exploratory", DataWarning, stacklevel=2)
    with limit_threads(args.threads):
        if args.attention:
            from deepfusion.experiments.pooling import pool_files

            pooled = pool_files(args.attention, split=args.split, n_perm=args.n_perm, seed=args.seed)
        else:
            from deepfusion.experiments.pooling import expand_runs
            from deepfusion.experiments.studies.deep_fusion import AnalysisOptions, analyze_runs

            options = AnalysisOptions(
                batches=args.batches,
                per_class=args.per_class,
                seed=args.seed,
                views=args.views,
                split=args.split,
                n_perm=args.n_perm,
                force=args.force,
            )
            pooled = analyze_runs(
                expand_runs(args.run), options, resolve_device(args.device, option="--device"), log=print
            )
    print(format_table(pooled))
    if args.out:
        from deepfusion.model.runs.layout import write_json

        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        write_json(args.out, pooled.to_json())
        print(f"written: {args.out}")
    return 0
