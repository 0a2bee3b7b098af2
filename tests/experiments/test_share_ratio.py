"""The v3 statistic on attention whose answer is known."""

import numpy as np
import pytest

from deepfusion.errors import DataError
from deepfusion.experiments.share_ratio import class_share_ratio

N, C = 12, 3
labels = np.tile(np.repeat(np.arange(C), N // C), 2)
inst = np.arange(2 * N) % N


def _rows(weights):
    A = np.asarray(weights, float)
    return A / A.sum(1, keepdims=True)


def test_uniform_attention_is_one():
    assert class_share_ratio(np.full((2 * N, 2 * N), 1 / (2 * N)), labels, inst) == pytest.approx(1.0)


def test_self_and_positive_do_not_count():
    M = 2 * N
    A = np.ones((M, M))
    A[np.arange(M), np.arange(M)] = 50.0  # heavy self and positive weight
    A[np.arange(M), (np.arange(M) + N) % M] = 50.0
    assert class_share_ratio(_rows(A), labels, inst) == pytest.approx(1.0)


def test_class_only_attention_reaches_the_inverse_uniform_share():
    M = 2 * N
    same = (labels[:, None] == labels[None, :]) & (inst[:, None] != inst[None, :])
    A = _rows(same + 1e-12)
    uniform = same.sum(1)[0] / (M - 2)
    assert class_share_ratio(A, labels, inst) == pytest.approx(1 / uniform, rel=1e-6)


def test_visible_mask_sets_chance():
    M = 2 * N
    vis = (np.arange(M)[:, None] < N) == (np.arange(M)[None, :] < N)  # per view
    A = _rows(vis.astype(float))
    assert class_share_ratio(A, labels, inst, vis) == pytest.approx(1.0)


def test_bad_shapes_raise():
    with pytest.raises(DataError):
        class_share_ratio(np.ones((3, 3)) / 3, labels, inst)
