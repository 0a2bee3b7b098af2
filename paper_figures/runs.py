"""Which runs the figures draw on: the presets of each mode, the heads compared, the results folder.

A run is named by a :class:`~deepfusion.experiments.runs.RunSpec` (preset + ``key=value`` overrides)
so captions can print exactly what was trained, and comes from the run cache
(:mod:`deepfusion.experiments.runs`) with its typed evaluation. Quick mode uses the ``digits``
preset (scikit-learn's bundled 8x8 digits, CPU-sized); paper mode the paper-scale presets on the
dataset folder the user gives.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from deepfusion.errors import DataError
from deepfusion.model.network.registry import HEADS

if TYPE_CHECKING:
    from deepfusion.experiments.runs import RunSpec

DEFAULT_RESULTS = Path("results") / "runs"  # relative to the working folder
QUICK_PRESET = "digits"
# Quick mode trains the digits preset for half its 30 epochs: every quick figure shares these runs
# (F4's transformer seeds are F1/F2's runs and F5's base), and the quick main job stays at a few minutes
# on two CPU cores.
QUICK_EPOCHS = 15
PAPER_PRESETS = ("cifar10", "cifar100", "tiny_imagenet")


def heads() -> tuple[str, ...]:
    """Every registered head, in registration order: the rows of the head comparison."""
    return HEADS.names()


def head_label(name: str) -> str:
    """The label figures and tables give a head (or the random-backbone baseline)."""
    return "Random backbone" if name == "random" else HEADS.get(name).label


# accuracies of an evaluation (EvalResult) -> what the tables call them
METRICS = {"linear": "linear probe", "knn": "kNN", "head_loo1nn": "head LOO 1-NN"}


def datasets(quick: bool) -> tuple[str, ...]:
    """The presets a figure runs on: digits in quick mode, the paper's three datasets otherwise."""
    return (QUICK_PRESET,) if quick else PAPER_PRESETS


def base_spec(preset: str, data: str | Path | None) -> RunSpec:
    """The preset as is, pointed at the user's dataset folder when one is given; the quick preset
    with its epochs shortened to ``QUICK_EPOCHS``."""
    # Imported here: `deepfusion figures --help` reads DEFAULT_RESULTS from this module, and the run cache
    # imports torch (measured: --help 4.3 s with it, 0.3 s without, on a busy 2-core CPU).
    from deepfusion.experiments.runs import RunSpec

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
