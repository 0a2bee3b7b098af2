"""Capture a trained head's attention and tokens on one fixed, class-balanced analysis batch.

The batch is drawn with a seed (``per_class`` samples of every class, in class order), turned into the
input the head was trained on (two augmented views, view-major) or into the eval view repeated once
per view, and run through ``head.trace``. Everything comes back as numpy arrays, ready for
``experiments.metrics``.
"""

from __future__ import annotations

import numpy as np
import torch

from deepfusion.errors import DataError, RunError

VIEW_MODES = ("two_views", "eval_view")


def balanced_indices(labels, per_class: int, seed: int) -> np.ndarray:
    """``per_class`` dataset indices of every class, drawn without replacement, grouped by class."""
    labels = np.asarray(labels)
    if per_class < 1:
        raise DataError(f"per_class={per_class} must be at least 1")
    rng = np.random.default_rng(seed)
    picks = []
    for c in np.unique(labels):
        pool = np.flatnonzero(labels == c)
        if len(pool) < per_class:
            raise DataError(f"class {c} has {len(pool)} samples, fewer than per_class={per_class}; "
                            f"lower per_class to at most {len(pool)}")
        picks.append(np.sort(rng.choice(pool, size=per_class, replace=False)))
    return np.concatenate(picks)


def _visible(head, M: int, views: int) -> np.ndarray:
    from deepfusion.model.network.attention import scope_mask

    mask = scope_mask(getattr(head, "scope", "both_views"), M // views, views)
    return np.ones((M, M), dtype=bool) if mask is None else mask.cpu().numpy()


@torch.no_grad()
def capture(model, augment, dataset, per_class: int, seed: int, device="cpu", views: str = "two_views") -> dict:
    """Run one analysis batch through ``model`` (backbone + head with ``trace``) and return numpy arrays.

    ``views="two_views"`` feeds the training input (two augmentations drawn with ``seed``);
    ``"eval_view"`` feeds the unaugmented view once per view slot, so each token's positive is an
    exact copy of it. Returns ``attention`` (L, H, M, M) float32 (L = H = 0 for heads without attention), ``tokens`` (L+1, M, D) float32
    (``tokens[l]`` the input of layer l), ``out`` (M, out_dim), ``labels`` (M,), ``inst`` (M,),
    ``visible`` (M, M) bool (the head's scope), and ``indices`` (N,) into the dataset.
    """
    if views not in VIEW_MODES:
        raise DataError(f"views={views!r} is not valid; choose from {', '.join(VIEW_MODES)}")
    head = getattr(model, "head", None)
    if head is None or not hasattr(head, "trace"):
        raise RunError("this model's head has no trace of its layers to analyse; "
                       "analyse a run trained with model.head=transformer or ffn")
    n_views = int(getattr(head, "views", 2))
    idx = balanced_indices(np.asarray(dataset.y), per_class, seed)
    x = torch.as_tensor(np.asarray(dataset.x)[idx]).to(device)
    was_training = model.training
    model.eval()
    try:
        if views == "two_views":
            gen = torch.Generator(device=x.device).manual_seed(int(seed))
            inp = augment.two_views(x, generator=gen)  # (2N, ...) view-major
            if n_views != 2:
                raise RunError(f"the head expects {n_views} views but the augmentation gives two; use views=eval_view")
        else:
            one = augment.eval_view(x)
            inp = torch.cat([one] * n_views)  # (V*N, ...) view-major
        embed = model.embed if hasattr(model, "embed") else model.backbone
        trace = head.trace(embed(inp))
    finally:
        model.train(was_training)
    N = len(idx)
    M = n_views * N
    # Heads without attention (ffn, mlp) still give their per-block tokens; attention is then (0, 0, M, M).
    attn = (torch.stack(list(trace["attention"])).float().cpu().numpy() if len(trace["attention"])
            else np.zeros((0, 0, M, M), dtype=np.float32))
    labels = np.tile(np.asarray(dataset.y)[idx], n_views).astype(np.int64)
    return {
        "attention": attn,  # (L, H, M, M)
        "tokens": torch.stack(list(trace["tokens"])).float().cpu().numpy(),  # (L+1, M, D)
        "out": trace["out"].float().cpu().numpy(),
        "labels": labels,
        "inst": np.arange(M) % N,
        "visible": _visible(head, M, n_views),
        "indices": idx,
    }
