"""The main job: check the theory, run the sanity experiments, compare heads, draw every figure.

Steps, in order, each writing into --out:
  1. theory      every symbolic, numeric and property check of S1-S15 (deepfusion verify)
  2. sanity      idealised layers against the mean-field recursion, and a small trained head
                 on synthetic data measured layer by layer (deepfusion sanity)
  3. figures     F1-F5 (deepfusion figures): attention maps and same-class mass of a trained
                 digits run against the S4 prediction, theory plots, the head comparison over
                 --seeds seeds (transformer vs MLP with/without BatchNorm vs FFN blocks), ablations
and ends with a summary table (summary.md, summary.json): checks passed, Deep Fusion verdicts,
head comparison.

  --quick   CPU-sized everywhere (quick theory checks, short sanity runs, digits figures); about
            2-4 minutes on two idle CPU cores, longer on a busy machine
  default   full theory checks and sanity runs; figures on digits, or with --data on the
            paper's datasets (CIFAR-10/100, Tiny-ImageNet; a GPU is expected)

  --paper   the paper's regime instead (FINDINGS 4c, 4e): paper_cpu as is, at temperature 0.1
            and with mask_pair (seeds 1-6 each) and at temperature 0.5 (seeds 4-9), judged under
            rule v3; ablations of batch size, temperature and weight decay, 3 seeds each; F7 and
            paper_regime.json in --out/paper. 39 runs of 21-28 minutes each with their analysis,
            two at a time: about 8 hours on 2 cores, resumed from the cache when stopped. With
            --data DIR (CIFAR-10 under DIR/cifar-10-batches-py) the same study runs the cifar10
            preset, on a GPU.

Training runs are cached by their resolved config under --out/runs, so a second call only
redraws. Examples:
  deepfusion reproduce --quick
  deepfusion reproduce --out results --data ~/datasets
  deepfusion reproduce --paper --out results
"""

from __future__ import annotations

import argparse
import shlex
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from deepfusion.errors import CheckFailed, ConfigError, DataError

if TYPE_CHECKING:  # the records' modules import numpy and scipy; annotations only here
    from deepfusion.experiments.record import PooledAnalysis
    from deepfusion.experiments.sanity_record import SanityResult

# Every step's module (the theory checks, the studies, the figures) is imported inside the function that
# runs it: `deepfusion --help` and argument errors must not pay torch's ~2 s import.

SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
SUMMARY_VERSION = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="CPU-sized run of every step (2-4 min on 2 idle cores)")
    parser.add_argument(
        "--out", type=Path, default=Path("results"), help="folder for everything the job writes (default: results)"
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="dataset folder: figures on CIFAR-10/100 and Tiny-ImageNet instead of digits (not with --quick)",
    )
    parser.add_argument(
        "--seeds", type=int, default=None, help="seeds per head in the head comparison (default: 3; not with --paper)"
    )
    parser.add_argument(
        "--paper",
        action="store_true",
        help="instead of the three steps: the paper's regime (paper_cpu; with --data, CIFAR-10 at the paper's "
        "preset on a GPU): Deep Fusion per arm under rule v3 (6 seeds each), the ablations (3 seeds each) and F7, "
        "from the run cache under --out/runs; it resumes where it stopped",
    )
    parser.add_argument(
        "--skip-ablations", action="store_true", help="with --paper: the arms alone (18 runs instead of 33)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="T",
        help="CPU threads for torch and BLAS (default 1: fastest for these small models on "
        "a busy machine; 0 = library default)",
    )


@dataclass(frozen=True)
class TheorySummary:
    passed: int
    total: int  # checks run (skipped ones not counted)
    failed: list[str]  # "statement kind name" of each check that did not pass


@dataclass(frozen=True)
class HeadRow:
    """One line of F4's table: a head's accuracy (%) on one dataset and metric over seeds."""

    dataset: str
    head: str
    metric: str
    mean: float
    std: float  # sample standard deviation; nan with one seed
    n: int


@dataclass
class ReproduceSummary:
    """What the main job found, built from the records its steps returned (nothing read back)."""

    quick: bool
    theory: TheorySummary
    sanity: SanityResult
    deep_fusion: PooledAnalysis  # F2's seeds judged together
    deep_fusion_runs: list[str]  # the runs F2 pooled, described
    heads: list[HeadRow]  # F4's table
    files: list[str]  # every file the figures wrote, relative to the figures folder
    index: str
    wall_s: float
    version: int = SUMMARY_VERSION

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "ReproduceSummary":
        from deepfusion.experiments.record import PooledAnalysis
        from deepfusion.experiments.sanity_record import SanityResult

        if not isinstance(data, dict) or data.get("version") != SUMMARY_VERSION:
            raise DataError(f"{SUMMARY_JSON} is not a version-{SUMMARY_VERSION} summary; rerun deepfusion reproduce")
        return cls(
            **{
                **data,
                "theory": TheorySummary(**data["theory"]),
                "sanity": SanityResult.from_json(data["sanity"]),
                "deep_fusion": PooledAnalysis.from_json(data["deep_fusion"]),
                "heads": [HeadRow(**h) for h in data["heads"]],
            }
        )


