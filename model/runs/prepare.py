"""A run's data as the network sees it, and the record of how it was prepared (``data.json``).

After loading, a run's datasets go through :func:`prepare`: the class count is checked against the
sample count (a label of 10**6 would otherwise imply a million classes and exhaust memory in the
evaluation), and vector features are standardised with training-split statistics
(``data.standardize``, default true; see :mod:`deepfusion.model.data.standardize`) or, when used as
given, checked for a usable scale. The :class:`DataRecord` of a run holds those statistics and the
original labels of remapped classes; training writes it into the run folder and evaluation,
analysis and ``--resume`` reuse it instead of recomputing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from deepfusion.errors import DataError
from deepfusion.model.data.augment import PRESETS
from deepfusion.model.data.standardize import FeatureStats, check_scale, fit
from deepfusion.model.runs.data_source import DataSource

VERSION = 1


@dataclass(frozen=True)
class DataRecord:
    """What a run's data was and what was done to it before training."""

    dataset: str
    kind: str  # "image" or "vector"
    input_shape: tuple
    num_classes: int
    n_train: int
    n_test: int
    label_values: tuple = ()  # label in the file of each class 0..K-1, when the loader remapped them
    standardize: FeatureStats | None = None  # None: features used as given (or images)
    source: DataSource | None = None  # the data's path and fingerprint; None: built-in data, or not recorded

    def to_json(self) -> dict:
        return {
            "version": VERSION,
            "dataset": self.dataset,
            "kind": self.kind,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "label_values": list(self.label_values) or None,
            "standardize": self.standardize.to_json() if self.standardize else None,
            "source": self.source.to_json() if self.source else None,
        }

    @classmethod
    def from_json(cls, data, source: str) -> "DataRecord":
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise DataError(
                f"{source}: not a data record of version {VERSION}; retrain the run or delete the file "
                "to recompute it from the training split"
            )
        try:
            stats, where = data.get("standardize"), data.get("source")  # "source" absent: an older record
            return cls(
                str(data["dataset"]),
                str(data["kind"]),
                tuple(int(s) for s in data["input_shape"]),
                int(data["num_classes"]),
                int(data["n_train"]),
                int(data["n_test"]),
                tuple(int(v) for v in data.get("label_values") or ()),
                FeatureStats.from_json(stats, source) if stats is not None else None,
                DataSource.from_json(where, source) if where is not None else None,
            )
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(f"{source}: malformed data record ({type(err).__name__}: {err})") from None


def check_class_count(train, test) -> None:
    """A one-line ``DataError`` when the data holds a single class, or its labels imply more classes
    than there are samples."""
    n = len(train) + len(test)
    present = len(set(train.y.tolist()) | set(test.y.tolist()))
    if present < 2:
        raise DataError(
            f"dataset {train.name!r} holds a single class; every accuracy of a one-class data set is 1.0 "
            "and says nothing: give samples of at least two classes (training itself uses no labels, "
            "but every evaluation does)"
        )
    if train.num_classes > n:
        raise DataError(
            f"dataset {train.name!r}: its labels imply {train.num_classes} classes but train and test "
            f"hold only {n} samples; a label value far above the others (e.g. a missing-value code "
            "like 999999) is the usual cause"
        )


def prepare(cfg, train, test, record: DataRecord | None = None):
    """(train, test, record): the datasets the network sees and how they were made from the loaded ones.

    With a ``record`` (from the run folder) its statistics are reused; without one they are fitted
    on ``train``.
    """
    check_class_count(train, test)
    stats = None
    if train.kind == "vector" and cfg.data.standardize:
        stats = record.standardize if record is not None and record.standardize is not None else fit(train.x)
        train, test = stats.apply(train), stats.apply(test)
    elif train.kind == "vector":
        noise = cfg.data.aug_noise
        if noise is None and cfg.data.augment in ("vector", "default"):
            noise = PRESETS["vector"].noise
        check_scale(train, noise)
    new = DataRecord(
        train.name,
        train.kind,
        tuple(train.input_shape),
        int(train.num_classes),
        len(train),
        len(test),
        tuple(train.label_values),
        stats,
    )
    return train, test, new


def read_record(path: str | Path) -> DataRecord | None:
    """The record saved at ``path``, or None when there is none (a run from before records existed)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"cannot read {path} ({err}); delete it to recompute it from the training split") from None
    return DataRecord.from_json(data, str(path))
