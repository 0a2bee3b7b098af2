"""The paper's regime (``paper_cpu``, or the paper's CIFAR-10 preset): Deep Fusion per arm and the ablations.

Two parts, both through the run cache (``experiments.runs``), so a stopped study resumes where it
stopped and a second call only re-reads:

- **Arms** (FINDINGS 4c, 4e): the preset as is, at temperature 0.1, and with ``mask_pair``, training
  seeds 1..6 each; at temperature 0.5, seeds 4..9 (seeds 1-3 of the ablations made the hypothesis
  it tests, so they do not judge it). Each arm's seeds are analysed and judged together under rule
  v3 (``deep_fusion.analyze_runs``, the analysis defaults), with each seed's backbone kNN beside its
  random backbone's.
- **Ablations**, exploratory: batch size (256, 512, 1024 samples per view), temperature (0.02, 0.1,
  0.5) and weight decay (0, 1e-4, 5e-4) around the preset, seeds 1..3; kNN, the random backbone's
  kNN and the last layer's same-class ratio per run (``ablations.ablations(attention=True)``).

Seeds start at 1 because seed 1 is the one ``paper_cpu`` was tuned on (FINDINGS 4b); the arms and
the ablations share runs where their configs agree (the preset's seeds 1-3, temperature 0.1's).
:func:`needed` lists every run in the order worth training first: the arms, seed by seed, then
the ablations.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from deepfusion.errors import DataError
from deepfusion.experiments.record import PooledAnalysis
from deepfusion.experiments.runs import RunSpec, run_all, seed_specs
from deepfusion.experiments.studies import ablations as abl
from deepfusion.experiments.studies.deep_fusion import AnalysisOptions, analyze_runs
from deepfusion.model.runs.config import config_hash

PAPER_REGIME_VERSION = 1
CPU_PRESET = "paper_cpu"
GPU_PRESET = "cifar10"  # the paper's CIFAR-10 setting; needs --data and, in practice, a GPU
ARM_SEEDS = (1, 2, 3, 4, 5, 6)
ABLATION_SEEDS = (1, 2, 3)
ARMS = {  # name -> overrides of the base
    "as is": (),
    "temperature 0.1": ("loss.temperature=0.1",),
    "mask_pair": ("model.scope=mask_pair",),
    "temperature 0.5": ("loss.temperature=0.5",),
}
ARM_SEEDS_OF = {"temperature 0.5": (4, 5, 6, 7, 8, 9)}  # arms whose seeds are not ARM_SEEDS (FINDINGS 4e)
SWEEPS = (
    abl.Sweep("train.batch_size", "batch size N (samples per view)", (256, 512, 1024), "log"),
    abl.Sweep("loss.temperature", "temperature τ", (0.02, 0.1, 0.5), "log"),
    abl.Sweep("optim.weight_decay", "weight decay", (0.0, 1e-4, 5e-4), "symlog"),
)


def base_spec(data: Path | None = None) -> RunSpec:
    """``paper_cpu``; with ``data``, the paper's CIFAR-10 preset on the dataset folder (as the paper
    figures take it: ``paper_figures.runs.base_spec``)."""
    if data is None:
        return RunSpec(CPU_PRESET)
    return RunSpec(GPU_PRESET, (f"data.root={json.dumps(str(Path(data).expanduser().resolve()))}",))


@dataclass(frozen=True)
class Design:
    """What the study trains: the arms with their seeds, the sweeps with theirs (tests shrink it)."""

    arms: dict = field(default_factory=lambda: dict(ARMS))
    arm_seeds: tuple = ARM_SEEDS
    # Per-arm exceptions to arm_seeds, by arm name; a name that is not among the arms is ignored.
    seeds_of: dict = field(default_factory=lambda: dict(ARM_SEEDS_OF))
    sweeps: tuple = SWEEPS
    ablation_seeds: tuple = ABLATION_SEEDS

    def seeds(self, arm: str) -> tuple:
        """The training seeds of one arm."""
        return tuple(self.seeds_of.get(arm, self.arm_seeds))


def needed(base: RunSpec, design: Design = Design(), ablations: bool = True) -> list[RunSpec]:
    """Every run of the study, arms first (seed by seed, so the arms reach a look together), then
    the ablations (seed by seed); a config already listed is not listed again."""
    seeds = {name: design.seeds(name) for name in design.arms}
    order = [
        seed_specs(base.with_overrides(*over), [seeds[name][i]])[0]
        for i in range(max(map(len, seeds.values()), default=0))
        for name, over in design.arms.items()
        if i < len(seeds[name])
    ]
    if ablations:
        plan = abl.plan(base, design.sweeps, design.ablation_seeds)
        order += [specs[i] for i in range(len(design.ablation_seeds)) for grid in plan.values() for specs in grid]
    out, seen = [], set()
    for spec in order:
        key = config_hash(spec.config())
        if key not in seen:
            seen.add(key)
            out.append(spec)
    return out


@dataclass
class ArmResult:
    """One arm: its runs, pooled analysis (rule v3 over its seeds) and per-seed backbone kNN (%)."""

    name: str
    spec: str
    runs: list[str]
    pooled: PooledAnalysis
    knn: list[float]
    random_knn: list[float]

    @classmethod
    def from_json(cls, data) -> "ArmResult":
        return cls(**{**data, "pooled": PooledAnalysis.from_json(data["pooled"])})


@dataclass
class PaperRegime:
    """The study's record (``paper_regime.json``): the arms and the ablations."""

    base: str
    arms: list[ArmResult]
    ablations: abl.Ablations | None
    version: int = PAPER_REGIME_VERSION

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data) -> "PaperRegime":
        if not isinstance(data, dict) or data.get("version") != PAPER_REGIME_VERSION:
            raise DataError(f"paper-regime record is not version {PAPER_REGIME_VERSION}; make it again")
        arms = [ArmResult.from_json(a) for a in data["arms"]]
        sweeps = abl.Ablations.from_json(data["ablations"]) if data.get("ablations") else None
        return cls(data["base"], arms, sweeps, data["version"])