def theory_step(quick: bool, log) -> TheorySummary:
    """Every check of S1-S15 (``deepfusion verify``), its table logged."""
    from deepfusion.commands.verify import run_checks, table  # the checks' runner lives in the verify command

    results = run_checks(quick)
    log(table(results))
    ran = [r for r in results if r["status"] != "skip"]
    return TheorySummary(
        sum(r["status"] == "pass" for r in ran),
        len(ran),
        [f"{r['statement']} {r['kind']} {r['name']}" for r in ran if r["status"] != "pass"],
    )


def head_rows(rows) -> list[HeadRow]:
    """F4's table rows ``(dataset, head, metric, [per-seed %])`` summarised over seeds."""
    from deepfusion.paper_figures.runs import summarize

    out = []
    for dataset, head, metric, values in rows:
        s = summarize(values)
        out.append(HeadRow(dataset, head, metric, s.mean, s.std, s.n))
    return out


def summarize_records(
    quick: bool, theory: TheorySummary, sanity: SanityResult, figures: list, out_dir: Path, wall_s: float
) -> ReproduceSummary:
    """The summary from the steps' records: F2's pooled record and F4's rows are the ones the figure
    steps returned (``FigureRecord.study``: F2's ``SeedStudy``, F4's rows)."""
    by_key = {r.key: r for r in figures}
    f2, f4 = by_key.get("F2"), by_key.get("F4")
    if f2 is None or f2.study is None or f4 is None or f4.study is None:
        raise DataError("the figure steps returned no F2 or F4 record; the summary needs both")
    return ReproduceSummary(
        quick,
        theory,
        sanity,
        f2.study.pooled,
        list(f2.study.runs),
        head_rows(f4.study),
        sorted(str(Path(p).relative_to(out_dir)) for r in figures for p in r.paths),
        str(out_dir / "index.md"),
        wall_s,
    )


def _ci(ci) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "[no interval: 1 seed]"


def summary_markdown(summary: ReproduceSummary) -> str:
    """The closing table: one line per step, then the head comparison."""
    t, v = summary.theory, summary.deep_fusion.verdict
    trained = summary.sanity.trained.transformer if summary.sanity.trained else None
    runs = summary.deep_fusion_runs
    lines = [
        "| step | result |",
        "|---|---|",
        f"| theory checks | {t.passed}/{t.total} passed |",
        f"| sanity (a): idealised layers vs recursion | {'agree' if summary.sanity.passed else 'DISAGREE'} |",
        "| sanity (b): synthetic transformer head, 1 seed | "
        + (f"{trained.verdict}: {trained.decided_by} |" if trained else "not run |"),
        f"| Deep Fusion, {runs[0]} and {len(runs) - 1} more seed(s) | {v.label}: last layer {v.effect:.2f}x "
        f"chance {_ci(v.effect_ci)}; {v.decided_by} |",
        "",
        "| dataset | head | metric | mean % | std | seeds |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {h.dataset} | {h.head} | {h.metric} | {h.mean:.2f} | {h.std:.2f} | {h.n} |" for h in summary.heads]
    lines.append(f"\nfigures: {summary.index}; wall time {summary.wall_s:.0f} s")
    return "\n".join(lines)


def failures(summary: ReproduceSummary) -> list[str]:
    """What makes the job fail: theory checks that did not pass, and (a) of sanity disagreeing."""
    return summary.theory.failed + ([] if summary.sanity.passed else ["sanity (a)"])


def reproduce(out: Path, quick: bool, data=None, seeds: int = 3, log=print) -> ReproduceSummary:
    """Run the three steps into ``out``; returns (and writes) the summary record."""
    from deepfusion.experiments.runs import default_workers
    from deepfusion.experiments.sanity import format_summary
    from deepfusion.experiments.studies.sanity import run_sanity
    from deepfusion.model.runs.layout import write_json, write_text_atomic
    from deepfusion.paper_figures.build import build_figures
    from deepfusion.paper_figures.runs import check_data

    out = Path(out)
    quick_figures = quick or data is None
    if not quick_figures:
        check_data(False, data)  # a wrong --data fails before an hour of theory checks, not after
    start = time.perf_counter()
    log(f"== 1/3 theory checks ({'quick' if quick else 'full'})")
    theory = theory_step(quick, log)
    log(f"== 2/3 sanity experiments ({'quick' if quick else 'full'})")
    sanity = run_sanity(out / "sanity", quick=quick, check=False)
    log(format_summary(sanity))
    log(f"== 3/3 figures ({'digits, CPU' if quick_figures else f'paper datasets in {data}'})")
    figures = build_figures(
        out / "figures",
        quick=quick_figures,
        data=data,
        results_root=out / "runs",
        seeds=seeds,
        log=log,
        workers=default_workers(),
    )
    summary = summarize_records(quick, theory, sanity, figures, out / "figures", time.perf_counter() - start)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / SUMMARY_JSON, summary.to_json(), indent=1)
    write_text_atomic(out / SUMMARY_MD, summary_markdown(summary) + "\n")
    return summary


