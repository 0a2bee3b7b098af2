"""Regenerate a chosen set of figures into one folder and keep its index up to date."""

from __future__ import annotations

import dataclasses
import importlib
import shlex
import time
from pathlib import Path
from typing import Callable

from deepfusion.errors import ConfigError
from deepfusion.experiments.runs import prefetch
from deepfusion.paper_figures import index, own_runs, runs
from deepfusion.paper_figures.record import FigureRecord, with_out

# key -> (module, short description); order is the order of the index
FIGURES: dict[str, tuple[str, str]] = {
    "F1": ("deepfusion.paper_figures.f1_attention_maps", "label-sorted attention maps per layer"),
    "F2": ("deepfusion.paper_figures.f2_block_mass", "same-class attention mass against depth vs S4/S5"),
    "F3": ("deepfusion.paper_figures.f3_theory", "theory plots: fusion region, eps_max, r_l curves"),
    "F4": ("deepfusion.paper_figures.f4_head_comparison", "head comparison table over seeds"),
    "F4B": ("deepfusion.paper_figures.f4b_head_level", "heads compared at head level on fixed features"),
    "F5": ("deepfusion.paper_figures.f5_ablations", "ablations: batch size, temperature, weight decay, depth"),
    "F6": ("deepfusion.paper_figures.f6_phase_diagram", "phase diagram: head-only training on the theory's data"),
}
NEEDS_DATA = {"F1", "F2", "F4", "F5"}  # trained on the mode's datasets
NEEDS_RUNS = NEEDS_DATA | {"F4B", "F6"}  # F4B and F6 bring their own data; F3 is theory: no training


def parse_only(text: str | None) -> list[str]:
    """``"f1,F3"`` -> ``["F1", "F3"]`` in index order; ``None`` -> every figure."""
    if not text:
        return list(FIGURES)
    keys = {k.strip().upper() for k in text.split(",") if k.strip()}
    unknown = sorted(keys - FIGURES.keys())
    if unknown:
        raise ConfigError(f"--only: unknown figure(s) {', '.join(unknown)}; choose from {', '.join(FIGURES)}")
    return [k for k in FIGURES if k in keys]


def build_figures(
    out_dir: str | Path,
    quick: bool,
    data: str | Path | None = None,
    results_root: str | Path | None = None,
    only: list[str] | None = None,
    seeds: int = 3,
    ablation_seeds: int = 1,
    log: Callable[[str], None] = print,
    train_fn=None,
    workers: int = 1,
) -> list[FigureRecord]:
    """Make the figures ``only`` (default all) into ``out_dir`` with ``index.md``/``index.html``.

    ``seeds`` runs per head for F4 (their transformer runs are F2's seeds), ``ablation_seeds`` per
    swept value for F5. The runs every chosen figure needs are trained first, ``workers`` processes
    at a time (``experiments.runs.prefetch``). Runs are trained
    through the result cache under ``results_root``; figures that need runs in paper mode need
    ``data`` (checked before anything starts).
    """
    keys = list(FIGURES) if only is None else only
    if seeds < 1 or ablation_seeds < 1:
        raise ConfigError(f"--seeds and --ablation-seeds must be >= 1 (got {seeds}, {ablation_seeds})")
    if NEEDS_DATA & set(keys):
        runs.check_data(quick, data)
    out_dir = Path(out_dir)
    results_root = Path(results_root or runs.DEFAULT_RESULTS)
    options = {
        "F2": {"seeds": seeds},
        "F4": {"seeds": seeds},
        "F4B": {"seeds": seeds},
        "F5": {"seeds": ablation_seeds},
        "F6": {"seeds": seeds},
    }
    wanted = []
    for key in keys:
        module = importlib.import_module(FIGURES[key][0])
        if hasattr(module, "needed"):
            wanted += module.needed(quick, data, **options.get(key, {}))
    if wanted:
        prefetch(wanted, results_root, workers=workers, log=log, train_fn=train_fn)
    records: list[FigureRecord] = []
    for n, key in enumerate(keys, 1):
        module_name, what = FIGURES[key]
        log(f"[{key}] ({n}/{len(keys)}) {what}")
        start = time.perf_counter()
        module = importlib.import_module(module_name)
        extra = {"train_fn": train_fn} if key in NEEDS_RUNS else {}
        made = module.make(
            out_dir, quick, data=data, results_root=results_root, log=log, **options.get(key, {}), **extra
        )
        made = [dataclasses.replace(r, command=with_out(r.command, out_dir)) for r in made]  # reproduces it here
        records += made
        index.write_index(records, out_dir)  # after every figure, so a stopped job still leaves an index
        files = ", ".join(p.name for r in made for p in r.paths)
        log(f"[{key}] done in {time.perf_counter() - start:.1f} s: {files}")
    paths = index.write_index(records, out_dir)
    log(f"index: {paths[0]}")
    return records


def build_run_figures(run_dirs, out_dir: str | Path, log: Callable[[str], None] = print) -> list[FigureRecord]:
    """``deepfusion figures --run ...``: the attention figures of the user's own runs, with an index."""
    records = own_runs.make(run_dirs, out_dir, log=log)
    paths = index.write_index(records, out_dir)
    log(f"index: {paths[0]}")
    return records


def build_paper_figure(record_file, out_dir: str | Path, log: Callable[[str], None] = print) -> list[FigureRecord]:
    """``deepfusion figures --paper-record FILE``: F7 from a saved paper-regime record, training nothing."""
    from deepfusion.experiments.studies.paper_regime import read_paper_regime
    from deepfusion.paper_figures import f7_paper_regime

    record = read_paper_regime(record_file)
    command = shlex.join(["deepfusion", "figures", "--paper-record", str(record_file), "--out", str(out_dir)])
    records = [f7_paper_regime.make(record, Path(out_dir), command)]
    paths = index.write_index(records, out_dir)
    log(f"index: {paths[0]}")
    return records


def build_head_figures(
    run_dirs, out_dir: str | Path, patterns=None, log: Callable[[str], None] = print
) -> list[FigureRecord]:
    """``deepfusion figures --heads ...``: F4 from whole-model runs paired by seed, with an index."""
    from deepfusion.paper_figures import f4_head_comparison_paired

    records = f4_head_comparison_paired.make(run_dirs, out_dir, patterns=patterns)
    paths = index.write_index(records, out_dir)
    log(f"index: {paths[0]}")
    return records
