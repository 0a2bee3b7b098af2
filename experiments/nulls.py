"""The verdict's two nulls (experiments.verdict): label permutations and the untrained head.

Label permutation. The same attention with the class labels of a batch's samples shuffled (both
views of a sample keep one label, so the positive view stays excluded and the class sizes, hence
the chance level, stay the same). If attention had no class structure, the measured same-class
mass would look like one of these.

The untrained head. The run's architecture at initialisation (weights drawn with the run's training
seed), fed the trained backbone's features of the same analysis batches: what attention across the
batch gives before the head has learned anything.
"""

from __future__ import annotations

import numpy as np

from deepfusion.errors import DataError


def instance_attention(A, inst) -> tuple[np.ndarray, np.ndarray]:
    """(L, M, M) token attention -> (L, N, N) attention summed over the tokens of each sample, and the
    sample ids in that order: ``B[a, n]`` is the total weight the views of sample a give those of n."""
    A = np.asarray(A, dtype=np.float64)
    ids, idx = np.unique(np.asarray(inst), return_inverse=True)
    E = np.zeros((A.shape[-1], len(ids)))
    E[np.arange(A.shape[-1]), idx] = 1.0
    return np.einsum("mi,lmn,nj->lij", E, A, E), ids


def permuted_same_class_mass(A, labels, inst, n_perm: int, seed: int = 0, chunk: int = 50) -> np.ndarray:
    """Same-class mass (self and positive views excluded) of each layer under ``n_perm`` random
    permutations of the samples' labels: (n_perm, L).

    ``A`` (L, M, M) is one batch's head-averaged attention (zero where the scope hides a token), and
    the mass is the head average of ``metrics.same_class_mass``, which is linear in A. A sample's
    own views are always of its class, so mass * M = (weight inside permuted class blocks of the
    sample-level matrix) - (its diagonal).
    """
    A = np.asarray(A, dtype=np.float64)
    if A.ndim != 3:
        raise DataError(f"attention has shape {A.shape}; expected (layers, M, M)")
    labels, inst = np.asarray(labels), np.asarray(inst)
    B, ids = instance_attention(A, inst)
    first = np.array([np.flatnonzero(inst == i)[0] for i in ids])
    sample_labels = labels[first]
    if not all(np.all(labels[inst == i] == sample_labels[k]) for k, i in enumerate(ids)):
        raise DataError("the views of one sample carry different labels; labels must follow the sample")
    classes, y = np.unique(sample_labels, return_inverse=True)
    N, C, M = len(ids), len(classes), A.shape[-1]
    rng = np.random.default_rng(seed)
    diag = np.trace(B, axis1=1, axis2=2)  # (L,)
    out = np.empty((n_perm, A.shape[0]))
    for start in range(0, n_perm, chunk):
        p = min(chunk, n_perm - start)
        Y = np.zeros((N, p, C))
        perms = np.stack([rng.permutation(y) for _ in range(p)], axis=1)  # (N, p)
        Y[np.arange(N)[:, None], np.arange(p)[None, :], perms] = 1.0
        BY = np.einsum("lan,npc->lapc", B, Y)  # (L, N, p, C)
        inside = np.einsum("lapc,apc->lp", BY, Y)  # weight inside the permuted class blocks
        out[start:start + p] = ((inside - diag[:, None]) / M).T
    return out


def untrained_head(cfg, input_shape):
    """The run's head at initialisation: built from the run's config with its training seed."""
    import torch

    from deepfusion.model.runs.factory import build_model

    torch.manual_seed(cfg.train.seed)
    return build_model(cfg, tuple(input_shape)).head
