"""F5's study: ablations of the transformer head over batch size, temperature, weight decay and depth.

One sweep per hyper-parameter around a base run (the other settings held at the base), each swept
value trained over ``seeds`` seeds through the run cache (``experiments.runs``); the record holds
every seed's linear-probe and kNN accuracy (%) per swept value. The base value is shared by every
sweep, so the cache trains it once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

from deepfusion.errors import DataError
from deepfusion.experiments.runs import RunSpec, run_all, seed_specs
from deepfusion.experiments.studies.deep_fusion import AnalysisOptions, run_analysis

ABLATIONS_VERSION = 1
METRICS = ("linear", "knn")  # the accuracies each swept value records


@dataclass(frozen=True)
class Sweep:
    key: str  # config key, section.name
    label: str  # axis label
    values: tuple
    scale: str = "linear"  # x-axis scale: linear | log | symlog


QUICK_SWEEPS = (
    Sweep("train.batch_size", "batch size N (samples)", (64, 128, 256), "log"),
    Sweep("loss.temperature", "temperature τ", (0.1, 0.2, 0.5), "log"),
    Sweep("optim.weight_decay", "weight decay", (0.0, 1e-4, 1e-2), "symlog"),
    Sweep("model.depth", "head depth L (layers)", (1, 2, 4)),
)
PAPER_SWEEPS = (
    Sweep("train.batch_size", "batch size N (samples)", (256, 512, 1024), "log"),
    Sweep("loss.temperature", "temperature τ", (0.02, 0.05, 0.1, 0.2), "log"),
    Sweep("optim.weight_decay", "weight decay", (0.0, 1e-4, 5e-4, 1e-3), "symlog"),
    Sweep("model.depth", "head depth L (layers)", (2, 4, 6, 10)),
)


@dataclass(frozen=True)
class SweepResult:
    """One swept hyper-parameter: per swept value, every seed's accuracy (%)."""

    key: str
    label: str
    values: list
    scale: str
    base_value: float  # the base run's value of ``key``
    linear: list[list[float]]  # [swept value][seed]
    knn: list[list[float]]
    random_knn: list[list[float]] | None = None  # the random backbone's kNN (%), same layout
    ratio: list[list[float]] | None = None  # last layer's same-class ratio (rule v3's statistic), same layout


@dataclass(frozen=True)
class Ablations:
    base: str  # the base run, described (preset and overrides)
    seeds: int  # seeds per swept value
    sweeps: list[SweepResult]
    runs: list[str]  # every distinct run used, described with its config hash
    train_seeds: list[int] | None = None  # the seeds trained (None: 0 .. seeds-1)
    version: int = ABLATIONS_VERSION

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data) -> "Ablations":
        if not isinstance(data, dict) or data.get("version") != ABLATIONS_VERSION:
            raise DataError(f"ablations record is not version {ABLATIONS_VERSION}; make it again")
        return cls(**{**data, "sweeps": [SweepResult(**s) for s in data["sweeps"]]})


def plan(base: RunSpec, sweeps, seeds: int | Sequence[int] = 1) -> dict[Sweep, list[list[RunSpec]]]:
    """{sweep: [[spec per seed] per value]}; specs equal to the base collapse in the cache."""
    return {s: [seed_specs(base.with_overrides(f"{s.key}={v}"), seeds) for v in s.values] for s in sweeps}


def needed(base: RunSpec, sweeps, seeds: int | Sequence[int] = 1) -> list[RunSpec]:
    """Every run the study trains (for ``experiments.runs.prefetch``)."""
    return [spec for grid in plan(base, sweeps, seeds).values() for specs in grid for spec in specs]


def _base_value(spec: RunSpec, key: str):
    section, name = key.split(".")
    return getattr(getattr(spec.config(), section), name)


def ablations(
    base: RunSpec, sweeps, seeds: int | Sequence[int], root, log=None, train_fn=None, attention: bool = False
) -> Ablations:
    """Train (or load from the cache) every sweep's runs; the record of their accuracies. With
    ``attention``, each run is also analysed (``deep_fusion.run_analysis``, reused when its folder
    holds one) for its last layer's ratio, and the random backbone's kNN is kept beside the kNN."""
    results, seen = [], {}
    for sweep, grid in plan(base, sweeps, seeds).items():
        per_metric = {m: [] for m in (*METRICS, "random_knn", "ratio")}
        for specs in grid:
            got = run_all(specs, root, log=log, train_fn=train_fn)
            for r in got:
                seen.setdefault(r.config_hash, r)
            for m in METRICS:
                per_metric[m].append([r.eval.percent(m) for r in got])
            if attention:
                per_metric["random_knn"].append([r.eval.percent("random_knn") for r in got])
                per_metric["ratio"].append([_last_ratio(r.run_dir) for r in got])
        results.append(
            SweepResult(
                sweep.key,
                sweep.label,
                list(sweep.values),
                sweep.scale,
                _base_value(base, sweep.key),
                per_metric["linear"],
                per_metric["knn"],
                per_metric["random_knn"] if attention else None,
                per_metric["ratio"] if attention else None,
            )
        )
    count = seeds if isinstance(seeds, int) else len(seeds)
    listed = None if isinstance(seeds, int) else list(seeds)
    return Ablations(base.describe(), count, results, [r.describe() for r in seen.values()], listed)


def _last_ratio(run_dir) -> float:
    # The analysis defaults, always: an analysis of the folder made with other settings is refused.
    return float(run_analysis(run_dir, AnalysisOptions()).verdict.last_layer_ratio)
