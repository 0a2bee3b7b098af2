"""Writers of tiny dataset files in each format the loaders read (shared by the data tests)."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np


def idx_bytes(arr: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes holding ``arr``."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    return struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def write_idx(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray, gz: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, arr in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
        data = idx_bytes(arr)
        if gz:
            (folder / (stem + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)


def write_fashion(folder: Path, n_train: int = 12, n_test: int = 6, gz: bool = False, seed: int = 0):
    rng = np.random.default_rng(seed)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        write_idx(folder, prefix, x, y, gz)
        out[prefix] = (x, y)
    return out


def cifar_pickle(data: np.ndarray, labels, label_key: bytes, protocol: int = 2) -> bytes:
    return pickle.dumps({b"batch_label": b"test", label_key: list(labels), b"data": data}, protocol=protocol)


def write_cifar10(
    folder: Path, per_batch: int = 4, seed: int = 0, test_batch: int | None = None, balanced: bool = False
) -> dict:
    """CIFAR-10's python batches: five training batches of ``per_batch`` random images and a test
    batch of ``test_batch`` (default ``per_batch``); labels random, or cycling through the 10 classes
    when ``balanced`` (so a batch of 10k images holds k of each)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = {"train": ([], []), "test": ([], [])}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n = per_batch if name != "test_batch" or test_batch is None else test_batch
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = (np.arange(n) % 10 if balanced else rng.integers(0, 10, n)).tolist()
        (folder / name).write_bytes(cifar_pickle(x, y, b"labels", protocol=2 if name != "test_batch" else 4))
        part = "test" if name == "test_batch" else "train"
        out[part][0].append(x)
        out[part][1].extend(y)
    meta = {b"label_names": [f"c{i}".encode() for i in range(10)], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return {k: (np.concatenate(v[0]).reshape(-1, 3, 32, 32), np.array(v[1])) for k, v in out.items()}


def write_cifar100(folder: Path, n: int = 6, seed: int = 0) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = {}
    for name in ("train", "test"):
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = rng.integers(0, 100, n).tolist()
        blob = {b"filenames": [], b"fine_labels": y, b"coarse_labels": [v // 5 for v in y], b"data": x}
        (folder / name).write_bytes(pickle.dumps(blob, protocol=2))
        out[name] = (x.reshape(-1, 3, 32, 32), np.array(y))
    meta = {
        b"fine_label_names": [f"f{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"k{i}".encode() for i in range(20)],
    }
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    return out


def write_tiny_imagenet(folder: Path, wnids=("n02", "n01"), per_class: int = 3, val_per_class: int = 2) -> None:
    """A Tiny-ImageNet folder; class k's images are filled with grey level 40 + 80 k (sorted wnid order)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (folder / "words.txt").write_text("".join(f"{w}\tthing {w}, other name\n" for w in wnids) + "n99\tunused\n")
    level = {w: 40 + 80 * k for k, w in enumerate(sorted(wnids))}
    for w in wnids:
        d = folder / "train" / w / "images"
        d.mkdir(parents=True)
        for i in range(per_class):
            mode, size = ("L", (64, 64)) if i == 1 else ("RGB", (48, 48) if i == 2 else (64, 64))
            Image.new(mode, size, level[w] if mode == "L" else (level[w],) * 3).save(d / f"{w}_{i}.JPEG", quality=95)
        (folder / "train" / w / f"{w}_boxes.txt").write_text("")
    (folder / "val" / "images").mkdir(parents=True)
    lines = []
    for w in wnids:
        for i in range(val_per_class):
            name = f"val_{w}_{i}.JPEG"
            Image.new("RGB", (64, 64), (level[w],) * 3).save(folder / "val" / "images" / name, quality=95)
            lines.append(f"{name}\t{w}\t0\t0\t10\t10")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
