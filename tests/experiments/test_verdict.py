"""Verdict v2: the statistics, the intervals, each condition failing alone, and bad input."""

import numpy as np
import pytest

from deepfusion.errors import DataError
from deepfusion.experiments.verdict import (INCONCLUSIVE, LINE, NOT_OBSERVED, OBSERVED, Verdict, bootstrap_layers,
                                            deep_fusion_verdict, seed_interval, spearman_with_depth, statistics)

S, B, L, P = 3, 5, 4, 200
CHANCE = 0.1


def case(profile, untrained=None, noise=0.002, perm_profile=None, seed=0):
    """Masses (S, B, L) around CHANCE * profile, with matching nulls."""
    rng = np.random.default_rng(seed)
    mass = CHANCE * np.asarray(profile) + noise * rng.standard_normal((S, B, L))
    perm_mass = CHANCE * np.asarray(perm_profile or [1.0] * L) + noise * rng.standard_normal((P, S, B, L))
    un = CHANCE * np.asarray(untrained or [1.0] * L) + noise * rng.standard_normal((S, B, L))
    return mass, CHANCE, perm_mass, un


def judge(*args, **kw):
    return deep_fusion_verdict(*args, n_boot=500, **kw)


def test_statistics_of_known_layers():
    st = statistics(np.array([1.0, 1.2, 1.1, 1.5]))
    assert st["effect"] == 1.5 and st["rise"] == pytest.approx(0.5) and st["spearman"] == pytest.approx(0.8)


def test_spearman_with_depth_known_values():
    assert spearman_with_depth([0, 1, 2, 3]) == pytest.approx(1.0)
    assert spearman_with_depth([3, 2, 1, 0]) == pytest.approx(-1.0)
    assert spearman_with_depth([1, 1, 1]) == 0.0  # no variation is no rise, not NaN


def test_bootstrap_of_identical_seeds_and_batches_is_a_point():
    ratio = np.broadcast_to(np.array([1.0, 2.0]), (3, 4, 2))
    assert np.allclose(bootstrap_layers(ratio, 100, 0), [1.0, 2.0])


def test_seed_interval_is_at_least_the_t_interval():
    per_seed = np.array([1.0, 1.5, 2.0])
    lo, hi = seed_interval(1.5, per_seed, np.full(50, 1.5))
    assert lo == pytest.approx(1.5 - 4.303 * 0.5 / np.sqrt(3), abs=1e-3) and hi > 2.7


def test_a_clear_rise_above_the_line_is_observed():
    v = judge(*case([1.0, 1.2, 1.4, 1.6]))
    assert v.outcome == OBSERVED and all(v.conditions.values()) and v.decided_by == "every condition holds"
    assert v.seeds == 3 and v.label.startswith("Deep Fusion observed (3 seeds")


def test_near_chance_is_not_observed_and_says_why():
    v = judge(*case([1.0, 1.01, 1.0, 1.02]))
    assert v.outcome == NOT_OBSERVED and v.effect_ci[1] < LINE and "below the 1.25x line" in v.decided_by


@pytest.mark.parametrize("profile,untrained,perm,failed", [
    ([1.5, 1.5, 1.5, 1.5], None, None, "rise"),  # strong but flat
    ([1.0, 1.1, 1.2, 1.24], None, None, "effect at least line"),  # rising, not reaching the line
    ([1.0, 1.2, 1.4, 1.6], [1.0, 1.2, 1.4, 1.6], None, "untrained head"),  # nothing learned
    ([1.0, 1.2, 1.4, 1.6], None, [1.0, 1.2, 1.4, 1.7], "permutation null"),  # labels do not matter
])
def test_each_failing_condition_makes_it_inconclusive(profile, untrained, perm, failed):
    v = judge(*case(profile, untrained=untrained, perm_profile=perm))
    assert v.outcome == INCONCLUSIVE and failed in v.decided_by


def test_one_seed_is_labelled_and_uses_batches_only():
    mass, c, perm, un = case([1.0, 1.2, 1.4, 1.6])
    v = judge(mass[:1], c, perm[:, :1], un[:1])
    assert v.seeds == 1 and "1 seed" in v.label


def test_record_round_trips_and_carries_rule_and_version():
    v = judge(*case([1.0, 1.2, 1.4, 1.6]))
    back = Verdict.from_json(v.to_json())
    assert back == v and back.version == 2 and "v2" in back.rule
    with pytest.raises(DataError, match="rule version 1"):
        Verdict.from_json({**v.to_json(), "version": 1})


def test_verdict_is_reproducible_with_a_seed():
    args = case([1.0, 1.2, 1.3, 1.4], noise=0.02)
    assert judge(*args, seed=3) == judge(*args, seed=3)


@pytest.mark.parametrize("change,match", [
    (lambda a: (a[0][:, :, :1], a[1], a[2][..., :1], a[3][..., :1]), "one attention layer"),
    (lambda a: (a[0][:, :1], a[1], a[2][:, :, :1], a[3][:, :1]), "at least 2 analysis batches"),
    (lambda a: (a[0], a[1], a[2][:50], a[3]), "too few for the null"),
    (lambda a: (a[0], a[1], a[2], a[3][:2]), "untrained-head masses have shape"),
    (lambda a: (a[0] * np.nan, a[1], a[2], a[3]), "non-finite"),
    (lambda a: (a[0], 0.0, a[2], a[3]), "chance level is 0"),
])
def test_bad_input_raises(change, match):
    with pytest.raises(DataError, match=match):
        judge(*change(case([1.0, 1.2, 1.4, 1.6])))


def test_permutation_p_value_counts_the_measurement_as_one_draw():
    mass, c, perm, un = case([1.0, 1.2, 1.4, 1.6])
    v = judge(mass, c, perm, un)
    assert v.permutation_null["effect_p"] == pytest.approx(1 / (P + 1))  # no permutation reaches it
    # labels that do not matter: every permutation carries the same rise, so p is about 1/2 or more
    v = judge(mass, c, mass[None].repeat(P, 0), un)
    assert v.permutation_null["effect_p"] > 0.025 and not v.conditions["effect_above_permutation_null"]


def test_spearman_interval_stays_within_minus_1_and_1():
    v = judge(*case([1.0, 1.2, 1.4, 1.6], noise=0.03))
    assert -1.0 <= v.spearman_ci[0] <= v.spearman_ci[1] <= 1.0
