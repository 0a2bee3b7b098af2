"""Run every check of the theory (statements S1-S15) and print one row per statement.

Each statement is checked three ways: a sympy derivation (symbolic), a numeric computation or
simulation against the closed forms (numeric), and Hypothesis properties (property). A cell reads
pass, FAIL (the claim or the code is wrong), ERROR (the check crashed), skip (not part of --quick)
or - (no such check). A check fails by raising CheckFailed (theory/check.py), never by assert, so
the verdict is the same under python -O. Statements and proofs: theory/THEORY.md (S1-S7) and
theory/THEORY_LEARNED.md (S8-S12, and S5b, listed under S5) and theory/THEORY_DYNAMICS.md (S13-S15,
the learning dynamics). Exits non-zero if any check fails.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

from deepfusion.errors import CheckFailed, ConfigError

STATEMENTS = ("S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9", "S10", "S11", "S12", "S13", "S14", "S15")
CHECK_MODULES = (
    "deepfusion.theory.checks_bounds",
    "deepfusion.theory.checks_fusion",
    "deepfusion.theory.checks_learned",
    "deepfusion.theory.checks_dynamics",
)
KINDS = ("symbolic", "numeric", "property")


def add_arguments(parser):
    parser.add_argument(
        "--quick", action="store_true", help="run only the quick checks, with smaller sizes (about a minute)"
    )
    parser.add_argument("--json", metavar="PATH", help="also write every check's result to this JSON file")
    parser.add_argument("--only", metavar="S1,S8", help="comma-separated statements to check (default: all, S1-S15)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each check's summary line")


def collect_checks():
    """All Check objects: S1/S6 from theory.checks_bounds, S2-S5/S7 from theory.checks_fusion, S8-S12
    and S5b from theory.checks_learned, S13-S15 from theory.checks_dynamics.

    A module that fails to import becomes one 'error' entry instead of hiding its statements."""
    checks, broken = [], []
    for module in CHECK_MODULES:
        try:
            mod = __import__(module, fromlist=["CHECKS"])
            checks.extend(mod.CHECKS)
        except Exception as err:  # a broken module must show up as a failure, not vanish
            broken.append((module, f"{type(err).__name__}: {err}"))
    return checks, broken


def _run_one(check, quick):
    t = time.perf_counter()
    try:
        summary, status = check.run(quick), "pass"
    except CheckFailed as err:  # the contract of theory.check: a check fails by raising CheckFailed
        summary, status = f"CheckFailed: {err}", "fail"
    except Exception as err:  # anything else, an AssertionError included, is a crash: ERROR
        summary = f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=3)}"
        status = "error"
    return dict(
        statement=check.statement,
        kind=check.kind,
        name=check.name,
        status=status,
        summary=str(summary),
        seconds=round(time.perf_counter() - t, 3),
        quick=quick,
    )


def run_checks(quick: bool, only=None, progress=None) -> list[dict]:
    """Run the checks (only those with quick=True when quick) and return one dict per check:
    statement, kind, name, status (pass/fail/error/skip), summary, seconds, quick."""
    checks, broken = collect_checks()
    results = [
        dict(statement="-", kind="import", name=mod, status="error", summary=msg, seconds=0.0, quick=quick)
        for mod, msg in broken
    ]
    for check in checks:
        if only and check.statement not in only:
            continue
        if quick and not check.quick:
            res = dict(
                statement=check.statement,
                kind=check.kind,
                name=check.name,
                status="skip",
                summary="not part of --quick",
                seconds=0.0,
                quick=quick,
            )
        else:
            res = _run_one(check, quick)
        results.append(res)
        if progress:
            progress(res)
    return results


def _cell(results):
    if not results:
        return "-"
    order = ("error", "fail", "pass", "skip")
    worst = min((r["status"] for r in results), key=order.index)
    return {"error": "ERROR", "fail": "FAIL"}.get(worst, worst)


def table(results) -> str:
    """One row per statement: symbolic / numeric / property cells, overall status and seconds."""
    head = f"{'stmt':<5} {'symbolic':<9} {'numeric':<9} {'property':<9} {'status':<8} {'time':>7}"
    lines = [head, "-" * len(head)]
    for s in STATEMENTS:
        rows = [r for r in results if r["statement"] == s]
        if not rows:
            continue
        cells = [_cell([r for r in rows if r["kind"] == k]) for k in KINDS]
        bad = any(r["status"] in ("fail", "error") for r in rows)
        ran = any(r["status"] == "pass" for r in rows)
        status = "FAIL" if bad else ("ok" if ran else "skip")
        secs = sum(r["seconds"] for r in rows)
        lines.append(f"{s:<5} {cells[0]:<9} {cells[1]:<9} {cells[2]:<9} {status:<8} {secs:>6.1f}s")
    return "\n".join(lines)


def _parse_only(text):
    if not text:
        return None
    only = {s.strip().upper() for s in text.split(",") if s.strip()}
    unknown = only - set(STATEMENTS)
    if unknown:
        raise ConfigError(f"--only names unknown statements {sorted(unknown)}; choose from {', '.join(STATEMENTS)}")
    return only


def run(args) -> int:
    only = _parse_only(getattr(args, "only", None))
    quick = bool(args.quick)
    verbose = bool(getattr(args, "verbose", False))
    print(f"deepfusion verify{' --quick' if quick else ''}: running theory checks", flush=True)

    def progress(r):
        print(f"  {r['statement']} {r['kind']:<8} {r['status']:<5} {r['seconds']:6.1f}s  {r['name']}", flush=True)
        if verbose or r["status"] in ("fail", "error"):
            print(f"      {r['summary']}", flush=True)

    t = time.perf_counter()
    results = run_checks(quick, only, progress)
    wall = time.perf_counter() - t
    for r in results:
        if r["kind"] == "import":
            print(f"  could not import {r['name']}: {r['summary']}", file=sys.stderr)
    print()
    print(table(results))
    bad = [r for r in results if r["status"] in ("fail", "error")]
    print(f"\n{len(results) - len(bad)} of {len(results)} checks without failure in {wall:.1f}s")
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        from deepfusion.model.runs.layout import write_text_atomic

        write_text_atomic(path, json.dumps({"quick": quick, "seconds": round(wall, 3), "results": results}, indent=2))
    if bad:
        names = ", ".join(f"{r['statement']} {r['kind']}" for r in bad)
        raise CheckFailed(f"{len(bad)} check(s) failed: {names}; rerun with -v for details")
    return 0
