"""Any dataset saved as one ``.npz`` file (``data.root`` is the file's path).

Arrays: ``x`` and ``y`` (integer labels 0..C-1), optionally ``x_test`` and ``y_test``; without a
test pair, a seeded class-stratified ``test_fraction`` of ``x`` is held out.

What ``x`` holds is read from its shape:

- 2-D ``(N, d)``: vectors, stored as float32 (must be finite).
- 3-D ``(N, H, W)``: grey images, given one channel.
- 4-D: ``(N, C, H, W)`` or ``(N, H, W, C)``. With ``layout="auto"`` the channel axis is axis 1 if
  it has at most 4 entries, else axis 3 if that one does; ``layout="nchw"``/``"nhwc"`` says so
  explicitly (needed for, say, ``(N, 3, 3, 3)`` stored channels-last).

Image values: integers must lie in 0..255; floats in [0, 1] (scaled by 255). ``num_classes``
defaults to the largest label + 1 over both splits, so train and test agree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deepfusion.errors import ConfigError, DataError
from deepfusion.model.data.base import ArrayDataset, check_label_range, choose_split, int_option, labels_array

LAYOUTS = ("auto", "nchw", "nhwc")


def _read(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"npz dataset {path} not found; pass the path of a .npz file holding arrays x and y "
                        "(optionally x_test and y_test) as data.root")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in ("x", "y", "x_test", "y_test") if k in z.files}
    except Exception as err:  # zip, header and dtype errors all mean "not a usable npz"
        raise DataError(f"{path}: not a readable .npz of plain arrays ({type(err).__name__}: {err}); "
                        "save it with numpy.savez(path, x=..., y=...)") from None


def _as_images(x: np.ndarray, layout: str, where: str) -> np.ndarray:
    """(N, C, H, W) uint8 from a 3-D or 4-D array."""
    if x.ndim == 3:
        x = x[:, None]
    elif layout == "nhwc" or (layout == "auto" and x.shape[1] > 4 and x.shape[3] <= 4):
        x = x.transpose(0, 3, 1, 2)
    elif layout == "auto" and x.shape[1] > 4:
        raise DataError(f"{where}: cannot tell the channel axis of shape {x.shape} (neither axis 1 nor axis 3 "
                        "has at most 4 entries); pass data.options.layout=nchw or nhwc")
    if min(x.shape[1:]) < 1:
        raise DataError(f"{where}: images of shape {x.shape[1:]} are empty")
    if x.dtype.kind in "iub":
        if x.size and (int(x.min()) < 0 or int(x.max()) > 255):
            raise DataError(f"{where}: integer pixel values range over [{int(x.min())}, {int(x.max())}]; "
                            "expected 0..255")
        return np.ascontiguousarray(x, dtype=np.uint8)
    if x.dtype.kind == "f":
        if not np.all(np.isfinite(x)) or (x.size and (x.min() < 0 or x.max() > 1)):
            raise DataError(f"{where}: float pixel values must be finite and lie in [0, 1] (or store uint8 0..255)")
        return np.ascontiguousarray(np.round(x * 255.0), dtype=np.uint8)
    raise DataError(f"{where}: pixel dtype {x.dtype} is not numeric; store uint8 0..255 or floats in [0, 1]")


def _as_vectors(x: np.ndarray, where: str) -> np.ndarray:
    if x.dtype.kind not in "iubf":
        raise DataError(f"{where}: vector dtype {x.dtype} is not numeric")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise DataError(f"{where}: vectors contain NaN or inf (or values too large for float32)")
    return x


def _convert(x: np.ndarray, layout: str, where: str) -> np.ndarray:
    if x.ndim == 2:
        return _as_vectors(x, where)
    if x.ndim in (3, 4):
        return _as_images(x, layout, where)
    raise DataError(f"{where}: x has shape {x.shape}; expected (N, d) vectors, (N, H, W) or 4-D images")


def load(root=None, split="train", seed=0, layout="auto", num_classes=None, test_fraction=0.25) -> ArrayDataset:
    if layout not in LAYOUTS:
        raise ConfigError(f"data option layout={layout!r} is not valid; choose from {', '.join(LAYOUTS)}")
    if root is None:
        raise DataError("the npz dataset needs a file: pass data.root=PATH.npz (arrays x and y, optionally x_test, y_test)")
    path = Path(root)
    arrays = _read(path)
    for key in ("x", "y"):
        if key not in arrays:
            raise DataError(f"{path}: no array {key!r} (found {', '.join(arrays) or 'none'}); expected x and y")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"{path}: has only one of x_test and y_test; store both or neither")
    pairs = {"train": ("x", "y"), "test": ("x_test", "y_test")}
    ys = {}
    for part, (kx, ky) in pairs.items():
        if kx in arrays:
            if arrays[kx].ndim < 1:
                raise DataError(f"{path}: {kx} is a scalar; expected an array of samples")
            ys[part] = labels_array(arrays[ky], f"{path} ({ky})", expected=len(arrays[kx]))
    top = max(int(y.max()) for y in ys.values() if len(y)) + 1 if any(len(y) for y in ys.values()) else 1
    C = int_option("num_classes", num_classes, 1) if num_classes is not None else top
    for part, y in ys.items():
        check_label_range(y, C, f"{path} ({pairs[part][1]})")
    kx, ky = pairs[split] if "x_test" in arrays else pairs["train"]
    x = _convert(arrays[kx], layout, f"{path} ({kx})")
    y = ys["test" if kx == "x_test" else "train"]
    if "x_test" in arrays:
        other = arrays["x" if kx == "x_test" else "x_test"]
        if other.shape[1:] != arrays[kx].shape[1:]:
            raise DataError(f"{path}: x has shape {arrays['x'].shape} but x_test {arrays['x_test'].shape}; "
                            "the sample shapes must match")
    else:
        x, y = choose_split(x, y, split, test_fraction, seed)
    kind = "vector" if x.ndim == 2 else "image"
    return ArrayDataset(x, y, C, kind, x.shape[1:], (), path.stem)
