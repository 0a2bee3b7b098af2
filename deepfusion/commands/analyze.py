"""Measure trained heads' attention layer by layer, against the theory and two nulls, and judge Deep Fusion.

Give one run folder, or several that differ only in train.seed (repeat --run, or give a glob):
the training seeds are then the verdict's unit. Each run is analysed on disjoint, class-balanced
batches of the split --split names (test by default), drawn afresh for each training seed from
--seed and that seed, so batches are nested in seeds (analysis.json and attention.npz written into its folder; an analysis
made with the same settings is reused), then the seeds are pooled. One row per layer:

  same-class   mean attention on other samples of the token's class (itself and its positive
               view excluded), averaged over heads, batches and seeds
  ratio [CI]   that mass over its chance level (uniform attention), with its 95% interval
               (hierarchical bootstrap over seeds and batches, widened to the t-interval over
               seeds where that is wider)
  perm q975    the 97.5% quantile of the ratio with class labels permuted (the first null)
  untrained    the ratio of the untrained head on the same batches (the second null)
  self, pos    attention on the token itself and on its other augmented view
  S8           the ratio S8 predicts from the layer's query/key weights and its input tokens
  S4           the mass S4 predicts from the layer's spread r, class-mean cosine and beta_eff
  r, r'/r      within-class spread of the layer's input tokens; its change through the layer,
               measured (and predicted by S9-S12 from the weights)
  beta (R2)    fitted inverse temperature of a softmax of token cosines, and its R2

then the statistics and the verdict (rule v2, experiments/verdict.py): observed, not observed or
inconclusive, with the condition that decided it. Examples:

  deepfusion analyze --run runs/digits_s1
  deepfusion analyze --run runs/digits_s1 --run runs/digits_s2 --run runs/digits_s3 --out pooled.json
  deepfusion analyze --run 'runs/digits_s*'
  deepfusion analyze --calibrate          # the rule on synthetic attention with known answers
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

import numpy as np

from deepfusion.errors import ConfigError, DataError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", action="append", default=[], metavar="DIR",
                        help="run folder written by deepfusion train; repeat it (or give a glob) to pool seeds")
    parser.add_argument("--batches", type=int, default=5, metavar="N",
                        help="disjoint analysis batches per run (default 5)")
    parser.add_argument("--per-class", type=int, default=None, metavar="K",
                        help="samples of every class in a batch (default: the most that fit N disjoint batches, "
                             "at most 16); the head sees 2 views of each")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="analysis seed (default 0); each run draws its batches from it and its training seed")
    parser.add_argument("--views", choices=("two_views", "eval_view"), default="two_views",
                        help="two_views: augmented training input (default); eval_view: unaugmented, "
                             "so each token's positive is an exact copy")
    parser.add_argument("--split", choices=("test", "train"), default="test", help="data split to draw from (default test)")
    parser.add_argument("--n-perm", type=int, default=200, metavar="P",
                        help="label permutations of the first null (at least 200; default 200)")
    parser.add_argument("--n-boot", type=int, default=2000, metavar="B", help="bootstrap resamples (default 2000)")
    parser.add_argument("--force", action="store_true",
                        help="replace an analysis.json made with other settings or of another checkpoint")
    parser.add_argument("--out", metavar="FILE", default=None, help="also write the pooled record as JSON to FILE")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:K or auto (default cpu)")
    parser.add_argument("--threads", type=int, default=1, metavar="T",
                        help="CPU threads for torch and BLAS; 1 (default) avoids oversubscription on "
                             "shared small machines, where the many small matrices gain nothing from more; "
                             "0 leaves the libraries' defaults")
    parser.add_argument("--calibrate", action="store_true",
                        help="instead of analysing runs: apply the rule to synthetic attention whose answer is "
                             "known and print how often it says observed")
    parser.add_argument("--draws", type=int, default=100, metavar="N", help="synthetic draws per case with --calibrate")


def expand_runs(patterns: list[str]) -> list[Path]:
    """Run folders from ``--run`` values, each a folder or a glob pattern (sorted matches)."""
    out = []
    for pattern in patterns:
        if any(ch in pattern for ch in "*?["):
            matches = sorted(glob.glob(pattern))
            if not matches:
                raise DataError(f"--run {pattern!r} matches no folder; check the pattern")
            out += [Path(m) for m in matches]
        else:
            out.append(Path(pattern))
    return out


def _num(v, fmt: str) -> str:
    return "n/a" if v is None or not np.isfinite(v) else format(v, fmt)


COLUMNS = ("layer", "same-class", "chance", "ratio [95% CI]", "perm q975", "untrained", "S8", "self", "pos", "S4",
           "r", "r'/r (pred)", "beta (R2)")


def layer_rows(pooled) -> list[list[str]]:
    """One row of strings per layer, in the order of ``COLUMNS``."""
    v = pooled.verdict
    rows = []
    for entry, ratio, ci, q, u in zip(pooled.layers, v.layers, v.layers_ci, v.permutation_null["layers_q975"],
                                      v.untrained_null["layers"]):
        s8 = entry.get("predicted_mass")
        rows.append([str(entry["layer"]), _num(entry["same_class_mass"], ".4f"), _num(entry["chance"], ".4f"),
                     f"{ratio:.2f}x [{ci[0]:.2f}, {ci[1]:.2f}]", f"{q:.2f}x", f"{u:.2f}x",
                     "n/a" if s8 is None else f"{s8 / entry['chance']:.2f}x",
                     _num(entry["self_mass"], ".4f"), _num(entry["positive_mass"], ".4f"),
                     _num(entry["predicted_same_class_mass"], ".4f"), _num(entry["relative_spread"], ".3f"),
                     f"{_num(entry.get('measured_r_ratio'), '.3f')} ({_num(entry.get('predicted_r_ratio'), '.3f')})",
                     f"{_num(entry['beta_eff'], '.2f')} ({_num(entry['beta_r2'], '.2f')})"])
    return rows


def _views(pooled) -> str:
    s = pooled.settings
    per = pooled.num_classes * s.per_class
    return str(s.tokens_per_batch // per) if per and s.tokens_per_batch % per == 0 else "?"


def _p(null: dict, name: str) -> str:
    p = null.get(f"{name}_p")
    return "n/a" if p is None else f"{p:.3f}"


def format_table(pooled) -> str:
    """The per-layer table, the statistics with both nulls, the runs and the verdict line."""
    rows = [list(COLUMNS)] + layer_rows(pooled)
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    v, s = pooled.verdict, pooled.settings
    pn, un = v.permutation_null, v.untrained_null
    unit = "seeds, batches inside each seed" if v.seeds > 1 else "analysis batches only: 1 seed"
    lines += [
        f"{v.seeds} seed(s) x {s.batches} disjoint batches of {s.tokens_per_batch} tokens ({pooled.num_classes} "
        f"classes x {s.per_class} samples x {_views(pooled)} views), {pooled.num_heads} heads, scope {s.scope}, split {s.split}; "
        f"intervals resample {unit}",
        f"EFFECT (last layer) {v.effect:.2f}x chance [{v.effect_ci[0]:.2f}, {v.effect_ci[1]:.2f}]   line {v.line}x   "
        f"permutation q975 {pn['effect_q975']:.2f}x (p {_p(pn, 'effect')})   untrained {un['effect']:.2f}x "
        f"(difference [{un['effect_difference_ci'][0]:+.2f}, {un['effect_difference_ci'][1]:+.2f}])",
        f"RISE (last - first) {v.rise:+.2f} [{v.rise_ci[0]:+.2f}, {v.rise_ci[1]:+.2f}]   permutation q975 "
        f"{pn['rise_q975']:+.2f} (p {_p(pn, 'rise')})   untrained {un['rise']:+.2f} (difference [{un['rise_difference_ci'][0]:+.2f}, "
        f"{un['rise_difference_ci'][1]:+.2f}])",
        f"SPEARMAN(depth) {v.spearman:+.2f} [{v.spearman_ci[0]:+.2f}, {v.spearman_ci[1]:+.2f}]",
    ]
    if len(pooled.per_run) > 1:
        lines.append("runs: " + "; ".join(f"{r['run']} (seed {r['train_seed']}, step {r['step']}): "
                                          f"{r['last_ratio']:.2f}x, alone {r['outcome']}" for r in pooled.per_run))
    lines.append(f"verdict: {v.label}: {v.decided_by}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from deepfusion.model.runs.devices import limit_threads, resolve_device

    for name in ("batches", "n_boot", "draws"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')}={getattr(args, name)} must be at least 1")
    if not args.calibrate and args.batches < 2:
        raise ConfigError(f"--batches={args.batches} must be at least 2: the verdict resamples analysis batches")
    if args.n_boot < 200:
        raise ConfigError(f"--n-boot={args.n_boot} is too few for a 95% interval; use at least 200")
    if args.n_perm < 200:
        raise ConfigError(f"--n-perm={args.n_perm} is too few for the permutation null; use at least 200")
    if args.per_class is not None and args.per_class < 2:
        raise ConfigError(f"--per-class={args.per_class} must be at least 2 (a token needs another sample of its class)")
    if args.calibrate:
        from deepfusion.experiments.calibration import calibrate, format_calibration

        with limit_threads(args.threads):
            print(format_calibration(calibrate(draws=args.draws, seed=args.seed)))
        return 0
    if not args.run:
        raise ConfigError("give a run folder with --run DIR (repeat it for several seeds), or --calibrate")
    device = resolve_device(args.device, option="--device")
    runs = expand_runs(args.run)
    with limit_threads(args.threads):
        pooled = analyze_runs(runs, args, device)
    print(format_table(pooled))
    if args.out:
        from deepfusion.model.runs.layout import write_json

        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        write_json(args.out, pooled.to_json())
        print(f"written: {args.out}")
    return 0


def analyze_runs(runs: list[Path], args, device):
    """Analyse each run (or reuse its analysis), then pool them."""
    from deepfusion.experiments.analyze import analyze_run
    from deepfusion.experiments.pooling import check_runs, pool, seedless_hash

    cfgs = check_runs(runs)
    records = []
    for path in runs:
        records.append(analyze_run(path, batches=args.batches, per_class=args.per_class, seed=args.seed,
                                   device=device, split=args.split, views=args.views, n_perm=args.n_perm,
                                   n_boot=args.n_boot, force=args.force))
        print(f"analysed: {path} (checkpoint step {records[-1].step}; record in its analysis.json)")
    return pool(records, seedless_hash(cfgs[0]), n_boot=args.n_boot, seed=args.seed)
