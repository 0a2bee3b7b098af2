"""Compare projection heads trained on the same seeds: transformer minus each other head, paired by seed.

Give the run folders of one config trained with several heads (model.head) and seeds (train.seed),
e.g. the four registered heads x 6 seeds of fashion_mnist_cpu. For one seed every head starts from
the same backbone weights and sees the same batches and augmented views, so the seed is the unit:
each metric's difference transformer minus other head is taken within a seed, then averaged over
seeds with a 95% t-interval (n - 1 degrees of freedom; none for one seed). The runs must differ
only in model.head and train.seed, every head must have the same seeds, and every run a finished
eval.json; otherwise one line names what differs.

Printed: per head its number of seeds and the mean accuracy (%) over seeds of
  backbone kNN     weighted kNN on frozen backbone features (head dropped)
  linear probe     logistic regression on frozen backbone features
  head kNN         kNN on the head's outputs (the authors' evaluation uses the head output)
  head LOO 1-NN    the authors' leave-one-out 1-NN within test batches of head outputs
  random kNN, random linear   the same backbone re-initialised (untrained), evaluated alike
then, per other head, the paired difference in percentage points: mean [95% interval] over seeds;
then, per head, its trained backbone minus the random backbone (the null it must beat), paired alike.

Examples:
  deepfusion heads --run 'results/heads/*'
  deepfusion heads --run 'results/heads/*_s[1-6]' --json heads.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from deepfusion.errors import DataError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="DIR",
        help="a run folder, or a quoted glob matching several (files it matches, such as logs, "
        "are skipped); repeat for more",
    )
    parser.add_argument(
        "--json",
        metavar="OUT",
        default=None,
        help="also write the comparison record (per-seed values and paired differences) as JSON to OUT",
    )


def _pct(v: float) -> str:
    return f"{v:.1f}"


def _diff(d) -> str:
    if d.low is None:
        return f"{d.mean:+.1f} [n/a]"
    return f"{d.mean:+.1f} [{d.low:+.1f}, {d.high:+.1f}]"


def format_table(rec) -> str:
    """The three tables: means per head, the paired differences between heads, and each head's gain
    over the random backbone, with their intervals."""
    from deepfusion.experiments.studies.head_comparison import BASELINE_OF, BASELINES, METRICS

    short = {
        "knn": "backbone kNN",
        "linear": "linear probe",
        "head_knn": "head kNN",
        "head_loo1nn": "head LOO 1-NN",
        "random_knn": "random kNN",
        "random_linear": "random linear",
    }
    seeds = ",".join(map(str, rec.seeds))
    lines = [f"heads compared on {rec.preset} (config {rec.config_hash}, seeds {seeds}); accuracy %, mean over seeds"]
    cols = [*METRICS, *BASELINES]
    width = max(len(h.label) for h in rec.heads) + 2
    lines.append(f"{'head':<{width}}{'n':>3}" + "".join(f"{short[c]:>15}" for c in cols))
    for h in rec.heads:
        lines.append(f"{h.label:<{width}}{len(rec.seeds):>3}" + "".join(f"{_pct(h.mean(c)):>15}" for c in cols))
    lines += [
        "",
        f"{rec.head(rec.reference).label} minus each head, paired by seed: mean "
        f"[{100 * rec.level:.0f}% t-interval over seeds], percentage points",
    ]
    lines.append(f"{'other head':<{width}}{'n':>3}" + "".join(f"{short[c]:>22}" for c in METRICS))
    for h in rec.heads[1:]:
        cells = [_diff(rec.difference(h.head, m)) for m in METRICS]
        lines.append(f"{h.label:<{width}}{len(rec.seeds):>3}" + "".join(f"{c:>22}" for c in cells))
    lines += [
        "",
        "trained backbone minus the same backbone re-initialised (random), paired by seed: mean "
        f"[{100 * rec.level:.0f}% t-interval], percentage points",
    ]
    lines.append(f"{'head':<{width}}{'n':>3}" + "".join(f"{short[m]:>22}" for m in BASELINE_OF))
    for h in rec.heads:
        lines.append(
            f"{h.label:<{width}}{len(rec.seeds):>3}" + "".join(f"{_diff(rec.gain(h.head, m)):>22}" for m in BASELINE_OF)
        )
    lines += ["", *format_calls(rec, width)]
    return "\n".join(lines)


def format_calls(rec, width: int) -> list[str]:
    """The decision rule's calls (experiments/FINDINGS.md 6b) on the primary metrics."""
    from deepfusion.experiments.studies.head_comparison import METRICS, MIN_SEEDS, PRIMARY, decide

    calls = decide(rec)
    level = calls[0].level if calls else 1.0
    lines = [
        f"rule: {rec.head(rec.reference).label} minus each head on {' and '.join(METRICS[m] for m in PRIMARY)}, "
        f"{100 * level:.2f}% t-intervals (Bonferroni over {len(calls)}); better/worse when the interval "
        "excludes 0"
    ]
    for c in calls:
        ci = "n/a" if c.low is None else f"[{c.low:+.2f}, {c.high:+.2f}]"
        lines.append(f"{rec.head(c.other).label:<{width}}{METRICS[c.metric]:>22}  {c.mean:+.2f} {ci:<17} {c.call}")
    if len(rec.seeds) < MIN_SEEDS:
        lines.append(f"{len(rec.seeds)} seed(s): exploratory (the rule decides from {MIN_SEEDS} seeds)")
    return lines


def run(args: argparse.Namespace) -> int:
    from deepfusion.experiments.pooling import expand_runs
    from deepfusion.experiments.studies.head_comparison import compare_heads
    from deepfusion.model.runs.layout import write_json

    if not args.run:
        raise DataError("no run folder given; pass --run DIR (repeat it, or give a quoted glob)")
    rec = compare_heads(expand_runs(args.run))
    print(format_table(rec))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(out, rec.to_json())
        print(f"written: {out}")
    return 0
