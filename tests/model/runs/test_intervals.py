"""Wilson score intervals against hand computations, and their place in eval.json."""

import math

import pytest

from deepfusion.errors import DataError
from deepfusion.model.runs.intervals import Z95, accuracy_interval, wilson_interval


def _by_hand(k, n, z=1.96):
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_eight_of_ten_matches_the_textbook_values():
    # p = 0.8, z^2 = 3.8415: centre 0.8192 / 1.3841 = 0.7167, half 1.4160 * 0.1600 = 0.2266
    low, high = wilson_interval(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)


@pytest.mark.parametrize("k, n", [(34, 36), (1, 3), (500, 1000), (999, 1000), (5, 36)])
def test_matches_the_formula(k, n):
    low, high = wilson_interval(k, n, z=1.96)
    assert (low, high) == pytest.approx(_by_hand(k, n), abs=1e-12)
    assert low < k / n < high


def test_ends_are_exact_and_inside_zero_one():
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 10)[1] == pytest.approx(_by_hand(0, 10, Z95)[1])
    assert accuracy_interval(None, 10) is None and accuracy_interval(0.5, 36) == list(wilson_interval(18, 36))


@pytest.mark.parametrize("k, n", [(1, 0), (-1, 5), (6, 5)])
def test_impossible_counts_are_refused(k, n):
    with pytest.raises(DataError):
        wilson_interval(k, n)
