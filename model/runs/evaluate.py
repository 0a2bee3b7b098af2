"""Evaluation of a trained SimCLR model: kNN, linear probe, head 1-NN, random-backbone baseline.

Every metric is *offline*: it runs once after training, on the final weights (not the best epoch),
and scores the held-out test split. Backbone metrics use frozen features with the head dropped:

- ``knn_accuracy``: the weighted kNN of InstDisc / solo-learn (cosine similarity, each of the k
  neighbours votes for its class with weight ``exp(sim / t)``).
- ``linear_probe``: multinomial logistic regression on standardised frozen features, fit by
  full-batch L-BFGS (convex, deterministic, no learning-rate tuning); optionally on a
  class-stratified ``fraction`` of the training set (the paper's probe used 10%).
- ``loo_1nn_head_accuracy``: the paper's leave-one-out 1-NN on *head outputs* within each test batch.
- ``head_knn``: the kNN above on head outputs (the training set's head outputs as the bank).

``evaluate_model`` runs all of them, the two backbone metrics again on a randomly initialised
copy of the backbone and the head 1-NN again under a randomly initialised head, so the numbers can
be read against what training bought; every accuracy comes with a Wilson 95% interval.
"""

from __future__ import annotations

import copy
import time
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from deepfusion.errors import ConfigError, DataError

FEATURE_BATCH = 512  # images per forward pass when extracting features
PROTOCOL = ("offline: computed once after training from the final-epoch weights (not the best epoch), "
            "scored on the held-out test split; kNN and linear probe on frozen backbone features "
            "(head dropped); head_loo1nn on head outputs within seeded, shuffled test batches of about "
            "head_batch samples (it depends on that batching); head_knn: kNN of those test head outputs "
            "against the training set's head outputs, computed in batches of about head_batch")


def _owner(fn) -> nn.Module | None:
    """The module whose mode must be switched to eval for ``fn`` (a module or a bound method of one)."""
    if isinstance(fn, nn.Module):
        return fn
    owner = getattr(fn, "__self__", None)
    return owner if isinstance(owner, nn.Module) else None


@torch.no_grad()
def extract_features(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int = FEATURE_BATCH,
                     transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                     device: torch.device | str | None = None) -> torch.Tensor:
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
            xb = x[i:i + batch_size].to(device, non_blocking=True)
            if transform is not None:
                xb = transform(xb)
            out.append(fn(xb).float().flatten(1))  # (B, D)
        return torch.cat(out)
    finally:
        if owner is not None:
            owner.train(was_training)


def _check_pair(feats: torch.Tensor, y: torch.Tensor, name: str) -> None:
    if feats.ndim != 2 or y.ndim != 1 or len(feats) != len(y):
        raise DataError(f"{name}: features must be (N, D) and labels (N,) with the same N, got "
                        f"{tuple(feats.shape)} and {tuple(y.shape)}")
    if len(y) == 0:
        raise DataError(f"{name}: no samples")
    if not bool(torch.isfinite(feats).all()):
        raise DataError(f"{name}: features contain NaN or inf; the model's weights may have diverged")


def _num_classes(num_classes: int | None, *labels: torch.Tensor) -> int:
    top = max(int(y.max()) for y in labels) + 1
    if num_classes is None:
        return top
    if top > num_classes or min(int(y.min()) for y in labels) < 0:
        raise DataError(f"labels range beyond [0, {num_classes}); pass the dataset's num_classes")
    return int(num_classes)


