"""Synthetic sanity experiments: idealised layers against the theory, and a small trained head.

(a) Untrained idealised layers (softmax on cosines, identity values, residual, unit sphere;
    theory/simulation.py) on Gaussian class tokens (C=4, n=64, d=2048, 10 layers) against the
    mean-field recursion of S5 (theory.fusion.mean_field), in the fast-fusion, slow and
    self-attention-trap regimes, with the theory's own tolerances on the block mass m and the
    spread r. Fast fusion must shrink r a hundredfold and the trap must leave it in place, in both
    the simulation and the recursion. Any disagreement fails the command (exit status 1).
(b) The real TransformerHead trained with NT-Xent on the synthetic Gaussian mixture (preset
    synthetic, MLP backbone), analysed like deepfusion analyze, next to the feed-forward head
    (model.head=ffn) whose per-block features get the same spread, NC1 and residual statistics.
    Part (b) is measured and reported, never judged: trained heads need not fuse.

A summary table is printed and sanity.json written to --out. The runs of (b) live in the run
cache --out/runs/, one folder per config: a later call with the same budget reuses them (and
prints the training time they recorded) instead of training again. The full command takes a few
minutes on two CPU cores, --quick well under two.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from deepfusion.errors import CheckFailed

# experiments.sanity (torch, the theory) is imported inside run(): `deepfusion --help` must not pay for it.


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="one seed in (a), a shorter training budget in (b)")
    parser.add_argument(
        "--out",
        default="results/sanity",
        metavar="DIR",
        help="folder for sanity.json and the runs of (b) (default results/sanity)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="T",
        help="CPU threads for torch and BLAS (default 1, best on small shared machines; 0 = library default)",
    )


def run(args: argparse.Namespace) -> int:
    from deepfusion.experiments.sanity import format_summary
    from deepfusion.experiments.sanity_record import SANITY_FILE
    from deepfusion.experiments.studies.sanity import run_sanity
    from deepfusion.model.runs.devices import limit_threads

    with limit_threads(args.threads):
        result = run_sanity(args.out, quick=args.quick, check=False)  # print the table before failing
    print(format_summary(result))
    print(f"written: {Path(args.out) / SANITY_FILE} ({result.wall_s:.0f} s)")
    if not result.passed:
        raise CheckFailed(
            f"idealised layers disagree with the mean-field recursion; see {Path(args.out) / SANITY_FILE}"
        )
    return 0
