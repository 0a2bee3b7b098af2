"""Probes on frozen backbone features: the weighted kNN and the linear probe, and feature extraction.

- ``knn_accuracy``: the weighted kNN of InstDisc / solo-learn (cosine similarity, each of the k
  neighbours votes for its class with weight ``exp(sim / t)``).
- ``linear_probe``: multinomial logistic regression on standardised frozen features, fit by
  full-batch L-BFGS (convex, deterministic, no learning-rate tuning); optionally on a
  class-stratified ``fraction`` of the training set (the paper's probe used 10%).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from deepfusion.errors import ConfigError, DataError

FEATURE_BATCH = 512  # images per forward pass when extracting features


def _owner(fn) -> nn.Module | None:
    """The module whose mode must be switched to eval for ``fn`` (a module or a bound method of one)."""
    if isinstance(fn, nn.Module):
        return fn
    owner = getattr(fn, "__self__", None)
    return owner if isinstance(owner, nn.Module) else None


@torch.no_grad()
def extract_features(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    batch_size: int = FEATURE_BATCH,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``fn(transform(x_batch))`` over ``x`` in batches, as one float32 ``(N, D)`` tensor.

    Runs without gradients and with the owning module in eval mode (its mode is restored after).
    Batches are moved to ``device`` (default: the data's device) and the features stay there.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size} must be a positive integer")
    if len(x) == 0:
        raise DataError("no samples to extract features from; check the dataset split")
    device = x.device if device is None else torch.device(device)
    owner = _owner(fn)
    was_training = owner.training if owner is not None else False
    if owner is not None:
        owner.eval()
    try:
        out = []
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size].to(device, non_blocking=True)
            if transform is not None:
                xb = transform(xb)
            out.append(fn(xb).float().flatten(1))  # (B, D)
        return torch.cat(out)
    finally:
        if owner is not None:
            owner.train(was_training)


def check_pair(feats: torch.Tensor, y: torch.Tensor, name: str) -> None:
    if feats.ndim != 2 or y.ndim != 1 or len(feats) != len(y):
        raise DataError(
            f"{name}: features must be (N, D) and labels (N,) with the same N, got "
            f"{tuple(feats.shape)} and {tuple(y.shape)}"
        )
    if len(y) == 0:
        raise DataError(f"{name}: no samples")
    if not bool(torch.isfinite(feats).all()):
        raise DataError(f"{name}: features contain NaN or inf; the model's weights may have diverged")


def class_count(num_classes: int | None, *labels: torch.Tensor) -> int:
    top = max(int(y.max()) for y in labels) + 1
    if num_classes is None:
        return top
    if top > num_classes or min(int(y.min()) for y in labels) < 0:
        raise DataError(f"labels range beyond [0, {num_classes}); pass the dataset's num_classes")
    return int(num_classes)


@torch.no_grad()
def knn_accuracy(
    train_feats: torch.Tensor,
    train_y: torch.Tensor,
    test_feats: torch.Tensor,
    test_y: torch.Tensor,
    k: int = 200,
    t: float = 0.1,
    num_classes: int | None = None,
    chunk: int | None = None,
) -> float:
    """Weighted kNN top-1 accuracy (InstDisc / solo-learn): cosine similarity, votes ``exp(sim / t)``.

    The k nearest training points (k clamped to the training set size) each add ``exp(sim / t)`` to
    their class; the class with the largest sum wins. Test points go in chunks so memory stays at
    about ``chunk * N_train`` similarities (default: ~2**24).
    """
    check_pair(train_feats, train_y, "kNN train set")
    check_pair(test_feats, test_y, "kNN test set")
    if train_feats.shape[1] != test_feats.shape[1]:
        raise DataError(f"kNN: train features have {train_feats.shape[1]} dims, test features {test_feats.shape[1]}")
    if k < 1:
        raise ConfigError(f"eval.knn_k={k} must be a positive integer")
    if not t > 0:
        raise ConfigError(f"eval.knn_t={t} must be positive")
    c = class_count(num_classes, train_y, test_y)
    device = train_feats.device
    k = min(int(k), len(train_y))
    bank = F.normalize(train_feats.float(), dim=1)  # (N, D)
    bank_y = train_y.to(device)
    test = F.normalize(test_feats.float().to(device), dim=1)
    test_y = test_y.to(device)
    chunk = chunk or max(1, min(4096, 2**24 // len(bank)))
    correct = 0
    for i in range(0, len(test), chunk):
        sim = test[i : i + chunk] @ bank.T  # (B, N)
        top_sim, top_idx = sim.topk(k, dim=1)  # (B, k)
        weights = (top_sim / t).exp()
        votes = torch.zeros(len(sim), c, device=device).scatter_add_(1, bank_y[top_idx], weights)  # (B, C)
        correct += int((votes.argmax(1) == test_y[i : i + chunk]).sum())
    return correct / len(test)


def stratified_subset(y: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Sorted indices of ``round(fraction * n_c)`` samples of every class c (at least one each), seeded."""
    if not 0 < fraction <= 1:
        raise ConfigError(f"eval.linear_fraction={fraction} must lie in (0, 1]")
    y = y.cpu()
    if fraction == 1:
        return torch.arange(len(y))
    gen = torch.Generator().manual_seed(int(seed))
    picks = []
    for c in torch.unique(y).tolist():
        pool = torch.nonzero(y == c).flatten()
        take = max(1, int(round(fraction * len(pool))))
        picks.append(pool[torch.randperm(len(pool), generator=gen)[:take]])
    return torch.cat(picks).sort().values