@torch.no_grad()
def knn_accuracy(train_feats: torch.Tensor, train_y: torch.Tensor, test_feats: torch.Tensor, test_y: torch.Tensor,
                 k: int = 200, t: float = 0.1, num_classes: int | None = None, chunk: int | None = None) -> float:
    """Weighted kNN top-1 accuracy (InstDisc / solo-learn): cosine similarity, votes ``exp(sim / t)``.

    The k nearest training points (k clamped to the training set size) each add ``exp(sim / t)`` to
    their class; the class with the largest sum wins. Test points go in chunks so memory stays at
    about ``chunk * N_train`` similarities (default: ~2**24).
    """
    _check_pair(train_feats, train_y, "kNN train set")
    _check_pair(test_feats, test_y, "kNN test set")
    if train_feats.shape[1] != test_feats.shape[1]:
        raise DataError(f"kNN: train features have {train_feats.shape[1]} dims, test features {test_feats.shape[1]}")
    if k < 1:
        raise ConfigError(f"eval.knn_k={k} must be a positive integer")
    if not t > 0:
        raise ConfigError(f"eval.knn_t={t} must be positive")
    c = _num_classes(num_classes, train_y, test_y)
    device = train_feats.device
    k = min(int(k), len(train_y))
    bank = F.normalize(train_feats.float(), dim=1)  # (N, D)
    bank_y = train_y.to(device)
    test = F.normalize(test_feats.float().to(device), dim=1)
    test_y = test_y.to(device)
    chunk = chunk or max(1, min(4096, 2**24 // len(bank)))
    correct = 0
    for i in range(0, len(test), chunk):
        sim = test[i:i + chunk] @ bank.T  # (B, N)
        top_sim, top_idx = sim.topk(k, dim=1)  # (B, k)
        weights = (top_sim / t).exp()
        votes = torch.zeros(len(sim), c, device=device).scatter_add_(1, bank_y[top_idx], weights)  # (B, C)
        correct += int((votes.argmax(1) == test_y[i:i + chunk]).sum())
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


def linear_probe(train_feats: torch.Tensor, train_y: torch.Tensor, test_feats: torch.Tensor, test_y: torch.Tensor,
                 num_classes: int | None = None, epochs: int = 100, lr: float = 1.0, weight_decay: float = 1e-4,
                 fraction: float = 1.0, seed: int = 0, chunk: int = 65536) -> float:
    """Test top-1 accuracy of a logistic-regression probe on frozen features.

    Features are standardised with the mean and std of the probe's training samples. The loss is
    mean cross-entropy + ``weight_decay / 2 * ||W||^2`` (bias not decayed), minimised from zero by
    full-batch L-BFGS (``epochs`` iterations, strong-Wolfe line search, step ``lr``); gradients are
    accumulated over ``chunk``-row slices so memory stays bounded. ``fraction`` < 1 fits on a
    class-stratified subset drawn with ``seed``. Convex with a zero start, so the result is
    deterministic up to floating-point order.
    """
    _check_pair(train_feats, train_y, "linear probe train set")
    _check_pair(test_feats, test_y, "linear probe test set")
    if epochs < 1:
        raise ConfigError(f"eval.linear_epochs={epochs} must be at least 1 to fit a probe")
    if weight_decay < 0:
        raise ConfigError(f"weight_decay={weight_decay} must be non-negative")
    c = _num_classes(num_classes, train_y, test_y)
    device = train_feats.device
    idx = stratified_subset(train_y, fraction, seed).to(device)
    x, y = train_feats.float()[idx], train_y.to(device)[idx]
    mean, std = x.mean(0), x.std(0, unbiased=False).clamp_min(1e-6)
    x = (x - mean) / std
    w = torch.zeros(x.shape[1], c, device=device, requires_grad=True)
    b = torch.zeros(c, device=device, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=lr, max_iter=epochs, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-9, tolerance_change=1e-12)
    n = len(y)

    def closure():
        opt.zero_grad(set_to_none=True)
        total = 0.5 * weight_decay * (w * w).sum()
        total.backward()
        total = total.detach()
        for i in range(0, n, chunk):
            part = F.cross_entropy(x[i:i + chunk] @ w + b, y[i:i + chunk], reduction="sum") / n
            part.backward()
            total = total + part.detach()
        return total

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        test = (test_feats.float().to(device) - mean) / std
        pred = (test @ w + b).argmax(1)
        return float((pred == test_y.to(device)).float().mean())


@torch.no_grad()
def loo_1nn_head_counts(head_outputs_by_batch: Sequence[torch.Tensor],
                        labels_by_batch: Sequence[torch.Tensor]) -> tuple[int, int]:
    """(correct, scored) of :func:`loo_1nn_head_accuracy`: the counts behind its interval."""
    if len(head_outputs_by_batch) != len(labels_by_batch):
        raise DataError(f"{len(head_outputs_by_batch)} output batches but {len(labels_by_batch)} label batches")
    correct = total = 0
    for z, y in zip(head_outputs_by_batch, labels_by_batch):
        _check_pair(z.flatten(1), y, "head LOO 1-NN batch")
        if len(y) < 2:
            continue
        z = F.normalize(z.float().flatten(1), dim=1)
        sim = z @ z.T  # (B, B)
        sim.fill_diagonal_(-float("inf"))
        nearest = sim.argmax(1)
        y = y.to(z.device)
        correct += int((y[nearest] == y).sum())
        total += len(y)
    if total == 0:
        raise DataError("head LOO 1-NN needs at least one batch of two or more samples")
    return correct, total


def loo_1nn_head_accuracy(head_outputs_by_batch: Sequence[torch.Tensor],
                          labels_by_batch: Sequence[torch.Tensor]) -> float:
    """``head_loo1nn``: leave-one-out 1-NN accuracy on head outputs, within each batch.

    Each sample is labelled by its most cosine-similar *other* sample of the same batch. The result
    depends on how the test set is cut into batches (batch size, class mix), because a transformer
    head's outputs depend on the other samples of the batch and the neighbours are drawn only from
    it. Batches of one sample have no neighbour and are skipped. Averaged over samples.
    """
    correct, total = loo_1nn_head_counts(head_outputs_by_batch, labels_by_batch)
    return correct / total


def reinitialise_(module: nn.Module, seed: int) -> nn.Module:
    """Re-draw every parameter of ``module`` in place by its ``reset_parameters``, seeded.

    Submodules reset before their parents, so a parent's own custom initialisation has the last word.
    BatchNorm running statistics are reset too. The global RNG state is left untouched.
    """
    devices = [p.device for p in module.parameters() if p.device.type == "cuda"][:1]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        for m in reversed(list(module.modules())):
            if callable(getattr(m, "reset_parameters", None)):
                m.reset_parameters()
    return module


@torch.no_grad()
def calibrate_batchnorm_(model: nn.Module, feats: torch.Tensor, batches) -> None:
    """Estimate the running statistics of the head's BatchNorm layers from ``feats`` (a cumulative
    average over the batches, forward passes in train mode, no gradient), as training would have.

    An untrained head evaluated with BatchNorm's initial statistics (mean 0, variance 1) is not
    what "the same head untrained" should mean: a deep stack of such layers (the FFN baseline)
    then maps every input to nearly the same point."""
    norms = [m for m in model.head.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    model.head.train()
    try:
        for idx in batches:
            head_outputs(model, feats[idx.to(feats.device)])
    finally:
        model.head.eval()


def head_batches(n: int, head_batch: int, seed: int) -> list[torch.Tensor]:
    """A seeded permutation of ``n`` test indices cut into ``round(n / head_batch)`` near-equal batches.

    Every sample is used and batch sizes differ by at most one, staying within a factor 1.5 of
    ``head_batch`` (or the whole set, when it is smaller). Shuffling gives every batch a class mix
    whatever order the dataset is stored in.
    """
    if head_batch < 2:
        raise ConfigError(f"eval.head_batch={head_batch} must be at least 2 (a sample needs a neighbour)")
    if n < 2:
        raise DataError(f"head LOO 1-NN needs at least 2 test samples, got {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    return list(torch.tensor_split(perm, max(1, round(n / head_batch))))


@torch.no_grad()
def head_outputs(model: nn.Module, feats: torch.Tensor) -> torch.Tensor:
    """Head outputs ``(B, out_dim)`` for one batch of backbone features ``(B, D)``.

    The head expects ``V*N`` view-major tokens, so the batch is fed as V identical copies (the eval
    view, unaugmented) and the first copy's outputs are kept. Under the paper's ``both_views`` scope
    each sample's token can see its own copy, as it sees its positive view in training.
    """
    views = int(getattr(model.head, "views", 2))
    return model.head(torch.cat([feats] * views))[: len(feats)]


def _embed_fn(model: nn.Module):
    return model.embed if hasattr(model, "embed") else model.backbone


def _backbone_scores(model, augment, train_ds, test_ds, eval_cfg, device, seed, num_classes):
    """(kNN and probe scores of the model's backbone, test features)."""
    fn = _embed_fn(model)
    tr = extract_features(fn, train_ds.x, FEATURE_BATCH, augment.eval_view, device)
    te = extract_features(fn, test_ds.x, FEATURE_BATCH, augment.eval_view, device)
    out = dict(knn=knn_accuracy(tr, train_ds.y, te, test_ds.y, eval_cfg.knn_k, eval_cfg.knn_t, num_classes),
               feature_dim=int(tr.shape[1]))
    if eval_cfg.linear_epochs > 0:
        out["linear"] = linear_probe(tr, train_ds.y, te, test_ds.y, num_classes, epochs=eval_cfg.linear_epochs,
                                     fraction=eval_cfg.linear_fraction, seed=seed)
    else:
        out["linear"] = None
    return out, tr, te


def _head_counts(model: nn.Module, test_feats: torch.Tensor, test_y: torch.Tensor, batches) -> tuple[int, int]:
    outs, labels = [], []
    with torch.no_grad():
        for idx in batches:
            outs.append(head_outputs(model, test_feats[idx.to(test_feats.device)]))
            labels.append(test_y[idx.to(test_y.device)])
    return loo_1nn_head_counts(outs, labels)


def _batched_head_outputs(model: nn.Module, feats: torch.Tensor, batches) -> torch.Tensor:
    """Head outputs of every row of ``feats``, computed batch by batch (the head attends within each)."""
    with torch.no_grad():
        parts = [(idx, head_outputs(model, feats[idx.to(feats.device)])) for idx in batches]
    out = torch.empty(len(feats), parts[0][1].shape[1], device=parts[0][1].device)
    for idx, o in parts:
        out[idx.to(out.device)] = o.float()
    return out


def head_knn(model: nn.Module, train_feats, train_y, test_feats, test_y, eval_cfg, seed: int, num_classes: int) -> float:
    """``head_knn``: the weighted kNN of test head outputs against the training set's head outputs, each
    computed in seeded batches of about ``head_batch`` (the paper's "unsupervised accuracy" on the head)."""
    tr = _batched_head_outputs(model, train_feats, head_batches(len(train_feats), eval_cfg.head_batch, seed + 1))
    te = _batched_head_outputs(model, test_feats, head_batches(len(test_feats), eval_cfg.head_batch, seed))
    return knn_accuracy(tr, train_y, te, test_y, eval_cfg.knn_k, eval_cfg.knn_t, num_classes)


def linear_protocol(e) -> str:
    """The linear probe's protocol in words, as ``eval.json`` states it (one for trained and random)."""
    share = "all" if e.linear_fraction >= 1 else f"a class-stratified {100 * e.linear_fraction:g}%"
    return f"L-BFGS, {int(e.linear_epochs)} iterations, on {share} of the training split, for trained and random alike"


def evaluate_model(model: nn.Module, augment: nn.Module, train_ds, test_ds, eval_cfg, device, seed: int = 0) -> dict:
    """All offline metrics of a trained model as a JSON-ready dict (see :data:`PROTOCOL`).

    Keys: ``knn``, ``linear``, ``head_loo1nn``, ``head_knn`` (trained model), ``random_knn``,
    ``random_linear`` (the same backbone re-initialised with ``seed``), ``untrained_head_loo1nn``
    and ``untrained_head_knn`` (the trained backbone under the head re-initialised with ``seed``,
    its BatchNorm statistics estimated on the training features, on the same batches), each with a
    Wilson 95% interval under ``<key>_ci``, and the settings used. ``linear`` and
    ``random_linear`` are None when ``eval_cfg.linear_epochs`` is 0. Accuracies lie in [0, 1].
    """
    from deepfusion.model.runs.intervals import accuracy_interval

    start = time.perf_counter()
    device = torch.device(device)
    num_classes = int(train_ds.num_classes)
    if len(train_ds) == 0 or len(test_ds) == 0:
        raise DataError("evaluation needs non-empty train and test splits")
    was_training = model.training
    model.eval()
    try:
        trained, train_feats, test_feats = _backbone_scores(model, augment, train_ds, test_ds, eval_cfg, device, seed,
                                                           num_classes)
        batches = head_batches(len(test_ds), eval_cfg.head_batch, seed)
        head = _head_counts(model, test_feats, test_ds.y, batches)
        knn_args = (train_feats, train_ds.y, test_feats, test_ds.y, eval_cfg, seed, num_classes)
        knn_head = head_knn(model, *knn_args)
        rand_model = copy.deepcopy(model).eval()
        reinitialise_(rand_model.head, seed)
        calibrate_batchnorm_(rand_model, train_feats, head_batches(len(train_feats), eval_cfg.head_batch, seed + 2))
        untrained_head = _head_counts(rand_model, test_feats, test_ds.y, batches)
        untrained_knn = head_knn(rand_model, *knn_args)
        reinitialise_(rand_model.backbone, seed)
        rand, _, _ = _backbone_scores(rand_model, augment, train_ds, test_ds, eval_cfg, device, seed, num_classes)
        del rand_model
    finally:
        model.train(was_training)
    n = len(test_ds)
    scores = dict(knn=trained["knn"], linear=trained["linear"], head_loo1nn=head[0] / head[1],
                  random_knn=rand["knn"], random_linear=rand["linear"],
                  untrained_head_loo1nn=untrained_head[0] / untrained_head[1], head_knn=knn_head,
                  untrained_head_knn=untrained_knn)
    intervals = {f"{k}_ci": accuracy_interval(v, head[1] if "loo1nn" in k else n) for k, v in scores.items()}
    return dict(
        **scores, **intervals, interval="Wilson score, 95%",
        knn_k=min(int(eval_cfg.knn_k), len(train_ds)), knn_t=float(eval_cfg.knn_t),
        linear_epochs=int(eval_cfg.linear_epochs), linear_fraction=float(eval_cfg.linear_fraction),
        linear_optimizer="lbfgs", linear_protocol=linear_protocol(eval_cfg), head_batch=int(eval_cfg.head_batch), head_batches=len(batches),
        head_batch_min=min(len(b) for b in batches), head_batch_max=max(len(b) for b in batches),
        n_train=len(train_ds), n_test=n, head_scored=head[1],
        feature_dim=trained["feature_dim"], num_classes=num_classes, seed=int(seed),
        protocol=PROTOCOL, eval_wall_s=time.perf_counter() - start,
    )
