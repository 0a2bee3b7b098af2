"""The shared label permutation on sample-level matrices, and its agreement with the direct statistic."""

import numpy as np

from deepfusion.experiments.attention_verdict import batch_statistics
from deepfusion.experiments.nulls import class_weight, permuted_ratios, sample_matrices, shared_permutations


def batch(C=3, n=4, L=2, seed=0):
    rng = np.random.default_rng(seed)
    N = C * n
    inst = np.tile(np.arange(N), 2) + 100  # ids need not start at 0
    labels = rng.permutation(np.repeat(np.arange(C), n))[inst - 100]
    A = rng.random((L, 1, 2 * N, 2 * N)) + 3.0 * (labels[:, None] == labels[None, :])
    return A / A.sum(-1, keepdims=True), labels, inst


def test_sample_matrices_sum_the_views():
    A, _, inst = batch()
    S, ids = sample_matrices(A[:, 0], inst)
    assert S.shape == (2, 12, 12) and np.allclose(S.sum((1, 2)), 24.0) and ids[0] == 100
    assert np.isclose(S[0, 0, 1], A[0, 0][np.ix_([0, 12], [1, 13])].sum())


def test_class_weight_of_many_label_sets_matches_one_at_a_time():
    rng = np.random.default_rng(2)
    S = rng.random((3, 5, 5))
    labels = rng.integers(0, 2, (4, 5))
    many = class_weight(S, labels)
    assert many.shape == (4, 3)
    for p in range(4):
        assert np.allclose(many[p], class_weight(S, labels[p]))


def test_the_identity_permutation_gives_the_measured_ratio():
    A, labels, inst = batch()
    b = batch_statistics(A, labels, inst, np.ones((24, 24), bool))
    again = permuted_ratios(b["S"], b["U"], b["labels"][None])
    assert np.allclose(again[0], b["ratio"])


def test_permutations_are_shared_and_keep_the_label_counts():
    labels = np.array([0, 0, 0, 1, 1, 2])
    perms = shared_permutations(labels, 50, seed=3)
    assert perms.shape == (50, 6) and all(np.array_equal(np.sort(p), labels) for p in perms)
    assert np.array_equal(perms, shared_permutations(labels, 50, seed=3))


def test_structured_attention_sits_above_its_permutation_null():
    A, labels, inst = batch()
    b = batch_statistics(A, labels, inst, np.ones((24, 24), bool))
    null = permuted_ratios(b["S"], b["U"], shared_permutations(b["labels"], 200))
    assert np.all(b["ratio"] > np.quantile(null, 0.975, axis=0))
    assert np.abs(null.mean(0) - 1).max() < 0.1  # permuted labels sit near chance