def _fit_logistic(x, y, c: int, epochs: int, lr: float, weight_decay: float, chunk: int):
    """Weights (D, c) and bias (c,) of multinomial logistic regression on standardised ``x``: full-batch
    L-BFGS from zero on mean cross-entropy + ``weight_decay / 2 * ||W||^2``, gradients summed over
    ``chunk``-row slices."""
    w = torch.zeros(x.shape[1], c, device=x.device, requires_grad=True)
    b = torch.zeros(c, device=x.device, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b],
        lr=lr,
        max_iter=epochs,
        history_size=20,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
    )
    n = len(y)

    def closure():
        opt.zero_grad(set_to_none=True)
        total = 0.5 * weight_decay * (w * w).sum()
        total.backward()
        total = total.detach()
        for i in range(0, n, chunk):
            part = F.cross_entropy(x[i : i + chunk] @ w + b, y[i : i + chunk], reduction="sum") / n
            part.backward()
            total = total + part.detach()
        return total

    with torch.enable_grad():
        opt.step(closure)
    return w, b


def linear_probe(
    train_feats: torch.Tensor,
    train_y: torch.Tensor,
    test_feats: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int | None = None,
    epochs: int = 100,
    lr: float = 1.0,
    weight_decay: float = 1e-4,
    fraction: float = 1.0,
    seed: int = 0,
    chunk: int = 65536,
) -> float:
    """Test top-1 accuracy of a logistic-regression probe on frozen features.

    Features are standardised with the mean and std of the probe's training samples. The loss is
    mean cross-entropy + ``weight_decay / 2 * ||W||^2`` (bias not decayed), minimised from zero by
    full-batch L-BFGS (``epochs`` iterations, strong-Wolfe line search, step ``lr``); gradients are
    accumulated over ``chunk``-row slices so memory stays bounded. ``fraction`` < 1 fits on a
    class-stratified subset drawn with ``seed``. Convex with a zero start, so the result is
    deterministic up to floating-point order.
    """
    check_pair(train_feats, train_y, "linear probe train set")
    check_pair(test_feats, test_y, "linear probe test set")
    if epochs < 1:
        raise ConfigError(f"eval.linear_epochs={epochs} must be at least 1 to fit a probe")
    if weight_decay < 0:
        raise ConfigError(f"weight_decay={weight_decay} must be non-negative")
    c = class_count(num_classes, train_y, test_y)
    device = train_feats.device
    idx = stratified_subset(train_y, fraction, seed).to(device)
    x, y = train_feats.float()[idx], train_y.to(device)[idx]
    mean, std = x.mean(0), x.std(0, unbiased=False).clamp_min(1e-6)
    w, b = _fit_logistic((x - mean) / std, y, c, epochs, lr, weight_decay, chunk)
    with torch.no_grad():
        test = (test_feats.float().to(device) - mean) / std
        pred = (test @ w + b).argmax(1)
        return float((pred == test_y.to(device)).float().mean())