MINUTES_PER_PAPER_CPU_RUN = 25  # one paper_cpu run and its analysis, two at a time on the 2-core CPU (FINDINGS 4d)


def reproduce_paper(
    out: Path, data=None, ablations: bool = True, workers: int | None = None, log=print, base=None, design=None
):
    """The paper-regime study into ``out`` (runs under ``out/runs``, F7 and the record under
    ``out/paper``); returns its ``PaperRegime`` record. ``base`` and ``design`` replace the preset
    and the study's arms and sweeps (tests run it small)."""
    from deepfusion.experiments.runs import default_workers, is_finished, prefetch, run_dir_for
    from deepfusion.experiments.studies import paper_regime as study
    from deepfusion.model.runs.layout import write_json
    from deepfusion.paper_figures import f7_paper_regime, index
    from deepfusion.paper_figures.runs import check_data

    if data is not None:
        check_data(False, data)
    out, base, design = Path(out), base or study.base_spec(data), design or study.Design()
    workers = workers or default_workers()
    specs = study.needed(base, design, ablations=ablations)
    todo = [s for s in specs if not is_finished(run_dir_for(s.config(), out / "runs"), s.config())]
    at_once = max(1, min(workers, len(todo)))
    hours = len(todo) * MINUTES_PER_PAPER_CPU_RUN / 60 / at_once
    about = f"; about {hours:.1f} hours on this CPU, {at_once} at a time" if data is None and todo else ""
    log(f"== paper regime ({base.describe()}): {len(specs)} runs, {len(todo)} still to train{about}")
    prefetch(specs, out / "runs", workers=workers, log=log, what="reproduce --paper")
    record = study.paper_regime(out / "runs", base, design, ablations=ablations, log=log)
    (out / "paper").mkdir(parents=True, exist_ok=True)
    write_json(out / "paper" / "paper_regime.json", record.to_json(), indent=1)
    command = shlex.join(
        ["deepfusion", "reproduce", "--paper", "--out", str(out)]
        + (["--data", str(data)] if data is not None else [])
        + ([] if ablations else ["--skip-ablations"])
    )
    figure = f7_paper_regime.make(record, out / "paper", command)
    index.write_index([figure], out / "paper")
    return record


def run(args: argparse.Namespace) -> int:
    from deepfusion.experiments.pool import stopped
    from deepfusion.model.runs.devices import limit_threads

    if args.quick and args.data is not None:
        raise ConfigError("--quick runs on bundled digits; drop --data, or drop --quick to use the paper's datasets")
    if args.paper:
        return _run_paper(args)
    if args.skip_ablations:
        raise ConfigError("--skip-ablations applies only with --paper")
    with limit_threads(args.threads), stopped("reproduce") as outcome:
        summary = reproduce(args.out, args.quick, args.data, 3 if args.seeds is None else args.seeds)
    if outcome["exit"]:
        return outcome["exit"]
    print("\n== summary\n" + summary_markdown(summary))
    print(f"written: {args.out / SUMMARY_MD}, {args.out / SUMMARY_JSON}")
    failed = failures(summary)
    if failed:
        raise CheckFailed("checks failed: " + "; ".join(failed))
    return 0


def _run_paper(args: argparse.Namespace) -> int:
    from deepfusion.experiments.pool import stopped
    from deepfusion.experiments.studies.paper_regime import format_paper_regime
    from deepfusion.model.runs.devices import limit_threads

    if args.quick:
        raise ConfigError("--paper is the paper's regime, hours of training; it has no --quick version")
    if args.seeds is not None:
        raise ConfigError("--seeds sets the head comparison's seeds; --paper's seeds are fixed by its plan")
    with limit_threads(args.threads), stopped("reproduce --paper") as outcome:
        record = reproduce_paper(args.out, args.data, ablations=not args.skip_ablations)
    if outcome["exit"]:
        return outcome["exit"]
    print("\n" + format_paper_regime(record))
    print(f"written: {args.out / 'paper' / 'paper_regime.json'}, {args.out / 'paper' / 'index.md'}")
    return 0
