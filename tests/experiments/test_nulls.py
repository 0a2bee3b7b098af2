"""Label permutations of the same attention, and the untrained head."""

import numpy as np
import pytest

from deepfusion.experiments import metrics as mt
from deepfusion.experiments.nulls import instance_attention, permuted_same_class_mass


def batch(C=3, n=4, L=2, seed=0):
    rng = np.random.default_rng(seed)
    N = C * n
    inst = np.tile(np.arange(N), 2)
    labels = rng.permutation(np.repeat(np.arange(C), n))[inst]
    A = rng.random((L, 2 * N, 2 * N)) + 3.0 * (labels[:, None] == labels[None, :])
    return A / A.sum(-1, keepdims=True), labels, inst


def test_instance_attention_sums_the_views():
    A, _, inst = batch()
    B, ids = instance_attention(A, inst)
    assert B.shape == (2, 12, 12) and np.allclose(B.sum((1, 2)), 24.0)
    assert np.isclose(B[0, 0, 1], A[0][np.ix_([0, 12], [1, 13])].sum())


def test_a_permutation_that_keeps_labels_gives_the_measured_mass():
    A, labels, inst = batch()
    C = len(np.unique(labels))
    # one class only: every permutation keeps the labels
    same = permuted_same_class_mass(A, np.zeros_like(labels), inst, 5)
    assert np.allclose(same, mt.same_class_mass(A, np.zeros_like(labels), inst)[None])
    assert C == 3


def test_permuted_masses_match_the_metric_on_permuted_labels():
    A, labels, inst = batch()
    out = permuted_same_class_mass(A, labels, inst, 3, seed=7)
    rng = np.random.default_rng(7)
    _, y = np.unique(labels[:12], return_inverse=True)
    for p in range(3):
        perm_labels = rng.permutation(y)[inst]
        assert np.allclose(out[p], mt.same_class_mass(A, perm_labels, inst))


def test_structured_attention_sits_above_its_permutation_null():
    A, labels, inst = batch()
    measured = mt.same_class_mass(A, labels, inst)
    null = permuted_same_class_mass(A, labels, inst, 200)
    assert np.all(measured > np.quantile(null, 0.975, axis=0))
    chance = mt.same_class_chance(labels, inst)
    assert np.abs(null.mean(0) / chance - 1).max() < 0.1  # permuted labels sit near chance


def test_labels_must_follow_the_sample():
    A, labels, inst = batch()
    labels = labels.copy()
    labels[0] = (labels[0] + 1) % 3
    with pytest.raises(Exception, match="labels must follow the sample"):
        permuted_same_class_mass(A, labels, inst, 2)
