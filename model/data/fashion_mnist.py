"""Fashion-MNIST from its IDX files (28x28 grey clothing images, 10 classes, 60k/10k split).

Files: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte``, each plain or gzipped (``.gz``). Without ``data.root`` they are looked
for in the folder of the Debian package ``dataset-fashion-mnist``. The folder itself, or a
``fashion-mnist``/``FashionMNIST/raw`` folder inside it, may hold them.

IDX format: big-endian; bytes 0-1 zero, byte 2 the element type (0x08 = unsigned byte), byte 3 the
number of dimensions, then one 4-byte size per dimension, then the data.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from deepfusion.errors import DataError
from deepfusion.model.data.base import ArrayDataset, check_label_range

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
SUBFOLDERS = (".", "fashion-mnist", "fashion_mnist", "FashionMNIST/raw")


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """The uint8 array of one IDX file (plain or ``.gz``), checked against its header."""
    expected = f"an IDX file of unsigned bytes with {ndim} dimension(s) (magic 0x0000080{ndim})"
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(
            f"{path}: cannot read ({err}); expected {expected}" + (", gzip-compressed" if path.suffix == ".gz" else "")
        ) from None
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path}: only {len(raw)} bytes, too short for the header of {expected}")
    zero, dtype, dims = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08 or dims != ndim:
        raise DataError(f"{path}: magic number 0x{int.from_bytes(raw[:4], 'big'):08x} is wrong; expected {expected}")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    body = len(raw) - 4 - 4 * ndim
    if int(np.prod(shape, dtype=object)) != body:
        raise DataError(
            f"{path}: the header declares shape {shape} ({int(np.prod(shape, dtype=object))} bytes) "
            f"but the file holds {body} data bytes; the file is truncated or not {expected}"
        )
    if 0 in shape:
        raise DataError(f"{path}: the header declares shape {shape}, which holds no data; expected {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def find_file(folders: list[Path], stem: str) -> Path | None:
    for folder in folders:
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def load(root=None, split="train", seed=0) -> ArrayDataset:
    base = Path(root if root is not None else DEFAULT_ROOT)
    folders = [base / sub for sub in SUBFOLDERS]
    prefix = "train" if split == "train" else "t10k"
    stems = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    paths = [find_file(folders, s) for s in stems]
    if None in paths:
        missing = [s for s, p in zip(stems, paths) if p is None]
        raise DataError(
            f"Fashion-MNIST {split} split not found: missing {' and '.join(m + '[.gz]' for m in missing)}; looked in "
            f"{', '.join(str(f) for f in folders)}. Put the four IDX files (train-images-idx3-ubyte, "
            "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, plain or .gz) in one "
            "folder and pass it as data.root (on Debian: apt install dataset-fashion-mnist)"
        )
    images, labels = read_idx(paths[0], 3), read_idx(paths[1], 1)
    if len(images) != len(labels):
        raise DataError(
            f"{paths[0]} holds {len(images)} images but {paths[1]} holds {len(labels)} labels; "
            "the two files must come from the same split"
        )
    y = labels.astype(np.int64)
    check_label_range(y, 10, str(paths[1]))
    x = images[:, None].copy()  # (N, 1, 28, 28), writable
    return ArrayDataset(x, y, 10, "image", x.shape[1:], CLASS_NAMES, "fashion_mnist")
