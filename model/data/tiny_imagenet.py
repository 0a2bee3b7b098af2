"""Tiny-ImageNet-200 (64x64 colour JPEGs, 200 classes, 100k train / 10k labelled val).

Standard layout of ``tiny-imagenet-200/``: ``wnids.txt`` (one WordNet id per class), ``words.txt``
(optional: id -> names, for class names), ``train/<wnid>/images/*.JPEG`` and
``val/val_annotations.txt`` (file, wnid, box) with ``val/images/*.JPEG``. The "test" split is the
labelled val set (the official test set has no labels). ``data.root`` may be the folder or the one
holding it; without it, ``$DEEPFUSION_DATA`` or ``./data``. Classes are numbered in sorted wnid order.

Decoding 110k JPEGs takes minutes, so the decoded uint8 arrays are cached as ``.npz``: first
beside the data (``<folder>/.deepfusion-cache/<split>-<fingerprint>.npz``), or, when that folder is
read-only, in ``$XDG_CACHE_HOME/deepfusion/tiny_imagenet/`` (default ``~/.cache``); ``cache_dir``
picks another folder, ``cache=False`` turns caching off. The fingerprint covers the class list and
every image's name and size, so a changed folder is decoded afresh.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from deepfusion.errors import DataError
from deepfusion.model.data.base import ArrayDataset, bool_option, check_label_range, find_folder, int_option

FOLDER = "tiny-imagenet-200"
SIZE = 64


def _folder(root) -> Path:
    folder, cands = find_folder(root, FOLDER, "wnids.txt")
    if folder is not None:
        return folder
    raise DataError(
        f"Tiny-ImageNet not found: expected wnids.txt, train/<wnid>/images/*.JPEG and "
        f"val/val_annotations.txt with val/images/*.JPEG in {cands[0]} or {cands[1]}; "
        f"unpack tiny-imagenet-200.zip and pass its folder (or the folder holding it) as data.root"
    )


def _read_text(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err})") from None


def _wnids(folder: Path) -> list[str]:
    wnids = sorted({line.strip() for line in _read_text(folder / "wnids.txt") if line.strip()})
    if not wnids:
        raise DataError(f"{folder / 'wnids.txt'} lists no classes; expected one WordNet id (like n01443537) per line")
    return wnids


def _class_names(folder: Path, wnids: list[str]) -> tuple[str, ...]:
    words = {}
    if (folder / "words.txt").is_file():
        for line in _read_text(folder / "words.txt"):
            wnid, _, names = line.partition("\t")
            words[wnid.strip()] = names.split(",")[0].strip()
    return tuple(words.get(w) or w for w in wnids)


def _listing(folder: Path, split: str, wnids: list[str]) -> list[tuple[Path, int]]:
    """(image path, label) for every image of the split, in a fixed order."""
    index = {w: i for i, w in enumerate(wnids)}
    items = []
    if split == "train":
        for w in wnids:
            d = folder / "train" / w / "images"
            if not d.is_dir():
                raise DataError(
                    f"Tiny-ImageNet train folder {d} is missing; expected train/<wnid>/images/*.JPEG "
                    f"for every id in {folder / 'wnids.txt'}"
                )
            items += [(d / f, index[w]) for f in sorted(os.listdir(d)) if f.lower().endswith((".jpeg", ".jpg"))]
    else:
        ann = folder / "val" / "val_annotations.txt"
        if not ann.is_file():
            raise DataError(
                f"Tiny-ImageNet val labels {ann} are missing; expected lines 'file<TAB>wnid<TAB>box' "
                "and the images in val/images/"
            )
        for n, line in enumerate(_read_text(ann), 1):
            parts = line.split("\t")
            if not line.strip():
                continue
            if len(parts) < 2 or parts[1].strip() not in index:
                raise DataError(
                    f"{ann} line {n}: expected 'file<TAB>wnid<TAB>...' with a wnid listed in "
                    f"wnids.txt, got {line[:80]!r}"
                )
            items.append((folder / "val" / "images" / parts[0].strip(), index[parts[1].strip()]))
    if not items:
        raise DataError(f"Tiny-ImageNet {split} split in {folder} holds no JPEG images")
    return items


def _fingerprint(wnids: list[str], items: list[tuple[Path, int]], folder: Path) -> str:
    h = hashlib.sha1("\n".join(wnids).encode())
    for path, label in items:
        try:
            size = path.stat().st_size
        except OSError:
            raise DataError(f"Tiny-ImageNet image {path} is listed but missing") from None
        h.update(f"{path.relative_to(folder)}|{label}|{size}\n".encode())
    return h.hexdigest()[:16]


def _decode(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")  # a few Tiny-ImageNet images are greyscale
            if im.size != (SIZE, SIZE):
                im = im.resize((SIZE, SIZE), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)  # (3, 64, 64)
    except (OSError, ValueError, SyntaxError) as err:
        raise DataError(f"{path}: not a readable image ({err}); expected a JPEG") from None


def _cache_paths(folder: Path, split: str, fp: str, cache_dir) -> list[Path]:
    name = f"{split}-{fp}.npz"
    if cache_dir is not None:
        return [Path(cache_dir) / name]
    user = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "deepfusion" / "tiny_imagenet"
    tag = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:8]
    return [folder / ".deepfusion-cache" / name, user / f"{tag}-{name}"]


def _read_cache(paths: list[Path], n: int):
    for path in paths:
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    x, y = z["x"], z["y"]
                if x.shape == (n, 3, SIZE, SIZE) and x.dtype == np.uint8 and y.shape == (n,):
                    return x, y.astype(np.int64)
            except Exception:  # a damaged cache is rebuilt, never trusted
                pass
    return None


def _write_cache(paths: list[Path], x: np.ndarray, y: np.ndarray) -> None:
    for path in paths:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                np.savez(f, x=x, y=y)
            os.replace(tmp, path)  # atomic: a reader never sees half a cache
            return
        except OSError:
            continue  # read-only folder: try the next place


def load(root=None, split="train", seed=0, cache=True, cache_dir=None, workers=None) -> ArrayDataset:
    cache = bool_option("cache", cache)
    folder = _folder(root)
    wnids = _wnids(folder)
    names = _class_names(folder, wnids)
    items = _listing(folder, split, wnids)
    paths = _cache_paths(folder, split, _fingerprint(wnids, items, folder), cache_dir) if cache else []
    hit = _read_cache(paths, len(items))
    if hit is not None:
        x, y = hit
    else:
        workers = int_option("workers", workers, 1) if workers is not None else min(16, os.cpu_count() or 1)
        with ThreadPoolExecutor(workers) as pool:  # PIL decodes outside the GIL
            x = np.stack(list(pool.map(_decode, [p for p, _ in items])))
        y = np.array([label for _, label in items], dtype=np.int64)
        if cache:
            _write_cache(paths, x, y)
    check_label_range(y, len(wnids), f"Tiny-ImageNet {split} labels")
    return ArrayDataset(x, y, len(wnids), "image", (3, SIZE, SIZE), names, "tiny_imagenet")
