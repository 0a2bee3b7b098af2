"""Rule v3 on synthetic attention whose answer is known, through ``analyze_attention`` at the
analysed geometries (what ``deepfusion analyze --calibrate`` prints)."""

import numpy as np
import pytest

from deepfusion.experiments import calibration as cal
from deepfusion.experiments.attention_verdict import seed_layers

DRAWS = 40  # 2 of 40 is the 5% the false positives may reach


def test_the_generator_hits_its_target_ratios():
    rng = np.random.default_rng(1)
    world = cal.World(rng)
    for target in (1.0, 1.25, 1.5):
        A, y, inst = cal.seed_attention(world, [target] * 4)
        got, _ = seed_layers(A, y, inst, np.ones((A.shape[0], *A.shape[-2:]), bool))
        assert np.allclose(got, target, atol=0.03), (target, got)


def test_the_digits_geometry_is_that_of_a_digits_analysis():
    rng = np.random.default_rng(0)
    world = cal.World(rng)
    A, y, inst = cal.seed_attention(world, [1.0] * 4)
    assert A.shape[0] == 5 and A.shape[1] == 4 and A.shape[-1] == 140 and len(np.unique(y)) == 10
    a, b = world.batches(), world.batches()  # two seeds share most of the split's samples
    assert len(np.intersect1d(np.concatenate(a), np.concatenate(b))) > 300


def test_the_table_names_geometry_spreads_and_the_plan():
    text = cal.format_calibration(cal.calibrate(draws=1, cases=("planted_1", "two_group_3")))
    assert "140 tokens" in text and "0.10-0.32" in text and "6/12/24" in text
    assert "two_group_3" in text and "100.0%" in text  # 3 seeds: exploratory every time


def _row(case):
    (row,) = cal.calibrate(draws=DRAWS, cases=(case,))
    return row


@pytest.mark.slow
@pytest.mark.parametrize("case", cal.NULL_CASES)
def test_null_cases_are_rarely_observed(case):
    row = _row(case)
    assert row["observed"] <= 0.05, row
    if case in ("none", "shared", "theory_none"):  # the label permutation is exact across seeds
        assert row["perm_pass"] <= 0.05, row


@pytest.mark.slow
@pytest.mark.parametrize("case", ["planted", "theory_planted"])
def test_the_planted_rise_is_found_within_the_plan(case):
    row = _row(case)
    assert row["observed"] >= 0.8, row
    assert row["seeds"] <= 12, row  # mostly decided at the first or second look


@pytest.mark.slow
@pytest.mark.parametrize("case", ["planted_1", "two_group_3"])
def test_fewer_than_six_seeds_are_always_exploratory(case):
    assert _row(case)["exploratory"] == 1.0
