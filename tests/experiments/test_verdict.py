"""The pre-registered Deep Fusion verdict on synthetic layer sequences."""

import json

import numpy as np
import pytest

from deepfusion.errors import DataError
from deepfusion.experiments.verdict import NOT_OBSERVED, OBSERVED, RULE, deep_fusion_verdict, spearman_with_depth


def noisy(mean_per_layer, units=6, noise=0.01, seed=0):
    rng = np.random.default_rng(seed)
    mean = np.asarray(mean_per_layer, float)
    return mean[None] + noise * rng.normal(size=(units, len(mean)))


@pytest.mark.parametrize("paired", [True, False])
def test_increasing_excess_is_observed(paired):
    rec = deep_fusion_verdict(noisy(np.linspace(0.0, 0.5, 10)), paired=paired)
    assert rec["verdict"] == OBSERVED and rec["observed"]
    assert rec["spearman"] > 0.9 and rec["spearman_ci95"][0] > 0
    assert rec["last_minus_first"] > 0.4


@pytest.mark.parametrize("sequence", [np.zeros(10), np.linspace(0.5, 0.0, 10)])
def test_flat_or_decreasing_excess_is_not_observed(sequence):
    rec = deep_fusion_verdict(noisy(sequence, noise=0.02), paired=True)
    assert rec["verdict"] == NOT_OBSERVED and not rec["observed"]
    assert not rec["conditions"]["ci_lower_positive"]


def test_noise_swamping_a_small_rise_is_not_observed():
    rec = deep_fusion_verdict(noisy(np.linspace(0.0, 0.01, 10), units=4, noise=0.2, seed=3))
    assert rec["verdict"] == NOT_OBSERVED


def test_rise_then_fall_below_start_fails_the_last_above_first_condition():
    seq = np.array([0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.1])
    rec = deep_fusion_verdict(noisy(seq, noise=0.0), paired=True)
    assert rec["spearman"] > 0 and not rec["conditions"]["last_above_first"]
    assert rec["verdict"] == NOT_OBSERVED


def test_record_is_json_and_carries_rule_and_gap():
    measured = np.linspace(0.1, 0.6, 5)
    predicted = measured - 0.05
    rec = deep_fusion_verdict(noisy(measured), measured=measured, predicted=predicted)
    back = json.loads(json.dumps(rec))
    assert back["rule"] == RULE
    assert np.allclose(back["gap_measured_minus_predicted"], 0.05)
    assert back["mean_abs_gap"] == pytest.approx(0.05)


def test_verdict_is_reproducible_with_a_seed():
    x = noisy(np.linspace(0, 0.1, 6), noise=0.1)
    assert deep_fusion_verdict(x, seed=4) == deep_fusion_verdict(x, seed=4)


def test_spearman_with_depth_known_values():
    assert spearman_with_depth([1, 2, 3, 4]) == pytest.approx(1.0)
    assert spearman_with_depth([4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman_with_depth([2, 2, 2]) == 0.0
    assert np.allclose(spearman_with_depth([[1, 2, 3], [3, 2, 1]]), [1.0, -1.0])


@pytest.mark.parametrize("bad", [np.zeros(5), np.zeros((3, 1)), np.full((2, 3), np.nan)])
def test_bad_input_raises(bad):
    with pytest.raises(DataError):
        deep_fusion_verdict(bad)
