"""The verdict's two nulls (experiments.verdict): label permutations and the untrained head.

Label permutation. One permutation of the per-sample labels of every analysed sample per draw,
shared by every training seed and batch: a sample carries one label in every seed, as it does in
the data, so the pooled statistic of the true labels is exchangeable with those of the draws and
the p-value is exact for pooled seeds, also when seeds analyse largely the same samples. Class
sizes within a batch may change under a draw, so each batch's chance level is recomputed.

The statistic is linear in the renormalised attention (``experiments.attention_verdict``), so it
is computed on sample-level matrices ``E^T A E`` (the weight the views of sample a put on those of
sample n), one matrix product per layer instead of an einsum over four token indices.

The untrained head. The run's architecture at initialisation (weights drawn with the run's training
seed), fed the trained backbone's features of the same analysis batches: what attention across the
batch gives before the head has learned anything.
"""

from __future__ import annotations

import numpy as np


def sample_matrices(A, inst) -> tuple[np.ndarray, np.ndarray]:
    """(..., M, M) token attention -> (..., N, N) attention summed over the tokens of each sample,
    and the sample ids in that order: ``out[a, n]`` is the weight the views of a give those of n."""
    A = np.asarray(A, dtype=np.float64)
    ids, idx = np.unique(np.asarray(inst), return_inverse=True)
    E = np.zeros((A.shape[-1], len(ids)))
    E[np.arange(A.shape[-1]), idx] = 1.0
    return E.T @ A @ E, ids


def shared_permutations(labels, n_perm: int, seed: int = 0) -> np.ndarray:
    """(n_perm, U) permuted per-sample labels: row p is ``labels`` (one per analysed sample, in a
    fixed order) under the p-th permutation, the same permutation for every seed and batch."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    return np.stack([labels[rng.permutation(labels.size)] for _ in range(n_perm)])


def class_weight(S, labels) -> np.ndarray:
    """Weight of sample-level matrices S (..., N, N) inside the class blocks of ``labels``
    (N,) or, for several label sets at once, (P, N): (..., ) or (P, ...)."""
    labels = np.asarray(labels)
    S = np.asarray(S, dtype=np.float64)
    N = S.shape[-1]
    if labels.ndim == 1:
        same = (labels[:, None] == labels[None, :]).astype(np.float64)
        return (S * same).sum((-2, -1))
    same = (labels[:, :, None] == labels[:, None, :]).reshape(len(labels), N * N).astype(np.float64)
    return same @ S.reshape(-1, N * N).T.reshape(N * N, -1) if S.ndim > 2 else same @ S.reshape(N * N)


def permuted_ratios(shares, uniform, labels_perm) -> np.ndarray:
    """(P, L) ratio to chance of one batch under P label sets (P, N).

    ``shares`` (L, N, N): sample-level renormalised attention; ``uniform`` (N, N): the same for
    uniform attention over the visible, non-own tokens. A draw in which no two samples of the batch
    share a class has no chance level; its ratio is 1."""
    L, N, _ = shares.shape
    num = class_weight(shares.reshape(L, N, N), labels_perm)  # (P, L)
    den = class_weight(uniform, labels_perm)  # (P,)
    ok = den > 0
    return np.where(ok[:, None], num / np.where(ok, den, 1.0)[:, None], 1.0)


def untrained_head(cfg, input_shape):
    """The run's head at initialisation: built from the run's config with its training seed."""
    # here, not at the top: torch takes ~4 s to import, and attention_verdict (analyze --attention,
    # --calibrate, deepfusion.analyze_attention) imports this module for the permutation null alone
    import torch

    from deepfusion.model.runs.factory import build_model

    torch.manual_seed(cfg.train.seed)
    return build_model(cfg, tuple(input_shape)).head
