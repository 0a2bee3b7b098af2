"""Regenerate the paper's figures and tables (F1-F5) into one folder, with an index.

F1 label-sorted attention maps per layer; F2 same-class attention mass against depth beside the
S4/S5 prediction; F3 theory plots; F4 the head comparison table (transformer vs MLP with and
without BatchNorm vs FFN blocks, over seeds); F5 ablations (batch size, temperature, weight decay,
depth). Every figure is written as PNG and PDF, tables also as Markdown and CSV, and index.md /
index.html show each one with its caption and the command that made it.

Runs are trained once and cached under --results, keyed by the hash of their resolved config: a
second call reuses finished runs, a changed config trains anew.

  --quick   CPU-sized: the bundled digits data (F4: 4 heads x --seeds runs; F5: ~9 short runs)
  default   the paper-scale presets cifar10, cifar100, tiny_imagenet on the folder given by --data
            (a GPU is expected; training takes hours to days)

  --run DIR  (repeatable) your own trained runs instead: per run, label-sorted attention maps per
            layer, and the same-class attention ratio against depth for all of them (pooled over
            seeds when the runs differ only in train.seed); runs not yet analysed are analysed
            first (deepfusion analyze's defaults)

  --heads DIR  (repeatable, or a quoted glob) whole-model runs of one config trained with several
            heads (model.head) on the same seeds (train.seed), as deepfusion heads takes them: F4
            paired by seed (per seed each head's accuracy, and transformer minus each head with its
            95% t-interval over seeds); the index lists every run and seed behind it

  --paper-record FILE  a saved paper-regime record (deepfusion reproduce --paper's
            paper/paper_regime.json, or experiments/paper_regime_cpu.json in the repository): F7
            drawn from it, nothing trained

Each figure's command in the index regenerates it into the same folder (--out).

Examples:
  deepfusion figures --run runs/mydata-0123456789 --out my_figures
  deepfusion figures --quick --out figures
  deepfusion figures --heads 'results/heads/*' --out heads_figures
  deepfusion figures --paper-record experiments/paper_regime_cpu.json --out f7
  deepfusion figures --only F3
  deepfusion figures --data ~/datasets --out paper --seeds 3
"""

from __future__ import annotations

import argparse
from pathlib import Path

from deepfusion.errors import ConfigError
from deepfusion.paper_figures import runs

# build, pool and the run expansion are imported inside run(): `deepfusion --help` and argument errors must
# not pay torch's ~2 s import (paper_figures.runs above is light: it imports torch only when training).


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick", action="store_true", help="CPU-sized figures on bundled digits instead of the paper's datasets"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("figures"), help="folder for figures, tables and the index (default: figures)"
    )
    parser.add_argument("--data", type=Path, default=None, help="folder holding the datasets; needed without --quick")
    parser.add_argument(
        "--results",
        type=Path,
        default=runs.DEFAULT_RESULTS,
        help=f"result cache: one run folder per config hash (default: {runs.DEFAULT_RESULTS})",
    )
    parser.add_argument(
        "--only", default=None, metavar="F1,F3,...", help="comma-separated figures to make (default: all)"
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds per head for the F4 table (default: 3)")
    parser.add_argument("--ablation-seeds", type=int, default=1, help="seeds per swept value for F5 (default: 1)")
    parser.add_argument(
        "--run",
        action="append",
        default=None,
        metavar="RUN_DIR",
        help="a trained run folder of your own, or a quoted glob as in analyze (repeat for "
        "several); draws its attention maps and per-layer same-class ratios instead of the "
        "paper's figures",
    )
    parser.add_argument(
        "--heads",
        action="append",
        default=None,
        metavar="RUN_DIR",
        help="a run folder or a quoted glob (repeat for several) of runs of one config that differ "
        "only in model.head and train.seed: draws F4 paired by seed from them instead of the "
        "paper's figures (as deepfusion heads compares them)",
    )
    parser.add_argument(
        "--paper-record",
        type=Path,
        default=None,
        metavar="FILE",
        help="a saved paper-regime record (reproduce --paper's paper/paper_regime.json, or the "
        "project's experiments/paper_regime_cpu.json): draws F7 from it, training nothing",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="runs trained at once, one process and one CPU thread each (default: 2 on a CPU "
        "with 2 or more cores, 1 with a GPU)",
    )


def _given(args: argparse.Namespace, *flags: str) -> list[str]:
    """Which of ``flags`` the command line set (an option left at its default of None, False or [] is not)."""
    return [f for f in flags if getattr(args, f.lstrip("-").replace("-", "_")) not in (None, False, [])]


def run(args: argparse.Namespace) -> int:
    from deepfusion.experiments.pool import stopped
    from deepfusion.experiments.pooling import expand_runs
    from deepfusion.experiments.runs import default_workers
    from deepfusion.paper_figures.build import (
        build_figures,
        build_head_figures,
        build_paper_figure,
        build_run_figures,
        parse_only,
    )

    if args.paper_record is not None:
        clash = _given(args, "--quick", "--data", "--only", "--run", "--heads")
        if clash:
            raise ConfigError(
                f"--paper-record draws F7 from a saved record and cannot be combined with {', '.join(clash)}; "
                "drop one or the other"
            )
        build_paper_figure(args.paper_record, args.out)
        return 0

    if args.heads:
        clash = _given(args, "--quick", "--data", "--only", "--run")
        if clash:
            raise ConfigError(
                f"--heads draws F4 from your head runs and cannot be combined with {', '.join(clash)}; "
                "drop one or the other"
            )
        build_head_figures(expand_runs(args.heads, "--heads"), args.out, patterns=args.heads)
        return 0

    if args.run:
        clash = _given(args, "--quick", "--data", "--only")
        if clash:
            raise ConfigError(
                f"--run draws your own runs and cannot be combined with {', '.join(clash)}; drop one or the other"
            )
        build_run_figures(expand_runs(args.run), args.out)
        return 0

    with stopped("figures") as outcome:
        build_figures(
            args.out,
            quick=args.quick,
            data=args.data,
            results_root=args.results,
            only=parse_only(args.only),
            seeds=args.seeds,
            ablation_seeds=args.ablation_seeds,
            workers=args.workers or default_workers(),
        )
    return outcome["exit"]
