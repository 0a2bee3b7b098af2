"""The verdict on synthetic attention whose answer is known (what `deepfusion analyze --calibrate` prints)."""

import numpy as np
import pytest

from deepfusion.experiments import calibration as cal
from deepfusion.experiments import metrics as mt


def test_gain_gives_the_asked_ratio_on_noise_free_rows():
    C, n = 4, 6
    for ratio in (1.0, 1.3, 1.5, 2.0):
        A, labels, inst = cal.synthetic_attention([cal.gain_for_ratio(ratio, C, n)], C, n,
                                                  np.random.default_rng(0), sigma=0.0)
        assert mt.same_class_mass(A, labels, inst)[0] / cal.chance(C, n) == pytest.approx(ratio, rel=1e-9)


def rates(case, draws):
    (row,) = cal.calibrate(draws=draws, cases=(case,), n_boot=400)
    return row


def test_no_class_structure_is_observed_in_at_most_5_percent():
    row = rates("none", 40)
    assert row["observed"] <= 0.05 and row["not observed"] >= 0.9


def test_planted_rise_to_1_5x_chance_is_observed_in_at_least_95_percent():
    assert rates("planted", 40)["observed"] >= 0.95


def test_attention_no_better_than_the_untrained_head_is_rarely_observed():
    assert rates("untrained", 40)["observed"] <= 0.05


@pytest.mark.parametrize("case", ["within_3e-4", "all_below", "last_below", "flat"])
def test_patterns_rule_v1_called_observed_are_never_observed(case):
    assert rates(case, 15)["observed"] == 0.0


def test_the_table_names_every_case():
    text = cal.format_calibration(cal.calibrate(draws=1, cases=("none", "all_below"), n_boot=200))
    assert "none" in text and "all_below" in text and "geometry" in text


def test_gain_below_chance_is_solved_not_mirrored():
    C, n = 4, 6
    for ratio in (0.3, 0.8):
        A, labels, inst = cal.synthetic_attention([cal.gain_for_ratio(ratio, C, n)], C, n,
                                                  np.random.default_rng(0), sigma=0.0)
        assert mt.same_class_mass(A, labels, inst)[0] / cal.chance(C, n) == pytest.approx(ratio, rel=1e-9)
    with pytest.raises(ValueError, match="not reachable"):
        cal.gain_for_ratio(50.0, C, n)
