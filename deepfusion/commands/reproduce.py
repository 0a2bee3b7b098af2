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

Training runs are cached by their resolved config under --out/runs, so a second call only
redraws. Examples:
  deepfusion reproduce --quick
  deepfusion reproduce --out results --data ~/datasets
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

from deepfusion.errors import CheckFailed
from deepfusion.model.runs.layout import write_json, write_text_atomic

SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="CPU-sized run of every step (2-4 min on 2 idle cores)")
    parser.add_argument("--out", type=Path, default=Path("results"),
                        help="folder for everything the job writes (default: results)")
    parser.add_argument("--data", type=Path, default=None,
                        help="dataset folder: figures on CIFAR-10/100 and Tiny-ImageNet instead of digits (not with --quick)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per head in the head comparison (default: 3)")
    parser.add_argument("--threads", type=int, default=1, metavar="T",
                        help="CPU threads for torch and BLAS (default 1: fastest for these small models on "
                             "a busy machine; 0 = library default)")


def _theory(quick: bool, log) -> dict:
    from deepfusion.commands.verify import run_checks, table

    results = run_checks(quick)
    log(table(results))
    ran = [r for r in results if r["status"] != "skip"]
    passed = sum(r["status"] == "pass" for r in ran)
    return {"passed": passed, "total": len(ran), "ok": passed == len(ran),
            "failed": [f"{r['statement']} {r['kind']} {r['name']}" for r in ran if r["status"] != "pass"]}


def _sanity(out_dir: Path, quick: bool, log) -> dict:
    from deepfusion.experiments.sanity import format_summary, run_sanity

    result = run_sanity(out_dir, quick=quick, check=False)
    log(format_summary(result))
    trained = result.trained.transformer if result.trained else None
    return {"ok": result.passed, "verdict": trained.verdict if trained else None,
            "decided_by": trained.decided_by if trained else None}


def _figures(out_dir: Path, runs_dir: Path, quick_figures: bool, data, seeds: int, log) -> dict:
    from deepfusion.experiments.studies.deep_fusion import analyze_runs
    from deepfusion.paper_figures import f2_block_mass
    from deepfusion.paper_figures.build import build_figures
    from deepfusion.paper_figures.runs import default_workers

    records = build_figures(out_dir, quick=quick_figures, data=data, results_root=runs_dir, seeds=seeds, log=log,
                            workers=default_workers())
    results = f2_block_mass.seed_runs(quick_figures, data, runs_dir, seeds)  # cached: no training here
    pooled = analyze_runs([r.run_dir for r in results])
    heads = []
    with (out_dir / "f4_head_comparison.csv").open() as f:
        for row in csv.DictReader(f):
            heads.append({k: row[k] for k in ("dataset", "head", "metric", "mean", "std", "n")})
    return {"files": sorted(str(p.relative_to(out_dir)) for r in records for p in r.paths),
            "index": str(out_dir / "index.md"),
            "verdict": pooled.verdict.label, "decided_by": pooled.verdict.decided_by,
            "verdict_runs": f"{results[0].spec.describe()} and {len(results) - 1} more seed(s)",
            "effect": pooled.verdict.effect, "effect_ci": pooled.verdict.effect_ci, "heads": heads}


def summary_markdown(summary: dict) -> str:
    """The closing table: one line per step, then the head comparison."""
    t, s, f = summary["theory"], summary["sanity"], summary["figures"]
    lines = ["| step | result |", "|---|---|",
             f"| theory checks | {t['passed']}/{t['total']} passed |",
             f"| sanity (a): idealised layers vs recursion | {'agree' if s['ok'] else 'DISAGREE'} |",
             f"| sanity (b): synthetic transformer head, 1 seed | {s['verdict']}: {s['decided_by']} |",
             f"| Deep Fusion, {f['verdict_runs']} | {f['verdict']}: last layer {f['effect']:.2f}x chance "
             + (f"[{f['effect_ci'][0]:.2f}, {f['effect_ci'][1]:.2f}]" if f["effect_ci"] else "[no interval: 1 seed]")
             + f"; {f['decided_by']} |",
             "", "| dataset | head | metric | mean % | std | seeds |", "|---|---|---|---|---|---|"]
    lines += [f"| {h['dataset']} | {h['head']} | {h['metric']} | {h['mean']} | {h['std']} | {h['n']} |" for h in f["heads"]]
    lines.append(f"\nfigures: {f['index']}; wall time {summary['wall_s']:.0f} s")
    return "\n".join(lines)


def reproduce(out: Path, quick: bool, data=None, seeds: int = 3, log=print) -> dict:
    """Run the three steps into ``out``; returns (and writes) the summary record."""
    from deepfusion.paper_figures.runs import check_data

    out = Path(out)
    quick_figures = quick or data is None
    if not quick_figures:
        check_data(False, data)  # a wrong --data fails before an hour of theory checks, not after
    start = time.perf_counter()
    log(f"== 1/3 theory checks ({'quick' if quick else 'full'})")
    theory = _theory(quick, log)
    log(f"== 2/3 sanity experiments ({'quick' if quick else 'full'})")
    sanity = _sanity(out / "sanity", quick, log)
    log(f"== 3/3 figures ({'digits, CPU' if quick_figures else f'paper datasets in {data}'})")
    figures = _figures(out / "figures", out / "runs", quick_figures, data, seeds, log)
    summary = {"quick": quick, "theory": theory, "sanity": sanity, "figures": figures,
               "wall_s": time.perf_counter() - start}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / SUMMARY_JSON, summary, indent=1)
    write_text_atomic(out / SUMMARY_MD, summary_markdown(summary) + "\n")
    return summary


def run(args: argparse.Namespace) -> int:
    from deepfusion.model.runs.devices import limit_threads

    if args.quick and args.data is not None:
        from deepfusion.errors import ConfigError

        raise ConfigError("--quick runs on bundled digits; drop --data, or drop --quick to use the paper's datasets")
    from deepfusion.paper_figures.pool import stopped

    with limit_threads(args.threads), stopped("reproduce") as outcome:
        summary = reproduce(args.out, args.quick, args.data, args.seeds)
    if outcome["exit"]:
        return outcome["exit"]
    print("\n== summary\n" + summary_markdown(summary))
    print(f"written: {args.out / SUMMARY_MD}, {args.out / SUMMARY_JSON}")
    failed = summary["theory"]["failed"] + ([] if summary["sanity"]["ok"] else ["sanity (a)"])
    if failed:
        raise CheckFailed("checks failed: " + "; ".join(failed))
    return 0
