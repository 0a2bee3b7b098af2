"""Which runs the figures draw on, and how their results are read back.

A run is named by a :class:`RunSpec` (preset + ``key=value`` overrides) so captions can print
exactly what was trained. Quick mode uses the ``digits`` preset (scikit-learn's bundled 8x8
digits, CPU-sized); paper mode the paper-scale presets on the dataset folder the user gives.
Every number in a table or plot comes from an ``eval.json`` made through the result cache.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from deepfusion.errors import DataError, Interrupted, RunError
from deepfusion.paper_figures import cache

DEFAULT_RESULTS = Path("results") / "runs"  # relative to the working folder
QUICK_PRESET = "digits"
# Quick mode trains the digits preset for half its 30 epochs: every quick figure shares these runs
# (F4's transformer seeds are F1/F2's runs and F5's base), and the quick main job stays at a few minutes
# on two CPU cores.
QUICK_EPOCHS = 15
PAPER_PRESETS = ("cifar10", "cifar100", "tiny_imagenet")


def heads() -> tuple[str, ...]:
    """Every registered head, in registration order: the rows of the head comparison."""
    from deepfusion.model.network.registry import HEADS

    return HEADS.names()


def head_label(name: str) -> str:
    """The label figures and tables give a head (or the random-backbone baseline)."""
    from deepfusion.model.network.registry import HEADS

    return "Random backbone" if name == "random" else HEADS.get(name).label


# eval.json keys -> what the tables call them
METRICS = {"linear": "linear probe", "knn": "kNN", "head_loo1nn": "head LOO 1-NN"}


@dataclass(frozen=True)
class RunSpec:
    preset: str
    overrides: tuple[str, ...] = ()

    def with_overrides(self, *more: str) -> "RunSpec":
        # Later overrides win; drop earlier ones for the same key so the printed command stays clean.
        keys = {m.split("=", 1)[0] for m in more}
        kept = tuple(o for o in self.overrides if o.split("=", 1)[0] not in keys)
        return RunSpec(self.preset, kept + tuple(more))

    def config(self):
        from deepfusion.model.runs.config import load_config

        return load_config(self.preset, list(self.overrides))

    def describe(self) -> str:
        return " ".join([self.preset, *self.overrides])


def datasets(quick: bool) -> tuple[str, ...]:
    """The presets a figure runs on: digits in quick mode, the paper's three datasets otherwise."""
    return (QUICK_PRESET,) if quick else PAPER_PRESETS


def base_spec(preset: str, data: str | Path | None) -> RunSpec:
    """The preset as is, pointed at the user's dataset folder when one is given; the quick preset
    with its epochs shortened to ``QUICK_EPOCHS``."""
    if preset == QUICK_PRESET and data is None:
        return RunSpec(preset, (f"train.epochs={QUICK_EPOCHS}",))
    if data is None:
        return RunSpec(preset)
    # Absolute, so the config hash does not depend on the working folder; quoted, so YAML reads a
    # path like "2024" or "yes" as a string.
    return RunSpec(preset, (f"data.root={json.dumps(str(Path(data).expanduser().resolve()))}",))


def check_data(quick: bool, data: str | Path | None) -> None:
    """Paper mode needs a dataset folder; quick mode uses only bundled data."""
    if quick:
        return
    if data is None:
        raise DataError(
            "paper-scale figures need the dataset folder: pass --data DIR (holding CIFAR-10, CIFAR-100 and "
            "Tiny-ImageNet), or use --quick for the CPU-sized version on bundled digits"
        )
    if not Path(data).is_dir():
        raise DataError(f"dataset folder {data} does not exist; pass --data DIR pointing at the datasets")


def checked_root(quick: bool, data: str | Path | None, results_root: str | Path | None) -> Path:
    """The result cache folder (``DEFAULT_RESULTS`` when not given), once the mode's data is checked."""
    check_data(quick, data)
    return Path(results_root or DEFAULT_RESULTS)


def seed_specs(spec: RunSpec, seeds: int) -> list[RunSpec]:
    return [spec.with_overrides(f"train.seed={s}") for s in range(seeds)]


