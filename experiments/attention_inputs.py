"""The inputs of the attention verdict, checked: one-line errors for anything a caller can fix.

``checked_inputs`` takes ``analyze_attention``'s per-seed lists (``experiments.attention_verdict``)
and returns each seed's arrays, checked for shape, dtype, finite row-normalised weights, the
visible mask and the class structure the rule needs, and the label of every sample id across
seeds. ``load_attention_file`` reads one seed's arrays from an ``--attention`` file (.npz).
"""

from __future__ import annotations

import zipfile

import numpy as np

from deepfusion.errors import DataError
from deepfusion.experiments import verdict as rule

ROW_TOL = 1e-3  # float32 softmax rows sum to 1 within ~1e-6; half precision needs more slack


def _as_list(x, name: str, n: int | None) -> list:
    if x is None:
        return None
    if not isinstance(x, (list, tuple)):
        raise DataError(f"{name} must be a list with one array per training seed")
    if n is not None and len(x) != n:
        raise DataError(f"{name} has {len(x)} entries and attention {n}; give one per training seed")
    return list(x)


def _check_shapes(where: str, A, y, inst) -> tuple:
    """Attention (B, L, H, M, M) with at least 2 layers and 2 tokens; labels and instance (B, M) integers."""
    A = np.asarray(A, dtype=np.float64)
    if A.ndim != 5 or A.shape[-1] != A.shape[-2]:
        raise DataError(f"{where}: attention has shape {A.shape}; expected (batches, layers, heads, M, M)")
    B, L, H, M, _ = A.shape
    if B < 1 or L < 2 or H < 1 or M < 2:
        raise DataError(
            f"{where}: attention {A.shape} needs at least 1 batch, 2 layers (the rule compares layers), "
            "1 head and 2 tokens"
        )
    y, inst = np.asarray(y), np.asarray(inst)
    for name, a in (("labels", y), ("instance", inst)):
        if a.shape != (B, M):
            raise DataError(f"{where}: {name} has shape {a.shape}; expected ({B}, {M}) to match attention {A.shape}")
        if not np.issubdtype(a.dtype, np.integer):
            raise DataError(f"{where}: {name} has dtype {a.dtype}; expected integers")
    return A, y, inst


def _check_visible(where: str, vis, B: int, M: int) -> np.ndarray:
    """The visible mask as (B, M, M) bool (all keys when None); every query sees some key."""
    if vis is None:
        return np.ones((B, M, M), dtype=bool)
    vis = np.asarray(vis)
    if vis.dtype != bool or vis.shape not in ((M, M), (B, M, M)):
        raise DataError(
            f"{where}: visible has shape {vis.shape} and dtype {vis.dtype}; expected bool ({M}, {M}) or ({B}, {M}, {M})"
        )
    vis = np.broadcast_to(vis, (B, M, M))
    if not vis.any(-1).all():
        raise DataError(f"{where}: visible has a row with no visible key; every token must see something")
    return vis


def _check_weights(where: str, name: str, a: np.ndarray, vis: np.ndarray) -> None:
    """Finite, non-negative softmax rows that sum to 1 over the visible keys."""
    if not np.all(np.isfinite(a)):
        raise DataError(f"{where}: {name} has NaN or infinite entries; pass finite softmax weights")
    if np.any(a < 0):
        raise DataError(f"{where}: {name} has negative entries; pass softmax weights, not logits")
    if np.any(a[np.broadcast_to(~vis[:, None, None], a.shape)] > ROW_TOL):
        raise DataError(f"{where}: {name} puts weight on keys that visible hides; check the visible mask")
    dev = np.abs(a.sum(-1) - 1.0).max()
    if dev > ROW_TOL:
        raise DataError(
            f"{where}: {name} rows do not sum to 1 (off by up to {dev:.3g}); pass row-normalised "
            "weights (softmax over the visible keys)"
        )


