"""``EvalResult``: a run's final evaluation as a typed, versioned record (the run folder's ``eval.json``).

This module alone spells the keys of ``eval.json``: :func:`deepfusion.model.runs.evaluate.evaluate_model`
returns an ``EvalResult``, the training loop adds the step it describes and saves it, and every
reader (the run cache, the commands, the figures, sanity) loads it with :meth:`EvalResult.load`.

Accuracies lie in [0, 1]; each has a Wilson 95% interval, written as ``<name>_ci`` beside it. Files
written before the record had a version (no ``version`` key) still load: keys they lack are None,
a step recorded only as ``train_steps`` is their step, and an accuracy stored the oldest way, as
``{"accuracy": ...}``, is read as its number.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from deepfusion.errors import DataError, RunError, first_line
from deepfusion.model.runs.layout import write_json

VERSION = 1

# The accuracies, trained model first, then each one's baseline (what it is read against).
SCORES = (
    "knn",
    "linear",
    "head_loo1nn",
    "head_knn",
    "random_knn",
    "random_linear",
    "untrained_head_loo1nn",
    "untrained_head_knn",
)
BASELINE = {
    "knn": "random_knn",
    "linear": "random_linear",
    "head_loo1nn": "untrained_head_loo1nn",
    "head_knn": "untrained_head_knn",
}
# what tables call each trained-model accuracy, and what its baseline is
LABELS = {
    "knn": ("kNN (backbone)", "random backbone"),
    "linear": ("linear probe (backbone)", "random backbone"),
    "head_loo1nn": ("head leave-one-out 1-NN", "untrained head"),
    "head_knn": ("kNN (head outputs)", "untrained head"),
}
CI_SUFFIX = "_ci"


@dataclass(frozen=True)
class EvalResult:
    """The offline evaluation of one checkpoint (see ``model/runs/evaluate.py`` for each metric)."""

    knn: float | None = None
    linear: float | None = None  # None when eval.linear_epochs is 0
    head_loo1nn: float | None = None
    head_knn: float | None = None
    random_knn: float | None = None
    random_linear: float | None = None
    untrained_head_loo1nn: float | None = None
    untrained_head_knn: float | None = None
    intervals: dict = field(default_factory=dict)  # score name -> (low, high), Wilson 95%
    interval: str | None = None  # how the intervals were made, in words
    # the settings used
    knn_k: int | None = None
    knn_t: float | None = None
    linear_epochs: int | None = None
    linear_fraction: float | None = None
    linear_optimizer: str | None = None
    linear_protocol: str | None = None
    head_batch: int | None = None
    head_batches: int | None = None
    head_batch_min: int | None = None
    head_batch_max: int | None = None
    n_train: int | None = None
    n_test: int | None = None
    head_scored: int | None = None
    feature_dim: int | None = None
    num_classes: int | None = None
    seed: int | None = None
    protocol: str | None = None
    eval_wall_s: float | None = None
    # the checkpoint it describes, and its training
    step: int | None = None
    finished: bool | None = None
    train_steps: int | None = None
    train_wall_s: float | None = None
    version: int = VERSION

    def score(self, name: str) -> float | None:
        """The accuracy ``name`` (one of :data:`SCORES`) in [0, 1], None when it was not measured."""
        if name not in SCORES:
            raise DataError(f"no accuracy named {name!r} in an evaluation; choose from {', '.join(SCORES)}")
        return getattr(self, name)

    def interval_of(self, name: str) -> tuple[float, float] | None:
        """The Wilson 95% interval ``(low, high)`` of the accuracy ``name``, None when missing."""
        self.score(name)  # checks the name
        ci = self.intervals.get(name)
        return (float(ci[0]), float(ci[1])) if ci else None

    def percent(self, name: str) -> float:
        """The accuracy ``name`` in percent; a ``RunError`` when the evaluation lacks it."""
        value = self.score(name)
        if value is None or not math.isfinite(value):
            raise RunError(
                f"the evaluation has no {name!r} accuracy (measured: {', '.join(self.measured())}); "
                "rerun it with deepfusion eval --run RUN_DIR"
            )
        return 100.0 * value

    def measured(self) -> list[str]:
        """The accuracies this evaluation holds, in :data:`SCORES` order."""
        return [name for name in SCORES if getattr(self, name) is not None]

    def with_training(self, step: int, finished: bool, train_wall_s: float | None = None) -> "EvalResult":
        """This evaluation stamped with the checkpoint it describes (and the training time when known)."""
        return dataclasses.replace(
            self, step=int(step), finished=bool(finished), train_steps=int(step), train_wall_s=train_wall_s
        )

    def to_json(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            if f.name == "intervals":
                continue
            out[f.name] = getattr(self, f.name)
            if f.name in SCORES:
                ci = self.intervals.get(f.name)
                out[f.name + CI_SUFFIX] = list(ci) if ci else None
        return out

    @classmethod
    def from_json(cls, data, what: str = "evaluation") -> "EvalResult":
        """The record of a parsed ``eval.json`` (this version or one without a version field)."""
        if not isinstance(data, dict):
            raise DataError(f"{what} is not a JSON object; rerun the evaluation with deepfusion eval --run RUN_DIR")
        version = data.get("version")
        if version is not None and version != VERSION:
            raise DataError(
                f"{what} has record version {version!r}, this code reads {VERSION} (or none); "
                "rerun the evaluation with deepfusion eval --run RUN_DIR"
            )
        names = {f.name for f in dataclasses.fields(cls)} - {"intervals", "version"}
        values = {k: data[k] for k in names if k in data}
        for name in SCORES:
            values[name] = _accuracy(data.get(name), name, what)
        values["intervals"] = {
            name: (float(data[name + CI_SUFFIX][0]), float(data[name + CI_SUFFIX][1]))
            for name in SCORES
            if _pair(data.get(name + CI_SUFFIX))
        }
        if values.get("step") is None and data.get("train_steps") is not None:
            values["step"] = data["train_steps"]
        return cls(**values)

    @classmethod
    def load(cls, path: str | Path) -> "EvalResult":
        """The record in ``path`` (a run folder's ``eval.json``); a ``RunError`` naming the file when it
        cannot be read."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            why = err.strerror if isinstance(err, OSError) and err.strerror else first_line(err)
            raise RunError(
                f"cannot read the evaluation {path} ({why}); evaluate the run again with "
                f"deepfusion eval --run {path.parent}"
            ) from None
        return cls.from_json(data, what=str(path))

    def save(self, path: str | Path) -> Path:
        """Write the record to ``path`` atomically."""
        return write_json(path, self.to_json())


def _pair(value) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value)


def _accuracy(value, name: str, what: str) -> float | None:
    if isinstance(value, dict):  # the oldest files: {"accuracy": ...}
        value = value.get("accuracy", value.get("top1"))
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(
            f"{what}: {name} is {value!r}, not an accuracy; rerun the evaluation with deepfusion eval --run RUN_DIR"
        )
    return float(value)
