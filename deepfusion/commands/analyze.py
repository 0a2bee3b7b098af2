"""Measure a trained head's attention layer by layer and hold it against the theory.

Draws fixed, class-balanced analysis batches from the run's test split, captures every layer's
attention and tokens, and prints one row per layer:

  same-class   mean attention on other samples of the token's class (self and its positive
               view excluded), then its excess over uniform attention with a 95% bootstrap interval
  self, pos    attention on the token itself and on its other augmented view
  S4, gap      the mass S4 predicts from the layer's spread r, class-mean cosine and beta_eff,
               and measured minus predicted
  beta (R2)    effective inverse temperature fitted from attention against token cosines
  r            relative within-class spread of the layer's input tokens (0 = fully fused)
  erank, dist  effective rank of the attention and its distance to the ideal block matrix

then the pre-registered Deep Fusion verdict (experiments/verdict.py). analysis.json and
attention.npz are written into the run folder. Example:

  deepfusion analyze --run runs/digits-1a2b3c4d --batches 5 --per-class 16
"""

from __future__ import annotations

import argparse

import numpy as np

from deepfusion.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, metavar="DIR", help="run folder written by deepfusion train")
    parser.add_argument("--batches", type=int, default=5, metavar="N",
                        help="analysis batches (seeds S, S+1, ...); the bootstrap resamples them (default 5)")
    parser.add_argument("--per-class", type=int, default=16, metavar="K",
                        help="samples of every class in a batch; the head sees 2 views of each (default 16)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the first analysis batch (default 0)")
    parser.add_argument("--views", choices=("two_views", "eval_view"), default="two_views",
                        help="two_views: augmented training input (default); eval_view: unaugmented, "
                             "so each token's positive is an exact copy")
    parser.add_argument("--split", choices=("test", "train"), default="test", help="data split to draw from (default test)")
    parser.add_argument("--n-boot", type=int, default=2000, metavar="B", help="bootstrap resamples (default 2000)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:K or auto (default cpu)")
    parser.add_argument("--threads", type=int, default=1, metavar="T",
                        help="CPU threads for torch and BLAS; 1 (default) avoids oversubscription on "
                             "shared small machines, where the many small matrices gain nothing from more; "
                             "0 leaves the libraries' defaults")


def _mean(x) -> float:
    a = np.asarray(x, dtype=np.float64)
    return float(np.nanmean(a)) if a.size and np.isfinite(a).any() else float("nan")


def _num(v: float, fmt: str) -> str:
    return "nan" if not np.isfinite(v) else format(v, fmt)


COLUMNS = ("layer", "same-class", "excess [95% CI]", "self", "pos", "S4", "gap", "beta (R2)", "r", "erank", "dist")


def layer_rows(record: dict) -> list[list[str]]:
    """One row of strings per layer (head values averaged), in the order of ``COLUMNS``."""
    gaps = record["verdict_record"].get("gap_measured_minus_predicted", [float("nan")] * record["num_layers"])
    rows = []
    for entry, gap in zip(record["layers"], gaps):
        lo, hi = entry["excess_ci"]
        rows.append([
            str(entry["layer"]),
            _num(_mean(entry["same_class_mass"]), ".4f"),
            f"{_num(entry['excess_mean'], '+.4f')} [{_num(lo, '+.4f')}, {_num(hi, '+.4f')}]",
            _num(_mean(entry["self_mass"]), ".4f"),
            _num(_mean(entry["positive_mass"]), ".4f"),
            _num(_mean(entry["predicted_same_class_mass"]), ".4f"),
            _num(float("nan") if gap is None else gap, "+.4f"),
            f"{_num(_mean(entry['beta_eff']), '.2f')} ({_num(_mean(entry['beta_r2']), '.2f')})",
            _num(entry["tokens"]["relative_spread"], ".3f"),
            _num(_mean(entry["effective_rank"]), ".1f"),
            _num(_mean(entry["block_distance"]), ".3f"),
        ])
    return rows


def format_table(record: dict) -> str:
    """The per-layer table, the output tokens' statistics, the chance levels and the verdict line."""
    rows = [list(COLUMNS)] + layer_rows(record)
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    out, ch, s = record["output_tokens"], record["chance"], record["settings"]
    v = record["verdict_record"]
    lines += [
        f"output tokens: r {_num(out['relative_spread'], '.3f')}, residual ratio {_num(out['residual_ratio'], '.3f')}, "
        f"NC1 {_num(out['nc1'], '.3f')}",
        f"chance: same-class {ch['same_class_mass']:.4f}, positive {ch['positive_mass']:.4f}  "
        f"({s['batches']} batches x {s['tokens_per_batch']} tokens, {record['num_classes']} classes, "
        f"{record['num_heads']} heads, scope {s['scope']}, views {s['views']}, split {s.get('split', '?')})",
        f"S4 mean |gap| {_num(v.get('mean_abs_gap', float('nan')), '.4f')}; Spearman(depth, excess) "
        f"{v['spearman']:+.2f} [{v['spearman_ci95'][0]:+.2f}, {v['spearman_ci95'][1]:+.2f}], "
        f"last - first {v['last_minus_first']:+.4f}",
        f"verdict: {record['verdict']}",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from deepfusion.experiments.analyze import analyze_run
    from deepfusion.model.runs.layout import RunFolder
    from deepfusion.model.runs.devices import limit_threads, resolve_device

    for name in ("batches", "per_class", "n_boot"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')}={getattr(args, name)} must be at least 1")
    device = resolve_device(args.device, option="--device")
    with limit_threads(args.threads):
        record = analyze_run(args.run, batches=args.batches, per_class=args.per_class, seed=args.seed,
                             device=device, split=args.split, views=args.views, n_boot=args.n_boot)
    print(format_table(record))
    print(f"written: {RunFolder(args.run).analysis}")
    return 0