def _check_classes(where: str, y: np.ndarray, inst: np.ndarray) -> None:
    """Per batch: at least 2 classes, one label per sample, at least 2 samples of every class."""
    for b in range(y.shape[0]):
        classes, counts = np.unique(y[b], return_counts=True)
        if classes.size < 2:
            raise DataError(f"{where}, batch {b + 1}: the labels hold {classes.size} class; the rule needs at least 2")
        per_sample = {}
        for i, c in zip(inst[b], y[b]):
            if per_sample.setdefault(int(i), int(c)) != int(c):
                raise DataError(
                    f"{where}, batch {b + 1}: instance {int(i)} carries labels {per_sample[int(i)]} and "
                    f"{int(c)}; the views of one sample must share its label"
                )
        samples = np.unique(inst[b], return_index=True)[1]
        sc, sn = np.unique(y[b][samples], return_counts=True)
        if sn.min() < 2:
            raise DataError(
                f"{where}, batch {b + 1}: class {int(sc[sn.argmin()])} has one sample; every class needs "
                "at least 2 samples in a batch (a token needs another sample of its class)"
            )


def check_seed(s: int, A, y, inst, A0, vis) -> tuple:
    """One seed's arrays (attention, labels, instance, untrained or None, visible), checked."""
    where = f"seed {s + 1}"
    A, y, inst = _check_shapes(where, A, y, inst)
    B, _, _, M, _ = A.shape
    vis = _check_visible(where, vis, B, M)
    arrays = [("attention", A)]
    if A0 is not None:
        A0 = np.asarray(A0, dtype=np.float64)
        if A0.shape != A.shape:
            raise DataError(f"{where}: untrained has shape {A0.shape}; expected {A.shape}, like attention")
        arrays.append(("untrained", A0))
    for name, a in arrays:
        _check_weights(where, name, a, vis)
    _check_classes(where, y, inst)
    return A, y, inst, A0, vis


def checked_inputs(attention, labels, instance, untrained, visible, split: str, n_perm: int):
    """Every seed's checked arrays (``check_seed``) and the label of every sample id across seeds."""
    if split not in ("train", "test"):
        raise DataError(f"split={split!r} is not valid; choose test or train")
    if n_perm < rule.MIN_PERMUTATIONS:
        raise DataError(f"n_perm={n_perm}: the permutation null needs at least {rule.MIN_PERMUTATIONS}")
    attention = _as_list(attention, "attention", None)
    if not attention:
        raise DataError("attention is empty; give one array per training seed")
    S = len(attention)
    labels, instance = _as_list(labels, "labels", S), _as_list(instance, "instance", S)
    untrained, visible = _as_list(untrained, "untrained", S), _as_list(visible, "visible", S)
    seeds = [
        check_seed(
            s,
            attention[s],
            labels[s],
            instance[s],
            untrained[s] if untrained else None,
            visible[s] if visible else None,
        )
        for s in range(S)
    ]
    L = seeds[0][0].shape[1]
    if any(a[0].shape[1] != L for a in seeds):
        raise DataError(f"seeds have different layer counts ({[a[0].shape[1] for a in seeds]}); give one model's seeds")
    sample_label: dict[int, int] = {}
    for s, (_, y, inst, _, _) in enumerate(seeds):
        for i, c in zip(inst.ravel(), y.ravel()):
            if sample_label.setdefault(int(i), int(c)) != int(c):
                raise DataError(
                    f"instance {int(i)} carries label {sample_label[int(i)]} in one batch and {int(c)} in "
                    f"another (seed {s + 1}); ids name samples of the split, one label each"
                )
    return seeds, sample_label


FILE_KEYS = ("attention", "labels", "instance")  # required; "untrained" and "visible" are optional


def load_attention_file(path) -> dict:
    """One seed's arrays from an ``--attention`` file (.npz): attention, labels, instance, and
    untrained and visible when present (None otherwise). Shapes are checked by ``analyze_attention``."""
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise DataError(f"--attention {path}: no such file; give an .npz written with numpy.savez") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise DataError(
            f"--attention {path}: not a readable .npz ({type(err).__name__}); write it with "
            "numpy.savez(path, attention=..., labels=..., instance=...)"
        ) from None
    missing = [k for k in FILE_KEYS if k not in data]
    if missing:
        raise DataError(
            f"--attention {path}: missing array(s) {', '.join(missing)}; the file needs attention "
            "(B, L, H, M, M), labels (B, M) and instance (B, M) (older run folders: rerun deepfusion "
            "analyze --force)"
        )
    unknown = sorted(set(data) - set(FILE_KEYS) - {"untrained", "visible"})
    if unknown:
        raise DataError(
            f"--attention {path}: unknown array(s) {', '.join(unknown)}; allowed: attention, labels, "
            "instance, untrained, visible"
        )
    return {k: data.get(k) for k in FILE_KEYS + ("untrained", "visible")}
