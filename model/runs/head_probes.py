"""Probes on head outputs: the paper's leave-one-out 1-NN within test batches, the head kNN, and the
untrained head they are read against.

- ``loo_1nn_head_accuracy``: the paper's leave-one-out 1-NN on *head outputs* within each test batch.
- ``head_knn``: the weighted kNN on head outputs (the training set's head outputs as the bank).

A transformer head attends across its batch, so both depend on how the samples are cut into
batches (:func:`head_batches`: seeded, shuffled, near-equal).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from deepfusion.errors import ConfigError, DataError
from deepfusion.model.runs.probes import check_pair, knn_accuracy


@torch.no_grad()
def loo_1nn_head_counts(
    head_outputs_by_batch: Sequence[torch.Tensor], labels_by_batch: Sequence[torch.Tensor]
) -> tuple[int, int]:
    """(correct, scored) of :func:`loo_1nn_head_accuracy`: the counts behind its interval."""
    if len(head_outputs_by_batch) != len(labels_by_batch):
        raise DataError(f"{len(head_outputs_by_batch)} output batches but {len(labels_by_batch)} label batches")
    correct = total = 0
    for z, y in zip(head_outputs_by_batch, labels_by_batch):
        check_pair(z.flatten(1), y, "head LOO 1-NN batch")
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


def loo_1nn_head_accuracy(
    head_outputs_by_batch: Sequence[torch.Tensor], labels_by_batch: Sequence[torch.Tensor]
) -> float:
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


def head_counts(model: nn.Module, test_feats: torch.Tensor, test_y: torch.Tensor, batches) -> tuple[int, int]:
    outs, labels = [], []
    with torch.no_grad():
        for idx in batches:
            outs.append(head_outputs(model, test_feats[idx.to(test_feats.device)]))
            labels.append(test_y[idx.to(test_y.device)])
    return loo_1nn_head_counts(outs, labels)


def batched_head_outputs(model: nn.Module, feats: torch.Tensor, batches) -> torch.Tensor:
    """Head outputs of every row of ``feats``, computed batch by batch (the head attends within each)."""
    with torch.no_grad():
        parts = [(idx, head_outputs(model, feats[idx.to(feats.device)])) for idx in batches]
    out = torch.empty(len(feats), parts[0][1].shape[1], device=parts[0][1].device)
    for idx, o in parts:
        out[idx.to(out.device)] = o.float()
    return out


def head_knn(
    model: nn.Module, train_feats, train_y, test_feats, test_y, eval_cfg, seed: int, num_classes: int
) -> float:
    """``head_knn``: the weighted kNN of test head outputs against the training set's head outputs, each
    computed in seeded batches of about ``head_batch`` (the paper's "unsupervised accuracy" on the head)."""
    tr = batched_head_outputs(model, train_feats, head_batches(len(train_feats), eval_cfg.head_batch, seed + 1))
    te = batched_head_outputs(model, test_feats, head_batches(len(test_feats), eval_cfg.head_batch, seed))
    return knn_accuracy(tr, train_y, te, test_y, eval_cfg.knn_k, eval_cfg.knn_t, num_classes)
