"""Standardisation of vector features with training statistics, and the scale check without it."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from deepfusion.errors import DataError, DataWarning
from deepfusion.model.data.base import ArrayDataset
from deepfusion.model.data.standardize import FeatureStats, check_scale, fit


def _ds(x, name="v"):
    x = torch.as_tensor(np.asarray(x, dtype=np.float32))
    return ArrayDataset(x, torch.arange(len(x)) % 2, 2, "vector", (x.shape[1],), (), name)


def test_training_statistics_give_mean_zero_std_one_and_are_applied_to_test_as_they_are():
    rng = np.random.default_rng(0)
    train = _ds(rng.normal(5, 3, size=(400, 4)) * [1, 10, 1000, 4000])
    test = _ds(rng.normal(5, 3, size=(100, 4)) * [1, 10, 1000, 4000])
    stats = fit(train.x)
    z = stats.apply(train).x.double()
    assert torch.allclose(z.mean(0), torch.zeros(4, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(z.std(0, unbiased=False), torch.ones(4, dtype=torch.float64), atol=1e-5)
    expected = (test.x.double() - torch.tensor(stats.mean)) / torch.tensor(stats.std)
    assert torch.allclose(stats.apply(test).x.double(), expected, atol=1e-5)  # train's, not test's own


def test_constant_features_become_zero_and_huge_values_do_not_overflow():
    x = np.array([[1e30, 7.0], [3e30, 7.0], [2e30, 7.0]])
    stats = fit(_ds(x).x)
    assert stats.std[1] == 1.0
    z = stats.apply(_ds(x)).x
    assert torch.isfinite(z).all() and torch.equal(z[:, 1], torch.zeros(3))
    assert torch.allclose(z[:, 0], torch.tensor([-1.2247, 1.2247, 0.0]), atol=1e-4)


def test_statistics_round_trip_through_json_and_reject_malformed():
    stats = fit(_ds(np.random.default_rng(1).normal(size=(10, 3))).x)
    assert FeatureStats.from_json(stats.to_json(), "t") == stats
    for bad in ({"mean": [0.0]}, {"mean": [0.0], "std": [0.0]}, {"mean": [0.0, 1.0], "std": [1.0]}, None):
        with pytest.raises(DataError, match="malformed"):
            FeatureStats.from_json(bad, "t")
    with pytest.raises(DataError, match="has 2"):
        stats.apply(_ds(np.zeros((4, 2))))


@pytest.mark.parametrize(
    "scale, words",
    [
        (1e20, ["vector values reach", "beyond 1e+15", "overflows float32", "data.standardize=true"]),
        (1e-10, ["below 1e-08", "cannot tell such values from 0"]),
        (1e-6, ["both views are mostly noise", "lower data.aug_noise"]),
    ],
)
def test_unusable_scales_are_errors_without_standardisation(scale, words):
    x = np.random.default_rng(0).normal(size=(50, 4)) * scale
    with pytest.raises(DataError) as err:
        check_scale(_ds(x), noise=0.1)
    assert all(w in str(err.value) for w in words) and "\n" not in str(err.value)


def test_noise_too_small_for_the_features_is_a_warning_and_usual_scales_pass():
    x = np.random.default_rng(0).normal(size=(50, 4))
    with pytest.warns(DataWarning, match="data.aug_noise"):
        check_scale(_ds(x * 4000), noise=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_scale(_ds(x), noise=0.1)
        check_scale(_ds(x * 4000), noise=None)  # no noise: nothing to compare with
