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


@pytest.mark.parametrize(
    "trained, baseline, word",
    [
        ([0.80, 0.85], [0.70, 0.75], "above"),
        ([0.60, 0.65], [0.70, 0.75], "below"),
        ([0.72, 0.80], [0.70, 0.75], "tied"),
        ([0.70, 0.75], [0.75, 0.80], "tied"),  # touching ends overlap
        (None, [0.70, 0.75], ""),
    ],
)
def test_compare_intervals_in_words(trained, baseline, word):
    from deepfusion.model.runs.intervals import compare_intervals

    assert compare_intervals(trained, baseline) == word


def test_eval_table_says_tied_above_and_below_in_words():
    from deepfusion.model.runs.eval_report import format_table
    from deepfusion.model.runs.eval_result import EvalResult

    results = EvalResult.from_json(
        dict(
            knn=0.80,
            knn_ci=[0.77, 0.82],
            random_knn=0.73,
            random_knn_ci=[0.70, 0.76],
            linear=0.75,
            linear_ci=[0.72, 0.78],
            random_linear=0.76,
            random_linear_ci=[0.73, 0.79],
            head_loo1nn=0.5,
            head_loo1nn_ci=[0.47, 0.53],
            untrained_head_loo1nn=0.6,
            untrained_head_loo1nn_ci=[0.57, 0.63],
            linear_fraction=0.1,
            linear_epochs=100,
        )
    )
    rows = {line.split("  ")[0]: line for line in format_table(results).splitlines()}
    assert rows["kNN (backbone)"].endswith("above random backbone")
    assert rows["linear probe (backbone)"].endswith("tied with random backbone (95% intervals overlap)")
    assert rows["head leave-one-out 1-NN"].endswith("BELOW untrained head")
    assert "the same for the trained and the random backbone" in format_table(results)
