"""Evaluation of a trained SimCLR model: every probe and its baseline, as one :class:`EvalResult`.

Every metric is *offline*: it runs once after training, on the final weights (not the best epoch),
and scores the held-out test split. Backbone metrics use frozen features with the head dropped
(:mod:`deepfusion.model.runs.probes`: kNN, linear probe); head metrics use head outputs within
seeded test batches (:mod:`deepfusion.model.runs.head_probes`: leave-one-out 1-NN, head kNN).

``evaluate_model`` runs all of them, the two backbone metrics again on a randomly initialised
copy of the backbone and the head metrics again under a randomly initialised head, so the numbers can
be read against what training bought; every accuracy comes with a Wilson 95% interval.
"""

from __future__ import annotations

import copy
import time

import torch
from torch import nn

from deepfusion.errors import DataError
from deepfusion.model.runs.eval_result import EvalResult
from deepfusion.model.runs.head_probes import calibrate_batchnorm_, head_batches, head_counts, head_knn, reinitialise_
from deepfusion.model.runs.intervals import accuracy_interval
from deepfusion.model.runs.probes import FEATURE_BATCH, extract_features, knn_accuracy, linear_probe

PROTOCOL = (
    "offline: computed once after training from the final-epoch weights (not the best epoch), "
    "scored on the held-out test split; kNN and linear probe on frozen backbone features "
    "(head dropped); head_loo1nn on head outputs within seeded, shuffled test batches of about "
    "head_batch samples (it depends on that batching); head_knn: kNN of those test head outputs "
    "against the training set's head outputs, computed in batches of about head_batch"
)


def _embed_fn(model: nn.Module):
    return model.embed if hasattr(model, "embed") else model.backbone


def _backbone_scores(model, augment, train_ds, test_ds, eval_cfg, device, seed, num_classes):
    """(kNN score, probe score or None, train features, test features) of the model's backbone."""
    fn = _embed_fn(model)
    tr = extract_features(fn, train_ds.x, FEATURE_BATCH, augment.eval_view, device)
    te = extract_features(fn, test_ds.x, FEATURE_BATCH, augment.eval_view, device)
    knn = knn_accuracy(tr, train_ds.y, te, test_ds.y, eval_cfg.knn_k, eval_cfg.knn_t, num_classes)
    linear = None
    if eval_cfg.linear_epochs > 0:
        linear = linear_probe(
            tr,
            train_ds.y,
            te,
            test_ds.y,
            num_classes,
            epochs=eval_cfg.linear_epochs,
            fraction=eval_cfg.linear_fraction,
            seed=seed,
        )
    return knn, linear, tr, te


def linear_protocol(e) -> str:
    """The linear probe's protocol in words, as the evaluation states it (one for trained and random)."""
    share = "all" if e.linear_fraction >= 1 else f"a class-stratified {100 * e.linear_fraction:g}%"
    return f"L-BFGS, {int(e.linear_epochs)} iterations, on {share} of the training split, for trained and random alike"


def _measure(model, augment, train_ds, test_ds, eval_cfg, device, seed: int, num_classes: int):
    """Every score of the trained model and its baselines: (scores, head 1-NN counts scored, test batches)."""
    knn, linear, train_feats, test_feats = _backbone_scores(
        model, augment, train_ds, test_ds, eval_cfg, device, seed, num_classes
    )
    batches = head_batches(len(test_ds), eval_cfg.head_batch, seed)
    head = head_counts(model, test_feats, test_ds.y, batches)
    knn_args = (train_feats, train_ds.y, test_feats, test_ds.y, eval_cfg, seed, num_classes)
    knn_head = head_knn(model, *knn_args)
    rand_model = copy.deepcopy(model).eval()
    reinitialise_(rand_model.head, seed)
    calibrate_batchnorm_(rand_model, train_feats, head_batches(len(train_feats), eval_cfg.head_batch, seed + 2))
    untrained_head = head_counts(rand_model, test_feats, test_ds.y, batches)
    untrained_knn = head_knn(rand_model, *knn_args)
    reinitialise_(rand_model.backbone, seed)
    random_knn, random_linear, _, _ = _backbone_scores(
        rand_model, augment, train_ds, test_ds, eval_cfg, device, seed, num_classes
    )
    scores = dict(
        knn=knn,
        linear=linear,
        head_loo1nn=head[0] / head[1],
        head_knn=knn_head,
        random_knn=random_knn,
        random_linear=random_linear,
        untrained_head_loo1nn=untrained_head[0] / untrained_head[1],
        untrained_head_knn=untrained_knn,
    )
    return scores, head[1], batches, int(train_feats.shape[1])


def evaluate_model(
    model: nn.Module, augment: nn.Module, train_ds, test_ds, eval_cfg, device, seed: int = 0
) -> EvalResult:
    """All offline metrics of a trained model (see :data:`PROTOCOL`), as an :class:`EvalResult`.

    ``knn``, ``linear``, ``head_loo1nn``, ``head_knn`` (trained model), ``random_knn``,
    ``random_linear`` (the same backbone re-initialised with ``seed``), ``untrained_head_loo1nn``
    and ``untrained_head_knn`` (the trained backbone under the head re-initialised with ``seed``,
    its BatchNorm statistics estimated on the training features, on the same batches), each with a
    Wilson 95% interval, and the settings used. ``linear`` and ``random_linear`` are None when
    ``eval_cfg.linear_epochs`` is 0. Accuracies lie in [0, 1]. The step it describes is the caller's
    to add (:meth:`EvalResult.with_training`).
    """
    start = time.perf_counter()
    device = torch.device(device)
    num_classes = int(train_ds.num_classes)
    if len(train_ds) == 0 or len(test_ds) == 0:
        raise DataError("evaluation needs non-empty train and test splits")
    was_training = model.training
    model.eval()
    try:
        scores, scored, batches, feature_dim = _measure(
            model, augment, train_ds, test_ds, eval_cfg, device, seed, num_classes
        )
    finally:
        model.train(was_training)
    n = len(test_ds)
    intervals = {
        k: tuple(accuracy_interval(v, scored if "loo1nn" in k else n)) for k, v in scores.items() if v is not None
    }
    return EvalResult(
        **scores,
        intervals=intervals,
        interval="Wilson score, 95%",
        knn_k=min(int(eval_cfg.knn_k), len(train_ds)),
        knn_t=float(eval_cfg.knn_t),
        linear_epochs=int(eval_cfg.linear_epochs),
        linear_fraction=float(eval_cfg.linear_fraction),
        linear_optimizer="lbfgs",
        linear_protocol=linear_protocol(eval_cfg),
        head_batch=int(eval_cfg.head_batch),
        head_batches=len(batches),
        head_batch_min=min(len(b) for b in batches),
        head_batch_max=max(len(b) for b in batches),
        n_train=len(train_ds),
        n_test=n,
        head_scored=scored,
        feature_dim=feature_dim,
        num_classes=num_classes,
        seed=int(seed),
        protocol=PROTOCOL,
        eval_wall_s=time.perf_counter() - start,
    )