def read_paper_regime(path) -> PaperRegime:
    """A saved record (``reproduce --paper``'s ``paper/paper_regime.json``, or the project's
    ``experiments/paper_regime_cpu.json``); ``DataError`` naming the file when it is not one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"paper-regime record {path} not found; deepfusion reproduce --paper writes one") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path} is not a readable paper-regime record ({err})") from None
    try:
        return PaperRegime.from_json(data)
    except (KeyError, TypeError, AttributeError) as err:
        raise DataError(f"{path} is not a paper-regime record (missing or malformed {err})") from None
    except DataError as err:
        raise DataError(f"{path}: {err}") from None


def arm_result(base: RunSpec, name: str, overrides, seeds, root, log=None, train_fn=None) -> ArmResult:
    """One arm's seeds from the cache (trained when missing), analysed and judged together."""
    spec = base.with_overrides(*overrides)
    results = run_all(seed_specs(spec, seeds), root, log=log, train_fn=train_fn)
    pooled = analyze_runs([r.run_dir for r in results], AnalysisOptions(), log=log)  # FINDINGS 4c's settings
    return ArmResult(
        name,
        spec.describe(),
        [r.describe() for r in results],
        pooled,
        [r.eval.percent("knn") for r in results],
        [r.eval.percent("random_knn") for r in results],
    )


def paper_regime(
    root, base: RunSpec | None = None, design: Design = Design(), ablations: bool = True, log=None, train_fn=None
) -> PaperRegime:
    """The whole study under ``root`` (runs trained when missing): every arm, then the ablations."""
    base = base or base_spec()
    arms = [arm_result(base, name, over, design.seeds(name), root, log, train_fn) for name, over in design.arms.items()]
    sweeps = None
    if ablations:
        sweeps = abl.ablations(base, design.sweeps, design.ablation_seeds, root, log, train_fn, attention=True)
    return PaperRegime(base.describe(), arms, sweeps)


def _ci(ci) -> str:
    return "n/a" if ci is None else f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def _mean_sd(values) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.mean():+.2f} (sd {v.std(ddof=1):.2f})" if v.size > 1 else f"{v.mean():+.2f}"


def format_paper_regime(record: PaperRegime) -> str:
    """The record in words: one line per arm (verdict, last-layer ratio and its nulls, kNN gain), then
    one line per swept value of the ablations."""
    lines = [f"paper regime: {record.base}", ""]
    head = f"{'arm':<16} {'seeds':>5}  {'verdict':<14} {'last ratio [CI]':<22} {'perm q975':>9} {'untrained':>9}"
    lines += [head + "  kNN gain over random (points)", "-" * (len(head) + 32)]
    for arm in record.arms:
        v = arm.pooled.verdict
        untrained = f"{v.untrained_null.effect:.2f}x" if v.untrained_null.available else "n/a"
        gain = np.asarray(arm.knn) - np.asarray(arm.random_knn)
        lines.append(
            f"{arm.name:<16} {v.seeds:>5}  {v.outcome:<14} {f'{v.last_layer_ratio:.2f}x {_ci(v.effect_ci)}':<22} "
            f"{v.permutation_null.effect_q975:>8.2f}x {untrained:>9}  {_mean_sd(gain)}"
        )
    if record.ablations is not None and record.ablations.sweeps[0].ratio is not None:
        lines += ["", "ablations (exploratory): kNN gain over random (points) and last-layer ratio, per swept value"]
        for sweep in record.ablations.sweeps:
            for value, knn, rnd, ratio in zip(sweep.values, sweep.knn, sweep.random_knn, sweep.ratio):
                gain = np.asarray(knn) - np.asarray(rnd)
                setting = f"{sweep.key}={value:g}"
                lines.append(
                    f"  {setting:<26} seeds {len(knn)}  kNN gain {_mean_sd(gain):<20} ratio {np.mean(ratio):.2f}x"
                )
    return "\n".join(lines)
