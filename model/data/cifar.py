"""CIFAR-10 and CIFAR-100 from the official "python version" pickle folders (32x32 colour, 50k/10k).

CIFAR-10: ``cifar-10-batches-py/`` with ``data_batch_1`` .. ``data_batch_5``, ``test_batch`` and
``batches.meta``. CIFAR-100: ``cifar-100-python/`` with ``train``, ``test`` and ``meta``; the 100
fine labels are used. ``data.root`` may be that folder or the folder holding it (so one root can
serve CIFAR-10, CIFAR-100 and Tiny-ImageNet); without it, ``$DEEPFUSION_DATA`` or ``./data``.

Each file is a pickled dict with ``data`` (N x 3072 uint8, the red, green and blue 32x32 planes
row by row) and ``labels``/``fine_labels``. Files are unpickled by an unpickler that admits only
numpy arrays and plain Python values, so a foreign pickle cannot run code.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from deepfusion.errors import DataError
from deepfusion.model.data.base import ArrayDataset, check_label_range, find_folder, labels_array

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays and plain values")
        return super().find_class(module, name)


def read_pickle(path: Path) -> dict:
    """The dict in one CIFAR pickle, keys decoded to str; ``DataError`` naming the file otherwise."""
    try:
        obj = _SafeUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except Exception as err:  # a malformed pickle can fail in many ways; all mean "not a CIFAR file"
        raise DataError(f"{path}: not a readable CIFAR python pickle ({type(err).__name__}: {err})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict (CIFAR python version), got {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    d = read_pickle(path)
    for key in ("data", label_key):
        if key not in d:
            raise DataError(
                f"{path}: no {key!r} entry (found {', '.join(sorted(d)) or 'none'}); "
                "expected a CIFAR python-version batch"
            )
    data = d["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' must be a uint8 array of shape (N, 3072), got {desc}")
    y = labels_array(d[label_key], f"{path} ({label_key!r})", expected=len(data))
    return data.reshape(-1, 3, 32, 32), y


def _names(path: Path, key: str, count: int) -> tuple[str, ...]:
    d = read_pickle(path)
    names = d.get(key)
    if not isinstance(names, (list, tuple)) or len(names) != count:
        raise DataError(f"{path}: expected {key!r} to list {count} class names")
    return tuple(n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names)


def _missing(name: str, cands: list[Path], files: list[str]) -> DataError:
    return DataError(
        f"{name} not found: expected {', '.join(files)} in {cands[0]} or {cands[1]}. Download and "
        "unpack the python version, then pass its folder (or the folder holding it) as data.root"
    )


def load_cifar10(root=None, split="train", seed=0) -> ArrayDataset:
    folder, cands = find_folder(root, "cifar-10-batches-py", "batches.meta")
    files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    if folder is None or not all((folder / f).is_file() for f in files + ["batches.meta"]):
        raise _missing("CIFAR-10", cands, ["data_batch_1..5", "test_batch", "batches.meta"])
    parts = [_batch(folder / f, "labels") for f in files]
    x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    check_label_range(y, 10, f"CIFAR-10 {split} labels in {folder}")
    names = _names(folder / "batches.meta", "label_names", 10)
    return ArrayDataset(x, y, 10, "image", (3, 32, 32), names, "cifar10")


def load_cifar100(root=None, split="train", seed=0) -> ArrayDataset:
    folder, cands = find_folder(root, "cifar-100-python", "meta")
    name = "train" if split == "train" else "test"
    if folder is None or not all((folder / f).is_file() for f in (name, "meta")):
        raise _missing("CIFAR-100", cands, ["train", "test", "meta"])
    x, y = _batch(folder / name, "fine_labels")
    check_label_range(y, 100, f"CIFAR-100 {split} fine labels in {folder / name}")
    names = _names(folder / "meta", "fine_label_names", 100)
    return ArrayDataset(x, y, 100, "image", (3, 32, 32), names, "cifar100")
