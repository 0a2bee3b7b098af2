"""The head comparison, paired by training seed: the transformer head minus each other head.

Runs of one config that differ only in ``model.head`` and ``train.seed`` share, for one seed, the
backbone's initial weights, the batch order and the augmented views (the loop builds the backbone
before the head and draws batches and views from seeded generators of their own;
``tests/model/runs/test_head_pairing.py``). So for every seed the transformer run and another
head's run form a pair, and the seed is the unit: per metric the difference transformer minus
other head is taken within each seed, then its mean and a 95% t-interval over seeds (n - 1 degrees
of freedom). A single seed gives no interval. Beside it, the null every head's backbone must beat:
its trained backbone minus the same backbone re-initialised (random), seed by seed, on kNN and the
linear probe.

``compare_heads(run_dirs)`` reads each run's ``config.yaml`` and ``eval.json``, checks the pairing
(one config apart from head and seed, one run per head and seed, the same seeds for every head, the
reference head present) and returns a :class:`HeadComparison`. Accuracies are in percent,
differences in percentage points.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.stats import t as student_t

from deepfusion.errors import DataError
from deepfusion.experiments.pooling import differing_keys, seedless, seedless_hash
from deepfusion.model.network.registry import HEADS
from deepfusion.model.runs.eval_result import EvalResult
from deepfusion.model.runs.layout import RunFolder
from deepfusion.model.runs.loading import run_config

VERSION = 1
REFERENCE = "transformer"
LEVEL = 0.95  # two-sided level of the t-intervals over seeds
HEAD_KEY = "model.head"
# eval.json keys compared between heads -> what a reader calls them
METRICS = {
    "knn": "backbone kNN",
    "linear": "linear probe",
    "head_knn": "kNN on head outputs",
    "head_loo1nn": "head LOO 1-NN",
}
# the random-backbone baseline of each run (the same backbone re-initialised, evaluated the same way)
BASELINES = {"random_knn": "random-backbone kNN", "random_linear": "random-backbone linear probe"}
BASELINE_OF = {"knn": "random_knn", "linear": "random_linear"}  # backbone metric -> its random baseline
RANDOM = "random backbone"
# The decision rule (experiments/FINDINGS.md 6b, fixed before seeds 4-6 of fashion_mnist_cpu were seen):
# on each primary metric, reference minus each other head over >= MIN_SEEDS seeds, a two-sided t-interval
# at 1 - FAMILY_ALPHA / (number of comparisons) (Bonferroni): above 0 better, below 0 worse, else tied.
PRIMARY = ("knn", "head_knn")
FAMILY_ALPHA = 0.05
MIN_SEEDS = 6  # the subtrahend of a head's gain over its random-backbone baseline


@dataclass(frozen=True)
class HeadRuns:
    """One head's runs, one per seed (in the record's seed order), and their accuracies (%)."""

    head: str
    label: str
    runs: tuple[str, ...]  # run folders as given
    values: dict  # eval.json key (METRICS and BASELINES) -> per-seed accuracies in percent

    def mean(self, key: str) -> float:
        return float(np.mean(self.values[key]))


@dataclass(frozen=True)
class PairedDifference:
    """``minuend`` minus ``subtrahend`` on ``metric``, seed by seed, with its mean and t-interval."""

    minuend: str  # a head
    subtrahend: str  # another head, or RANDOM
    metric: str  # a key of METRICS
    per_seed: tuple[float, ...]  # percentage points, in the record's seed order
    mean: float
    low: float | None  # None with one seed
    high: float | None

    @property
    def n(self) -> int:
        return len(self.per_seed)


@dataclass(frozen=True)
class HeadComparison:
    """Every head's per-seed accuracies and the paired differences reference minus each other head."""

    preset: str
    config_hash: str  # of the shared config with head and seed left out
    reference: str
    seeds: tuple[int, ...]
    heads: tuple[HeadRuns, ...]  # the reference first, then the others in registry order
    differences: tuple[PairedDifference, ...]  # reference minus each other head, per metric
    gains: tuple[PairedDifference, ...]  # each head minus RANDOM, per metric of BASELINE_OF
    level: float = LEVEL
    version: int = VERSION

    def head(self, name: str) -> HeadRuns:
        return next(h for h in self.heads if h.head == name)

    def difference(self, other: str, metric: str) -> PairedDifference:
        """The reference head minus ``other`` on ``metric``."""
        return next(d for d in self.differences if (d.subtrahend, d.metric) == (other, metric))

    def gain(self, head: str, metric: str) -> PairedDifference:
        """``head``'s trained backbone minus its random-backbone baseline on ``metric``."""
        return next(d for d in self.gains if (d.minuend, d.metric) == (head, metric))

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data, what: str = "head comparison") -> "HeadComparison":
        if not isinstance(data, dict) or data.get("version") != VERSION:
            found = data.get("version") if isinstance(data, dict) else None
            raise DataError(
                f"{what} has record version {found!r}, this code reads {VERSION}; make it again with "
                "deepfusion heads --json"
            )
        try:
            heads = tuple(
                HeadRuns(
                    h["head"],
                    h["label"],
                    tuple(h["runs"]),
                    {k: tuple(float(x) for x in v) for k, v in h["values"].items()},
                )
                for h in data["heads"]
            )
            diffs, gains = (
                tuple(
                    PairedDifference(
                        d["minuend"],
                        d["subtrahend"],
                        d["metric"],
                        tuple(float(x) for x in d["per_seed"]),
                        float(d["mean"]),
                        d["low"],
                        d["high"],
                    )
                    for d in data[key]
                )
                for key in ("differences", "gains")
            )
            return cls(
                str(data["preset"]),
                str(data["config_hash"]),
                str(data["reference"]),
                tuple(int(s) for s in data["seeds"]),
                heads,
                diffs,
                gains,
                float(data["level"]),
                VERSION,
            )
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(
                f"{what} is missing or has malformed fields ({err}); make it again with deepfusion heads --json"
            ) from None


