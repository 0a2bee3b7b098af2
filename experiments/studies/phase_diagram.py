"""F6's study: where Deep Fusion lives, on the theory's own data.

The transformer head is trained alone (preset ``theory_head``: frozen identity backbone) on features
of ``data.name=theory``: C classes with simplex-ETF means and within-class spread sigma, so S1's
radius eps_max is known for every run. Each cell (sigma / eps_max, loss temperature, and at the
centre the scope, LayerNorm placement, batch size and class count) is trained over its seeds through
the run cache and judged by the Deep Fusion study (rule v3); the record keeps, per cell, the last
layer's ratio to chance, its interval, the outcome and the S8 prediction of that ratio.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from deepfusion.errors import DataError
from deepfusion.experiments.runs import RunSpec, run_all, seed_specs
from deepfusion.experiments.studies.deep_fusion import analyze_runs
from deepfusion.model.data.theory_features import etf_rho, theory_numbers

PHASE_VERSION = 1
PRESET = "theory_head"
QUICK_EPOCHS = 30  # of the preset's 100
CENTER = {"ratio": 8.0, "temperature": 0.5}


@dataclass(frozen=True)
class Cell:
    ratio: float  # sigma / eps_max
    temperature: float
    classes: int = 4
    scope: str = "both_views"
    norm: str = "post"
    batch: int = 256

    def spec(self, quick: bool) -> RunSpec:
        sigma = self.ratio * theory_numbers(self.classes, etf_rho(self.classes), 1.0)["eps_max"]
        overrides = (
            f"data.options.num_classes={self.classes}",
            f"data.options.sigma={sigma:.6g}",
            f"loss.temperature={self.temperature}",
            f"model.scope={self.scope}",
            f"model.norm={self.norm}",
            f"train.batch_size={self.batch}",
        )
        if quick:
            overrides += (f"train.epochs={QUICK_EPOCHS}",)
        return RunSpec(PRESET, overrides)


@dataclass(frozen=True)
class JudgedCell:
    """One cell judged over its seeds: what the figure draws."""

    cell: Cell
    effect: float  # the last layer's ratio to chance, pooled over seeds
    ci: list[float] | None  # its interval over seeds (None with one seed)
    outcome: str  # rule v3
    s8: float | None  # the S8 prediction of that ratio from the trained weights
    runs: list[str]  # the runs it pools, described


@dataclass(frozen=True)
class PhaseDiagram:
    quick: bool
    seeds: int  # training seeds per cell
    panels: dict[str, list[JudgedCell]]  # "main" and, in full mode, "scope", "batch", "classes"
    version: int = PHASE_VERSION

    def cells(self) -> list[JudgedCell]:
        return [c for cells in self.panels.values() for c in cells]

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data) -> "PhaseDiagram":
        if not isinstance(data, dict) or data.get("version") != PHASE_VERSION:
            raise DataError(f"phase diagram record is not version {PHASE_VERSION}; make it again")
        panels = {
            k: [JudgedCell(**{**c, "cell": Cell(**c["cell"])}) for c in cells] for k, cells in data["panels"].items()
        }
        return cls(**{**data, "panels": panels})


def grid(quick: bool) -> dict[str, list[Cell]]:
    """{panel: cells}: the main (sigma, temperature) grid and the side sweeps at its centre."""
    if quick:
        return {"main": [Cell(r, t) for t in (0.1, 0.5) for r in (2.0, 8.0)]}
    c = Cell(CENTER["ratio"], CENTER["temperature"])
    return {
        "main": [Cell(r, t) for t in (0.02, 0.1, 0.5) for r in (0.5, 2.0, 8.0, 32.0)],
        "scope": [
            Cell(c.ratio, c.temperature, scope=s, norm=n)
            for n in ("post", "pre")
            for s in ("both_views", "per_view", "mask_pair")
        ],
        "batch": [Cell(c.ratio, c.temperature, batch=b) for b in (64, 256, 1024)],
        "classes": [Cell(c.ratio, c.temperature, classes=k) for k in (2, 4, 10)],
    }


def seeds_per_cell(quick: bool, seeds: int) -> int:
    return 1 if quick else seeds


def needed(quick: bool, seeds: int = 3) -> list[RunSpec]:
    """Every run the study trains (for ``experiments.runs.prefetch``)."""
    n = seeds_per_cell(quick, seeds)
    return [s for cells in grid(quick).values() for c in cells for s in seed_specs(c.spec(quick), n)]


def judge(cell: Cell, quick: bool, root, seeds: int, log=None, train_fn=None) -> JudgedCell:
    """Train or load the cell's seeds and judge them together (``deep_fusion.analyze_runs``)."""
    results = run_all(seed_specs(cell.spec(quick), seeds_per_cell(quick, seeds)), root, log=log, train_fn=train_fn)
    pooled = analyze_runs([r.run_dir for r in results], log=log)
    v = pooled.verdict
    s8 = pooled.layers[-1].get("predicted_mass")
    return JudgedCell(
        cell,
        v.effect,
        v.effect_ci,
        v.outcome,
        None if s8 is None else s8 / pooled.chance,
        [r.describe() for r in results],
    )


def phase_diagram(quick: bool, root, seeds: int = 3, log=None, train_fn=None) -> PhaseDiagram:
    """Every cell of every panel trained (or loaded) and judged."""
    panels = {
        panel: [judge(c, quick, root, seeds, log, train_fn) for c in cells] for panel, cells in grid(quick).items()
    }
    return PhaseDiagram(quick, seeds_per_cell(quick, seeds), panels)
