"""``ArrayDataset``: a whole dataset held as two tensors, and the splits every loader shares.

Datasets here are small enough to live in memory (Tiny-ImageNet's train split is 1.2 GB as uint8),
so training indexes one tensor on the device instead of running a per-sample loader.
Images are uint8 ``(N, C, H, W)``, vectors float32 ``(N, d)``, labels int64 ``(N,)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from deepfusion.errors import ConfigError, DataError

KINDS = ("image", "vector")


@dataclass
class ArrayDataset:
    x: torch.Tensor  # (N, C, H, W) uint8 images or (N, d) float32 vectors
    y: torch.Tensor  # (N,) int64 labels in [0, num_classes)
    num_classes: int
    kind: str  # "image" or "vector"
    input_shape: tuple  # x.shape[1:]
    class_names: tuple = ()  # one name per class; empty -> "0", "1", ...
    name: str = "dataset"
    label_values: tuple = ()  # the label each class had in the file, when the loader remapped them (npz)

    def __post_init__(self):
        where = f"dataset {self.name!r}"
        if isinstance(self.x, np.ndarray):
            self.x = torch.from_numpy(np.ascontiguousarray(self.x))
        if isinstance(self.y, np.ndarray):
            self.y = torch.from_numpy(np.ascontiguousarray(self.y))
        if not isinstance(self.x, torch.Tensor) or not isinstance(self.y, torch.Tensor):
            raise DataError(
                f"{where}: x and y must be torch tensors or numpy arrays, got "
                f"{type(self.x).__name__} and {type(self.y).__name__}"
            )
        if self.kind not in KINDS:
            raise DataError(f"{where}: kind={self.kind!r} is not valid; choose from {', '.join(KINDS)}")
        if self.kind == "image" and (self.x.dtype != torch.uint8 or self.x.ndim != 4):
            raise DataError(
                f"{where}: images must be a uint8 tensor (N, C, H, W), got {self.x.dtype} "
                f"of shape {tuple(self.x.shape)}"
            )
        if self.kind == "vector" and (self.x.dtype != torch.float32 or self.x.ndim != 2):
            raise DataError(
                f"{where}: vectors must be a float32 tensor (N, d), got {self.x.dtype} of shape {tuple(self.x.shape)}"
            )
        if self.x.ndim and min(self.x.shape[1:], default=1) < 1:
            raise DataError(f"{where}: samples of shape {tuple(self.x.shape[1:])} are empty")
        if self.y.dtype != torch.int64 or self.y.ndim != 1:
            raise DataError(
                f"{where}: labels must be an int64 tensor (N,), got {self.y.dtype} of shape {tuple(self.y.shape)}"
            )
        if len(self.x) != len(self.y):
            raise DataError(f"{where}: {len(self.x)} samples but {len(self.y)} labels; the two must match")
        if len(self.y) == 0:
            raise DataError(f"{where}: no samples; check the data files or lower test_fraction/limit")
        if not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise DataError(f"{where}: num_classes={self.num_classes!r} must be a positive integer")
        lo, hi = int(self.y.min()), int(self.y.max())
        if lo < 0 or hi >= self.num_classes:
            raise DataError(
                f"{where}: labels range over [{lo}, {hi}] but must lie in [0, {self.num_classes}) "
                f"for {self.num_classes} classes"
            )
        self.input_shape = tuple(int(s) for s in self.input_shape)
        if self.input_shape != tuple(self.x.shape[1:]):
            raise DataError(f"{where}: input_shape {self.input_shape} does not match x of shape {tuple(self.x.shape)}")
        if self.kind == "vector" and not bool(torch.isfinite(self.x).all()):
            raise DataError(f"{where}: vectors contain NaN or inf values")
        self.class_names = tuple(str(c) for c in self.class_names) or tuple(str(c) for c in range(self.num_classes))
        if len(self.class_names) != self.num_classes:
            raise DataError(f"{where}: {len(self.class_names)} class names for {self.num_classes} classes")
        self.label_values = tuple(int(v) for v in self.label_values)
        if self.label_values and len(self.label_values) != self.num_classes:
            raise DataError(f"{where}: {len(self.label_values)} original label values for {self.num_classes} classes")

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, indices) -> "ArrayDataset":
        """The samples at ``indices`` (any integer sequence or tensor), same classes and names."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64) if not isinstance(indices, torch.Tensor) else indices)
        idx = idx.to(device=self.x.device, dtype=torch.long)
        return replace(self, x=self.x[idx], y=self.y[idx.to(self.y.device)])

    def class_balanced_indices(
        self, per_class: int, generator: torch.Generator | None = None, seed: int | None = None
    ) -> torch.Tensor:
        """``per_class`` indices of every class, drawn without replacement, grouped in class order.

        A fixed, class-balanced analysis batch: the same ``seed`` (or generator state) gives the
        same indices. Raises ``DataError`` when a class has fewer than ``per_class`` samples.
        """
        if per_class < 1:
            raise DataError(f"per_class={per_class} must be at least 1")
        if generator is None:
            generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
        y = self.y.cpu()
        picks = []
        for c in range(self.num_classes):
            pool = torch.nonzero(y == c).flatten()
            if len(pool) < per_class:
                raise DataError(
                    f"class {c} ({self.class_names[c]}) of {self.name!r} has {len(pool)} samples, "
                    f"fewer than per_class={per_class}; lower per_class to at most {len(pool)}"
                )
            order = torch.randperm(len(pool), generator=generator, device=generator.device).cpu()
            picks.append(pool[order[:per_class]].sort().values)
        return torch.cat(picks)

    def to(self, device) -> "ArrayDataset":
        """The same dataset with ``x`` and ``y`` on ``device``."""
        return replace(self, x=self.x.to(device), y=self.y.to(device))


def stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices: ``test_fraction`` of every class goes to test, disjoint and seeded.

    Each class with at least two samples keeps at least one in each part; a single-sample class
    stays in train. Indices come back sorted, so the split does not reorder the data.
    """
    y = np.asarray(y)
    if len(y) == 0:
        raise DataError("no samples to split into train and test; the dataset is empty")
    rng = np.random.default_rng([int(seed), 0x5EED])
    train, test = [], []
    for c in np.unique(y):
        pool = np.flatnonzero(y == c)
        pool = pool[rng.permutation(len(pool))]
        k = int(round(len(pool) * test_fraction))
        if len(pool) >= 2:
            k = min(max(k, 1), len(pool) - 1)
        else:
            k = 0
        test.append(pool[:k])
        train.append(pool[k:])
    if test_fraction > 0 and not any(len(t) for t in test):
        raise DataError(
            f"every one of the {len(train)} classes holds a single sample, so none can be held out for "
            "testing; store at least two samples per class, or give the test split itself (x_test and "
            "y_test in an .npz)"
        )
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def stratified_take(y: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Sorted indices of about ``count`` samples, each class kept in proportion (at least one each)."""
    y = np.asarray(y)
    if count >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng([int(seed), 0x7A4E])
    keep = []
    for c in np.unique(y):
        pool = np.flatnonzero(y == c)
        k = max(1, int(round(len(pool) * count / len(y))))
        keep.append(pool[rng.permutation(len(pool))[:k]])
    return np.sort(np.concatenate(keep))


def labels_array(raw, source: str, expected: int | None = None) -> np.ndarray:
    """Labels as int64, with a ``DataError`` naming ``source`` for non-integer, negative or misshapen input."""
    try:
        y = np.asarray(raw)
    except (ValueError, TypeError, OverflowError) as err:
        raise DataError(f"{source}: labels are not a flat list of integers ({err})") from None
    if y.ndim != 1:
        raise DataError(f"{source}: labels must be one-dimensional, got shape {y.shape}")
    if y.dtype.kind == "f" and len(y) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        y = y.astype(np.int64)
    if y.dtype.kind not in "iu" and not (y.dtype == bool or len(y) == 0):
        example = ""
        if y.dtype.kind == "f":
            bad = y[~(np.isfinite(y) & (y == np.round(y)))]
            example = f" such as {bad[0].item()!r}" if len(bad) else ""
        raise DataError(
            f"{source}: labels must be integers (class ids), got dtype {y.dtype}{example}; "
            "map class names or scores to 0, 1, 2, ... first"
        )
    if expected is not None and len(y) != expected:
        raise DataError(f"{source}: {len(y)} labels for {expected} samples; the two must match")
    if len(y) and int(y.min()) < 0:
        raise DataError(
            f"{source}: labels range over [{int(y.min())}, {int(y.max())}]; negative labels are refused "
            "(-1 often marks an unlabelled sample): drop those samples or shift the labels to 0, 1, 2, ..."
        )
    if len(y) and int(y.max()) > np.iinfo(np.int64).max // 2:
        raise DataError(f"{source}: labels range over [{int(y.min())}, {int(y.max())}]; labels must be 0, 1, 2, ...")
    return y.astype(np.int64)


def check_label_range(y: np.ndarray, num_classes: int, source: str) -> None:
    """``DataError`` unless every label lies in ``[0, num_classes)``."""
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise DataError(
            f"{source}: labels range over [{int(y.min())}, {int(y.max())}] but must lie in "
            f"[0, {num_classes}) for {num_classes} classes"
        )


def choose_split(x: np.ndarray, y: np.ndarray, split: str, test_fraction: float, seed: int):
    """The ``split`` part of (x, y) under the seeded stratified split (for data without a test split)."""
    train, test = stratified_split(y, test_fraction, seed)
    idx = train if split == "train" else test
    return x[idx], y[idx]


def int_option(name: str, value, minimum: int = 1) -> int:
    """A loader option that must be an integer >= ``minimum`` (``ConfigError`` otherwise)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"data option {name}={value!r} must be an integer >= {minimum}")
    return int(value)


def float_option(name: str, value, low: float, high: float, closed: bool = True) -> float:
    """A loader option that must be a finite number in ``[low, high]`` (open interval unless ``closed``)."""
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = np.isfinite(value) and (low <= value <= high if closed else low < value < high)
    if not ok:
        bounds = f"[{low}, {high}]" if closed else f"({low}, {high})"
        raise ConfigError(f"data option {name}={value!r} must be a number in {bounds}")
    return value


def bool_option(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"data option {name}={value!r} must be true or false")
    return value


def default_root() -> str:
    """Where file datasets are looked for without ``data.root``: ``$DEEPFUSION_DATA``, else ``./data``."""
    return os.environ.get("DEEPFUSION_DATA") or "data"


def find_folder(root, folder: str, marker: str) -> tuple[Path | None, list[Path]]:
    """The dataset folder, ``root`` itself or ``root/folder``, whichever holds the file ``marker``
    (None if neither), and the two candidates looked at, for the error message."""
    base = Path(root if root is not None else default_root())
    cands = [base, base / folder]
    return next((c for c in cands if (c / marker).is_file()), None), cands
