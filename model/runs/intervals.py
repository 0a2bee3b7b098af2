"""Confidence intervals for accuracies measured on a finite test set.

An accuracy of 0.94 on 36 test samples and on 10,000 are different claims; the evaluation reports
each accuracy with its Wilson score interval, which (unlike the normal approximation) stays inside
[0, 1] and keeps close to its nominal coverage for small ``n`` and accuracies near 0 or 1.
"""

from __future__ import annotations

import math

from deepfusion.errors import DataError

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile: two-sided 95%


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval ``(low, high)`` for ``correct`` successes out of ``n`` trials.

    With ``p = correct / n``: centre ``(p + z^2 / 2n) / (1 + z^2 / n)``, half-width
    ``z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / 4n^2)``.
    """
    if n < 1 or not 0 <= correct <= n:
        raise DataError(f"an interval needs 0 <= correct <= n and n >= 1, got correct={correct}, n={n}")
    p, z2 = correct / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    low = 0.0 if correct == 0 else max(0.0, centre - half)  # exact at the ends, where rounding would leave 1e-16
    return low, 1.0 if correct == n else min(1.0, centre + half)


def accuracy_interval(accuracy: float | None, n: int, z: float = Z95) -> list[float] | None:
    """``[low, high]`` for an accuracy measured on ``n`` samples (None for a missing accuracy)."""
    if accuracy is None:
        return None
    return list(wilson_interval(int(round(accuracy * n)), n, z))


def compare_intervals(trained, baseline) -> str:
    """In words, how two 95% intervals ``[low, high]`` stand: ``"above"`` (``trained`` lies wholly
    above ``baseline``), ``"below"``, or ``"tied"`` (they overlap: the test split cannot tell them
    apart at this level); ``""`` when either is missing.

    Non-overlapping intervals are a conservative test for a difference (two accuracies on the same
    test split are paired), so "tied" can hide a real, small difference; "above" and "below" can
    be trusted.
    """
    if not trained or not baseline:
        return ""
    if trained[0] > baseline[1]:
        return "above"
    if trained[1] < baseline[0]:
        return "below"
    return "tied"