@dataclass(frozen=True)
class HeadCall:
    """The rule's call on ``reference minus other`` on one primary metric."""

    other: str
    metric: str
    mean: float
    low: float | None
    high: float | None
    level: float  # the Bonferroni-adjusted two-sided level of [low, high]
    call: str  # better | worse | tied | exploratory (fewer than MIN_SEEDS seeds)


def decide(rec: HeadComparison) -> tuple[HeadCall, ...]:
    """The rule's calls (see PRIMARY): the reference head better, worse or tied against each other head."""
    others = [h.head for h in rec.heads if h.head != rec.reference]
    level = 1 - FAMILY_ALPHA / (len(others) * len(PRIMARY))
    calls = []
    for other in others:
        for metric in PRIMARY:
            d = rec.difference(other, metric)
            low, high = t_interval(d.per_seed, level)
            if len(d.per_seed) < MIN_SEEDS:
                call = "exploratory"
            else:
                call = "better" if low > 0 else "worse" if high < 0 else "tied"
            calls.append(HeadCall(other, metric, d.mean, low, high, level, call))
    return tuple(calls)


def t_interval(values, level: float = LEVEL) -> tuple[float | None, float | None]:
    """mean -+ t_{(1+level)/2, n-1} * sd / sqrt(n) of per-seed ``values``; (None, None) for one seed."""
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        return None, None
    half = float(student_t.ppf((1 + level) / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return float(v.mean() - half), float(v.mean() + half)


def paired_difference(
    minuend: str, subtrahend: str, metric: str, minuend_values, subtrahend_values
) -> PairedDifference:
    """``minuend - subtrahend`` seed by seed (values in the same seed order), its mean and t-interval."""
    d = np.asarray(minuend_values, dtype=np.float64) - np.asarray(subtrahend_values, dtype=np.float64)
    low, high = t_interval(d)
    return PairedDifference(minuend, subtrahend, metric, tuple(float(x) for x in d), float(d.mean()), low, high)


def _headless(cfg) -> dict:
    return {k: v for k, v in seedless(cfg).items() if k != HEAD_KEY}


def _check_config(paths, cfgs) -> None:
    """One config apart from head and seed (and where the outputs went)."""
    first = _headless(cfgs[0])
    for p, cfg in zip(paths[1:], cfgs[1:]):
        diff = differing_keys(first, _headless(cfg))
        if diff:
            raise DataError(
                f"{p} and {paths[0]} differ in {', '.join(diff)}, not only in model.head and "
                "train.seed; compare runs of one config"
            )


def group_runs(run_dirs) -> tuple[list, dict[str, dict[int, Path]]]:
    """The runs' configs and ``{head: {seed: run folder}}``, after the pairing checks."""
    paths = [Path(p) for p in run_dirs]
    if not paths:
        raise DataError("no run folder given; pass --run DIR (repeat it, or give a quoted glob)")
    cfgs = [run_config(p) for p in paths]
    _check_config(paths, cfgs)
    groups: dict[str, dict[int, Path]] = {}
    for p, cfg in zip(paths, cfgs):
        by_seed = groups.setdefault(cfg.model.head, {})
        if cfg.train.seed in by_seed:
            raise DataError(
                f"{p} and {by_seed[cfg.train.seed]} are both head {cfg.model.head}, seed "
                f"{cfg.train.seed}; give one run per head and seed"
            )
        by_seed[cfg.train.seed] = p
    if REFERENCE not in groups:
        raise DataError(
            f"no {REFERENCE} run among the {len(paths)} given (heads: {', '.join(sorted(groups))}); "
            f"the differences are {REFERENCE} minus each other head, so add its runs"
        )
    if len(groups) < 2:
        raise DataError(f"only {REFERENCE} runs given; add the runs of another head with the same seeds")
    seeds = sorted(groups[REFERENCE])
    for head, by_seed in groups.items():
        if sorted(by_seed) != seeds:
            raise DataError(
                f"head {head} has seeds {_seeds(by_seed)} but {REFERENCE} has {_seeds(seeds)}; give "
                "every head the same seeds (a glob that matches only seeds every head finished)"
            )
    return cfgs, groups


def _seeds(seeds) -> str:
    return ",".join(str(s) for s in sorted(seeds))


def _order(groups) -> list[str]:
    known = [h for h in HEADS.names() if h in groups and h != REFERENCE]
    return [REFERENCE, *known, *sorted(set(groups) - set(known) - {REFERENCE})]


def _label(head: str) -> str:
    return HEADS.get(head).label if head in HEADS.names() else head


def _required_eval(run_dir) -> EvalResult:
    """The evaluation of the finished run in ``run_dir``; one line naming the fix when there is none
    (unlike ``runs.finished_eval``, which answers None for the run cache and checks the checkpoint)."""
    path = RunFolder(run_dir).eval
    if not path.is_file():
        raise DataError(f"{run_dir} has no {path.name} (training not finished?); finish it or leave it out")
    ev = EvalResult.load(path)
    if ev.finished is False:
        raise DataError(
            f"{path} describes step {ev.step}, before the run's last step; finish it with "
            f"deepfusion train --resume {run_dir}"
        )
    return ev


def _percent(ev: EvalResult, key: str, run_dir) -> float:
    if ev.score(key) is None:
        raise DataError(
            f"the evaluation of {run_dir} has no {key!r} accuracy; evaluate it again: deepfusion eval --run {run_dir}"
        )
    return ev.percent(key)


def compare_heads(run_dirs) -> HeadComparison:
    """The paired head comparison of ``run_dirs`` (see the module docstring)."""
    cfgs, groups = group_runs(run_dirs)
    seeds = sorted(groups[REFERENCE])
    heads = []
    for head in _order(groups):
        runs = [groups[head][s] for s in seeds]
        evals = [_required_eval(r) for r in runs]
        values = {k: tuple(_percent(ev, k, r) for ev, r in zip(evals, runs)) for k in (*METRICS, *BASELINES)}
        heads.append(HeadRuns(head, _label(head), tuple(str(r) for r in runs), values))
    ref = heads[0]
    diffs = tuple(
        paired_difference(REFERENCE, h.head, m, ref.values[m], h.values[m]) for h in heads[1:] for m in METRICS
    )
    gains = tuple(
        paired_difference(h.head, RANDOM, m, h.values[m], h.values[b]) for h in heads for m, b in BASELINE_OF.items()
    )
    base = cfgs[0]
    shared = dataclasses.replace(base, model=dataclasses.replace(base.model, head=REFERENCE))  # the head left out
    return HeadComparison(str(base.preset), seedless_hash(shared), REFERENCE, tuple(seeds), tuple(heads), diffs, gains)
