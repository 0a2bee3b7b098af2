"""Analysis batches and what a head does with them: attention and tokens of every layer.

``disjoint_batches`` draws ``batches`` class-balanced batches of ``per_class`` samples per class,
no sample in two batches, so the batches are independent units of the verdict. Each batch is
turned into the input the head was trained on (two augmented views, view-major) or into the
unaugmented view repeated once per view, passed through the backbone once (``batch_features``),
and through a head's ``trace`` (``trace_head``): the trained head and the untrained one see the
same features. Everything comes back as numpy arrays, ready for ``experiments.metrics``.
"""

from __future__ import annotations

import numpy as np
import torch

from deepfusion.errors import DataError, RunError
from deepfusion.model.network.attention import scope_mask

VIEW_MODES = ("two_views", "eval_view")
PER_CLASS_CAP = 16  # the automatic per-class count never exceeds this


def class_counts(labels) -> dict[int, int]:
    values, counts = np.unique(np.asarray(labels), return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts)}


def fit_per_class(labels, batches: int, cap: int = PER_CLASS_CAP) -> int:
    """The largest per-class count (at most ``cap``) for which ``batches`` disjoint batches fit."""
    if batches < 1:
        raise DataError(f"batches={batches} must be at least 1")
    smallest = min(class_counts(labels).values())
    return min(cap, smallest // batches)


def disjoint_batches(labels, batches: int, per_class: int, seed: int) -> list[np.ndarray]:
    """``batches`` index arrays, each holding ``per_class`` samples of every class (grouped by class),
    no index in two batches; drawn with ``seed``."""
    labels = np.asarray(labels)
    if per_class < 1 or batches < 1:
        raise DataError(f"batches={batches} and per_class={per_class} must both be at least 1")
    counts = class_counts(labels)
    need = batches * per_class
    short = {c: n for c, n in counts.items() if n < need}
    if short:
        c, n = min(short.items(), key=lambda kv: kv[1])
        raise DataError(
            f"{batches} disjoint batches of {per_class} per class need {need} samples of every class, and class "
            f"{c} has {n} ({len(short)} class(es) too small); the largest that fit: --per-class "
            f"{min(counts.values()) // batches} with --batches {batches}, or --batches "
            f"{min(counts.values()) // per_class} with --per-class {per_class}"
        )
    rng = np.random.default_rng(seed)
    draws = {c: rng.permutation(np.flatnonzero(labels == c))[:need] for c in sorted(counts)}
    return [
        np.concatenate([np.sort(draws[c][b * per_class : (b + 1) * per_class]) for c in sorted(counts)])
        for b in range(batches)
    ]


def visible_mask(head, M: int, views: int) -> np.ndarray:
    """Which tokens each token may attend to under the head's scope, (M, M) bool."""
    mask = scope_mask(getattr(head, "scope", "both_views"), M // views, views)
    return np.ones((M, M), dtype=bool) if mask is None else mask.cpu().numpy()


def _head(model):
    head = getattr(model, "head", None)
    if head is None or not hasattr(head, "trace"):
        raise RunError(
            "this model's head has no trace of its layers to analyse; "
            "analyse a run trained with model.head=transformer or ffn"
        )
    return head


@torch.no_grad()
def batch_features(model, augment, dataset, idx, seed: int, device="cpu", views: str = "two_views") -> dict:
    """Backbone features ``(V*N, D)`` of one analysis batch, with its labels, instance ids and mask.

    ``views="two_views"`` feeds the training input (two augmentations drawn with ``seed``);
    ``"eval_view"`` feeds the unaugmented view once per view slot, so each token's positive is an
    exact copy of it.
    """
    if views not in VIEW_MODES:
        raise DataError(f"views={views!r} is not valid; choose from {', '.join(VIEW_MODES)}")
    head = _head(model)
    n_views = int(getattr(head, "views", 2))
    idx = np.asarray(idx)
    x = torch.as_tensor(np.asarray(dataset.x)[idx]).to(device)
    was_training = model.training
    model.eval()
    try:
        if views == "two_views":
            if n_views != 2:
                raise RunError(f"the head expects {n_views} views but the augmentation gives two; use views=eval_view")
            inp = augment.two_views(x, generator=torch.Generator(device=x.device).manual_seed(int(seed)))
        else:
            inp = torch.cat([augment.eval_view(x)] * n_views)  # (V*N, ...) view-major
        embed = model.embed if hasattr(model, "embed") else model.backbone
        feats = embed(inp)
    finally:
        model.train(was_training)
    N = len(idx)
    M = n_views * N
    return {
        "features": feats,
        "labels": np.tile(np.asarray(dataset.y)[idx], n_views).astype(np.int64),
        "inst": np.arange(M) % N,
        "visible": visible_mask(head, M, n_views),
        "indices": idx,
    }


@torch.no_grad()
def trace_head(head, features: torch.Tensor) -> dict:
    """``attention`` (L, H, M, M) float32 (L = H = 0 for heads without attention), ``tokens``
    (L+1, M, D) float32 (``tokens[l]`` the input of layer l) and ``out`` (M, out_dim)."""
    was_training = head.training
    head.eval()
    try:
        trace = head.trace(features.to(next(head.parameters()).device))
    finally:
        head.train(was_training)
    M = features.shape[0]
    attn = (
        torch.stack(list(trace["attention"])).float().cpu().numpy()
        if len(trace["attention"])
        else np.zeros((0, 0, M, M), dtype=np.float32)
    )
    return {
        "attention": attn,
        "tokens": torch.stack(list(trace["tokens"])).float().cpu().numpy(),
        "out": trace["out"].float().cpu().numpy(),
    }


def capture(model, augment, dataset, idx, seed: int, device="cpu", views: str = "two_views") -> dict:
    """One analysis batch (dataset indices ``idx``) through the model's backbone and head:
    ``batch_features`` and ``trace_head`` in one dict."""
    batch = batch_features(model, augment, dataset, idx, seed, device, views)
    return {**batch, **trace_head(_head(model), batch["features"])}