@dataclass
class RunResult:
    spec: RunSpec
    run_dir: Path
    config_hash: str
    eval: dict

    def describe(self) -> str:
        return f"{self.spec.describe()}  (config {self.config_hash})"


def default_workers() -> int:
    """Training processes at once: one per CPU core up to 2 on a CPU, 1 with a GPU (one device)."""
    import os

    import torch

    return 1 if torch.cuda.is_available() else max(1, min(2, os.cpu_count() or 1))


def _train_in_worker(preset: str, overrides: tuple, results_root: str) -> str:
    """A worker process's job: one run through the cache, with one CPU thread (the cores are shared)."""
    import torch

    torch.set_num_threads(1)
    return str(cache.run_or_load(RunSpec(preset, overrides).config(), results_root))


def prefetch(specs: list[RunSpec], results_root: str | Path, workers: int = 1, log: Callable[[str], None] | None = None,
             train_fn=None) -> int:
    """Train every spec that is not yet in the cache, ``workers`` processes at a time; returns how many
    were trained. Specs with the same config are trained once. The figures then find every run cached."""
    todo, seen = [], set()
    for spec in specs:
        cfg = spec.config()
        run_dir = cache.run_dir_for(cfg, results_root)
        if run_dir.name not in seen and not cache.is_finished(run_dir, cfg):
            seen.add(run_dir.name)
            todo.append(spec)
    if not todo:
        return 0
    if log:
        log(f"  training {len(todo)} run(s) the figures need, {min(workers, len(todo))} at a time")
    if workers <= 1 or len(todo) == 1 or train_fn is not None:
        try:
            run_all(todo, results_root, log=log, train_fn=train_fn)
        except Interrupted as err:  # the run in training saved its checkpoint
            from deepfusion.paper_figures.pool import interrupted

            raise interrupted("figures", err.signum, "the run in training saved a checkpoint") from None
        return len(todo)
    from deepfusion.paper_figures.pool import run_jobs

    run_jobs(_train_in_worker, [(s.preset, s.overrides, str(results_root)) for s in todo], workers,
             describe=lambda job: RunSpec(job[0], job[1]).describe(), log=log)
    return len(todo)


def run_all(
    specs: list[RunSpec],
    results_root: str | Path,
    log: Callable[[str], None] | None = None,
    train_fn=None,
) -> list[RunResult]:
    """Train (or load from the cache) every spec, in order; returns their evaluations."""
    from deepfusion.model.runs.config import config_hash

    out = []
    for i, spec in enumerate(specs, 1):
        cfg = spec.config()
        prefix = f"  run {i}/{len(specs)} {spec.describe()}: "
        # A progress bar per training run when someone is watching (log given), none in tests.
        run_dir = cache.run_or_load(
            cfg, results_root, train_fn=train_fn, progress=log is not None,
            log=(lambda m: log(prefix + m)) if log else None,
        )
        out.append(RunResult(spec, run_dir, config_hash(cfg), cache.load_eval(run_dir)))
    return out


def metric(ev: dict, key: str) -> float:
    """Accuracy in percent from an ``eval.json`` entry (a number in [0, 1] or ``{"accuracy": ...}``)."""
    if key not in ev:
        raise RunError(f"eval.json has no {key!r} entry (keys: {', '.join(sorted(ev))}); rerun the evaluation")
    value = ev[key]
    if isinstance(value, dict):
        value = value.get("accuracy", value.get("top1"))
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RunError(f"eval.json entry {key!r} is not a finite accuracy: {ev[key]!r}")
    return 100.0 * float(value)


@dataclass(frozen=True)
class Summary:
    mean: float
    std: float  # sample standard deviation (ddof=1); nan for a single seed
    n: int

    def text(self) -> str:
        if self.n == 1:
            return f"{self.mean:.1f} (n=1)"
        return f"{self.mean:.1f} ± {self.std:.1f} (n={self.n})"


def summarize(values: list[float]) -> Summary:
    v = np.asarray(values, dtype=float)
    std = float(v.std(ddof=1)) if v.size > 1 else float("nan")
    return Summary(float(v.mean()), std, int(v.size))
