"""Any dataset saved as one ``.npz`` file (``data.root`` is the file's path).

Arrays: ``x`` and ``y``, optionally ``x_test`` and ``y_test``; without a test pair, a seeded
class-stratified ``test_fraction`` of ``x`` is held out. Save one with
``numpy.savez("mydata.npz", x=x, y=y)``.

What ``x`` holds is read from its shape:

- 2-D ``(N, d)``: vectors, any real dtype, stored as float32 (must be finite there).
- 3-D ``(N, H, W)``: grey images, given one channel.
- 4-D: ``(N, C, H, W)`` or ``(N, H, W, C)``. With ``layout="auto"`` the channel axis is axis 1 if
  it has at most 4 entries, else axis 3 if that one does; ``layout="nchw"``/``"nhwc"`` says so
  explicitly (needed for, say, ``(N, 3, 3, 3)`` stored channels-last).

Image values: integers must lie in 0..255; floats in [0, 1] (scaled by 255). An array that holds
vectors but has more than two axes (say ``(N, 1, d)``) is read as images; store it 2-D.

Labels: integers (or floats with integer values), never negative (-1 often marks an unlabelled
sample, so it is refused rather than guessed at). The distinct labels of both splits, sorted,
become classes 0..K-1: labels 1..K, or {3, 7, 42}, are remapped, and the dataset's ``label_values``
keep the original label of each class. With the ``num_classes`` option the labels are taken as
class indices as they are (0..num_classes-1, no remapping).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepfusion.errors import ConfigError, DataError
from deepfusion.model.data.base import ArrayDataset, check_label_range, choose_split, int_option, labels_array

LAYOUTS = ("auto", "nchw", "nhwc")
VECTOR_HINT = "if x holds vectors, store it 2-D: numpy.savez(path, x=x.reshape(len(x), -1), y=y)"


def _read(path: Path) -> dict:
    if not path.is_file():
        raise DataError(
            f"npz dataset {path} not found; pass the path of a .npz file holding arrays x and y "
            "(optionally x_test and y_test) as data.root"
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {}
            for k in ("x", "y", "x_test", "y_test"):
                if k in z.files:
                    out[k] = _array(z, k, path)
            return out
    except DataError:
        raise
    except Exception as err:  # zip, header and dtype errors all mean "not a usable npz"
        raise DataError(
            f"{path}: not a readable .npz of plain arrays ({type(err).__name__}: {err}); "
            "save it with numpy.savez(path, x=..., y=...)"
        ) from None


def _array(z, key: str, path: Path) -> np.ndarray:
    """Array ``key`` of an open npz; an object array (pandas' ``.values`` of mixed columns) named as such,
    and a header that promises more data than the file holds refused before anything is allocated."""
    _check_promise(path, key)
    try:
        return z[key]
    except ValueError as err:
        if "pickle" not in str(err):
            raise
        cast = "y.astype(np.int64)" if key.startswith("y") else "x.astype(np.float32)"
        raise DataError(
            f"{path}: array {key!r} has dtype object (what pandas' .values gives for mixed columns), "
            f"which is not read, as loading it would run pickled code; convert it and save again, e.g. "
            f"{key}={cast.replace(cast[0], key, 1)} in numpy.savez"
        ) from None


def kind_of(shape: tuple, where: str) -> str:
    """``"vector"`` for 2-D ``x``, ``"image"`` for 3-D and 4-D; a ``DataError`` otherwise."""
    if len(shape) == 2:
        return "vector"
    if len(shape) in (3, 4):
        return "image"
    raise DataError(f"{where}: x has shape {tuple(shape)}; expected (N, d) vectors, (N, H, W) or 4-D images")


def _image_error(where: str, shape: tuple, problem: str) -> DataError:
    return DataError(f"{where}: read as images because x is {len(shape)}-D {tuple(shape)}; {problem}; {VECTOR_HINT}")


def channels_last(shape: tuple, layout: str, where: str) -> bool:
    """Whether a 4-D ``shape`` is (N, H, W, C) under ``layout`` (3-D arrays are grey (N, H, W))."""
    if len(shape) == 3:
        return False
    if layout == "nhwc" or (layout == "auto" and shape[1] > 4 and shape[3] <= 4):
        return True
    if layout == "auto" and shape[1] > 4:
        raise _image_error(
            where,
            shape,
            "cannot tell the channel axis (neither axis 1 nor axis 3 has at most "
            "4 entries); pass data.options.layout=nchw or nhwc",
        )
    return False


def image_shape(shape: tuple, layout: str, where: str) -> tuple:
    """(C, H, W) of the images a 3-D or 4-D array of ``shape`` holds."""
    if len(shape) == 3:
        return (1, *shape[1:])
    return (shape[3], shape[1], shape[2]) if channels_last(shape, layout, where) else tuple(shape[1:])


def _as_images(x: np.ndarray, layout: str, where: str) -> np.ndarray:
    """(N, C, H, W) uint8 from a 3-D or 4-D array."""
    shape = x.shape
    if x.ndim == 3:
        x = x[:, None]
    elif channels_last(shape, layout, where):
        x = x.transpose(0, 3, 1, 2)
    if min(x.shape[1:]) < 1:
        raise _image_error(where, shape, f"images of shape {x.shape[1:]} are empty")
    if x.dtype.kind in "iub":
        if x.size and (int(x.min()) < 0 or int(x.max()) > 255):
            raise _image_error(
                where, shape, f"integer pixel values range over [{int(x.min())}, {int(x.max())}] but must lie in 0..255"
            )
        return np.ascontiguousarray(x, dtype=np.uint8)
    if x.dtype.kind == "f":
        if not np.all(np.isfinite(x)) or (x.size and (x.min() < 0 or x.max() > 1)):
            raise _image_error(
                where, shape, "float pixel values must be finite and lie in [0, 1] (or store uint8 0..255)"
            )
        return np.ascontiguousarray(np.round(x * 255.0), dtype=np.uint8)
    raise _image_error(where, shape, f"pixel dtype {x.dtype} is not numeric; store uint8 0..255 or floats in [0, 1]")


def _as_vectors(x: np.ndarray, where: str) -> np.ndarray:
    if x.dtype.kind not in "iubf":
        raise DataError(f"{where}: vector dtype {x.dtype} is not numeric (store ints or floats)")
    with np.errstate(over="ignore"):
        x = x.astype(np.float32)
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise DataError(
            f"{where}: {len(bad)} of {len(x)} vectors contain NaN or inf (or values beyond float32's "
            f"range of about 3.4e38), first row {bad[0]}; drop or fill them before saving, e.g. "
            "keep = np.isfinite(x).all(axis=1); numpy.savez(path, x=x[keep], y=y[keep])"
        )
    return x


def _convert(x: np.ndarray, layout: str, where: str) -> np.ndarray:
    return _as_vectors(x, where) if kind_of(x.shape, where) == "vector" else _as_images(x, layout, where)


def _labels(shapes: dict, labels: dict, path: Path) -> dict:
    """{"train": y, "test": y_test} as int64, checked against the shapes of x and x_test (lengths,
    dtype, no negatives)."""
    if ("x_test" in shapes) != ("y_test" in labels):
        raise DataError(f"{path}: has only one of x_test and y_test; store both or neither")
    ys = {}
    for part, kx, ky in (("train", "x", "y"), ("test", "x_test", "y_test")):
        if kx not in shapes:
            continue
        if len(shapes[kx]) < 1:
            raise DataError(f"{path}: {kx} is a scalar; expected an array of samples")
        if shapes[kx][0] == 0:
            fix = (
                "store at least one sample"
                if kx == "x"
                else "store test samples, or neither x_test nor y_test to hold out test_fraction of x"
            )
            raise DataError(f"{path}: {kx} holds 0 samples; {fix}")
        ys[part] = labels_array(labels[ky], f"{path} ({ky})", expected=shapes[kx][0])
    return ys


def class_labels(ys: dict, num_classes, path: Path) -> tuple[dict, int, tuple]:
    """Labels as class indices, the class count and the original label of each class.

    Without ``num_classes`` the sorted distinct labels of all splits become 0..K-1 (the third item
    lists them when that changed anything, else it is empty). With it, labels are class indices
    already and must lie in [0, num_classes); more classes than samples is refused as absurd.
    """
    values = np.unique(np.concatenate(list(ys.values())))
    total = sum(len(y) for y in ys.values())
    if num_classes is not None:
        C = int_option("num_classes", num_classes, 1)
        if C > total:
            raise DataError(
                f"{path}: num_classes={C} is more than the {total} samples; a class count above the "
                "sample count means a wrong option (drop num_classes to count the distinct labels)"
            )
        for part, y in ys.items():
            check_label_range(y, C, f"{path} ({'y' if part == 'train' else 'y_test'})")
        return ys, C, ()
    if np.array_equal(values, np.arange(len(values))):
        return ys, len(values), ()
    return {part: np.searchsorted(values, y) for part, y in ys.items()}, len(values), tuple(int(v) for v in values)


@dataclass(frozen=True)
class Summary:
    """What an ``.npz`` holds, read without loading ``x``: for choosing a preset before training."""

    path: Path
    kind: str  # "vector" or "image"
    x_shape: tuple  # shape of x, as stored
    input_shape: tuple  # one sample as the network sees it: (d,) or (C, H, W)
    has_test: bool
    labels: np.ndarray  # y (as stored, checked), for counting the training split
    label_values: tuple  # the original label of each class when remapped, else ()
    num_classes: int


def _check_promise(path: Path, name: str) -> None:
    """Refuse an array whose .npy header promises more bytes than its member of the zip holds (numpy
    would allocate the promised size first: 16 GB for a 1 kB file)."""
    try:
        with zipfile.ZipFile(path) as zf, zf.open(f"{name}.npy") as f:
            held = zf.getinfo(f"{name}.npy").file_size
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(f)
            offset = f.tell()
    except Exception:  # not a plain zip of .npy members: np.load reports it
        return
    if dtype.hasobject:
        return  # named by the caller
    promised = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if promised > held - offset:
        raise DataError(
            f"{path}: array {name!r} promises shape {tuple(shape)} of {dtype} ({promised / 2**30:.2f} GiB) "
            f"in its header but the file holds {max(0, held - offset)} bytes of it; the file is damaged "
            "or was not written by numpy: save it again with numpy.savez(path, x=..., y=...)"
        )


def _header_shape(path: Path, name: str) -> tuple | None:
    """Shape of array ``name`` from its .npy header inside the zip (None if it cannot be read that way)."""
    try:
        with zipfile.ZipFile(path) as zf, zf.open(f"{name}.npy") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            return tuple(read(f)[0])
    except Exception:  # a missing member, version 3 headers: the caller falls back to loading
        return None


def summarize(root, num_classes=None, layout="auto") -> Summary:
    """The kind of ``x`` (vectors or images), its shape and the labels, without reading ``x``'s values."""
    if root is None:
        raise DataError(
            "the npz dataset needs a file: pass data.root=PATH.npz (arrays x and y, optionally x_test, y_test)"
        )
    path = Path(root).expanduser()
    try:
        with np.load(path, allow_pickle=False) as z:
            names = set(z.files)
            labels = {k: z[k] for k in ("y", "y_test") if k in names}
            shapes = {k: _header_shape(path, k) or z[k].shape for k in ("x", "x_test") if k in names}
    except Exception:
        _read(path)  # raises the not-found or not-readable message
        raise
    for key in ("x", "y"):
        if key not in names:
            raise DataError(f"{path}: no array {key!r} (found {', '.join(sorted(names)) or 'none'}); expected x and y")
    if layout not in LAYOUTS:
        raise ConfigError(f"data option layout={layout!r} is not valid; choose from {', '.join(LAYOUTS)}")
    kind = kind_of(shapes["x"], f"{path} (x)")
    sample = tuple(shapes["x"][1:]) if kind == "vector" else image_shape(shapes["x"], layout, f"{path} (x)")
    ys = _labels(shapes, labels, path)
    _, C, values = class_labels(ys, num_classes, path)
    return Summary(path, kind, tuple(shapes["x"]), tuple(int(s) for s in sample), "test" in ys, ys["train"], values, C)


def load(root=None, split="train", seed=0, layout="auto", num_classes=None, test_fraction=0.25) -> ArrayDataset:
    if layout not in LAYOUTS:
        raise ConfigError(f"data option layout={layout!r} is not valid; choose from {', '.join(LAYOUTS)}")
    if root is None:
        raise DataError(
            "the npz dataset needs a file: pass data.root=PATH.npz (arrays x and y, optionally x_test, y_test)"
        )
    path = Path(root)
    arrays = _read(path)
    for key in ("x", "y"):
        if key not in arrays:
            raise DataError(f"{path}: no array {key!r} (found {', '.join(arrays) or 'none'}); expected x and y")
    shapes = {k: arrays[k].shape for k in ("x", "x_test") if k in arrays}
    ys, C, values = class_labels(_labels(shapes, arrays, path), num_classes, path)
    test = "x_test" in arrays
    kx = "x_test" if test and split == "test" else "x"
    if test and arrays["x"].shape[1:] != arrays["x_test"].shape[1:]:
        raise DataError(
            f"{path}: x has shape {arrays['x'].shape} but x_test {arrays['x_test'].shape}; the sample shapes must match"
        )
    x = _convert(arrays[kx], layout, f"{path} ({kx})")
    y = ys["test" if kx == "x_test" else "train"]
    if not test:
        x, y = choose_split(x, y, split, test_fraction, seed)
    kind = "vector" if x.ndim == 2 else "image"
    names = tuple(str(v) for v in values)
    return ArrayDataset(x, y, C, kind, x.shape[1:], names, path.stem, label_values=values)
