"""The Deep Fusion study over training seeds: check the runs, analyse each, judge them together.

``analyze_runs(run_dirs, options)`` is the one implementation of "check runs -> analyse each ->
pool" behind ``deepfusion analyze --run``, the figures that pool seeds (F2, F6) and ``deepfusion
figures --run``. The runs must differ only in ``train.seed`` (``pooling.check_runs``); each is
analysed (``experiments.analyze.analyze_run``, which writes ``analysis.json`` and ``attention.npz``
into its folder) or its analysis reused; the seeds are judged together with rule v3
(``pooling.pool``). The record returned is the typed, versioned ``PooledAnalysis``.

``seed_study(spec, seeds, root)`` is the whole study from a config: its seeds 0..seeds-1 got
through the run cache (``experiments.runs``), then ``analyze_runs``; it returns a ``SeedStudy``.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from deepfusion.errors import DataError, DataWarning
from deepfusion.experiments.analyze import analyze_run, read_analysis
from deepfusion.experiments.pooling import check_runs, pool, seedless_hash
from deepfusion.experiments.record import PooledAnalysis, RunAnalysis
from deepfusion.experiments.runs import RunSpec, run_all, seed_specs
from deepfusion.experiments.verdict import MIN_PERMUTATIONS
from deepfusion.model.runs.layout import RunFolder
from deepfusion.model.runs.progress_line import Heartbeat

SMALL_PER_CLASS = 4  # batches with fewer samples of a class than this say little about class structure
SEED_STUDY_VERSION = 1


@dataclass(frozen=True)
class AnalysisOptions:
    """How each run is analysed (``deepfusion analyze``'s options; the defaults are its defaults)."""

    batches: int = 5
    per_class: int | None = None
    seed: int = 0
    views: str = "two_views"
    split: str = "test"
    n_perm: int = MIN_PERMUTATIONS
    force: bool = False  # replace an analysis made with other settings


def run_analysis(run_dir, options: AnalysisOptions | None = None, device="cpu", log=None) -> RunAnalysis:
    """One run's analysis record. With ``options``: analysed with them (an analysis with the same
    settings of the same checkpoint is reused, another one refused unless ``options.force``).
    Without: the analysis the folder holds, whatever its settings, else a new one with the defaults
    (the figures); ``pool`` still refuses to mix analyses made with different settings."""
    run_dir = Path(run_dir)
    if options is None:
        record = read_analysis(run_dir) if RunFolder(run_dir).attention.is_file() else None
        if record is not None:
            return record
        options = AnalysisOptions()
    record = analyze_run(
        run_dir,
        batches=options.batches,
        per_class=options.per_class,
        seed=options.seed,
        device=device,
        split=options.split,
        views=options.views,
        n_perm=options.n_perm,
        force=options.force,
    )
    if log:
        log(f"analysed: {run_dir} (checkpoint step {record.step}; record in its analysis.json)")
    return record


def warn_small_batches(records: list[RunAnalysis]) -> None:
    """A warning when the analysis batches hold too few samples per class to say much, naming the
    largest batches that fit the split."""
    s = records[0].settings
    if s.per_class >= SMALL_PER_CLASS:
        return
    fits = s.max_per_class
    advice = (
        f"the largest that fit the split: --per-class {fits} with --batches {s.batches}"
        if fits and fits > s.per_class
        else f"the split fits no larger batches with --batches {s.batches}; fewer batches allow larger ones"
    )
    warnings.warn(
        f"analysis batches of {s.tokens_per_batch} tokens ({s.per_class} per class) say little about class "
        f"structure; {advice}",
        DataWarning,
        stacklevel=2,
    )


def analyze_runs(run_dirs, options: AnalysisOptions | None = None, device="cpu", log=None) -> PooledAnalysis:
    """The runs (one config, distinct seeds) checked, each analysed or its analysis reused
    (``run_analysis``), then judged together: the pooled record with rule v3's verdict."""
    run_dirs = [Path(d) for d in run_dirs]
    cfgs = check_runs(run_dirs)
    records = []
    with Heartbeat("analyze", total=len(run_dirs)) as beat:  # a line every 25 s when the output is a file or pipe
        for path in run_dirs:
            records.append(run_analysis(path, options, device, log))
            beat.done += 1
    warn_small_batches(records)
    return pool(records, run_dirs, seedless_hash(cfgs[0]))


@dataclass
class SeedStudy:
    """Deep Fusion over the training seeds of one config: which runs, and their pooled analysis."""

    spec: str  # the config, described (preset and overrides, without train.seed)
    runs: list[str]  # each seed's run, described with its config hash
    pooled: PooledAnalysis
    version: int = SEED_STUDY_VERSION

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data) -> "SeedStudy":
        if not isinstance(data, dict) or data.get("version") != SEED_STUDY_VERSION:
            raise DataError(f"Deep Fusion study record is not version {SEED_STUDY_VERSION}; make it again")
        return cls(**{**data, "pooled": PooledAnalysis.from_json(data["pooled"])})


def seed_study(
    spec: RunSpec, seeds: int, root, options: AnalysisOptions | None = None, device="cpu", log=None, train_fn=None
) -> SeedStudy:
    """Seeds 0..seeds-1 of ``spec`` from the run cache under ``root`` (trained when missing), each
    analysed, judged together."""
    results = run_all(seed_specs(spec, seeds), root, log=log, train_fn=train_fn)
    pooled = analyze_runs([r.run_dir for r in results], options, device, log)
    return SeedStudy(spec.describe(), [r.describe() for r in results], pooled)
