"""The paired head comparison on hand-built run folders with known answers, and its refusals."""

import json

import pytest

from deepfusion.errors import DataError
from deepfusion.experiments.studies.head_comparison import (
    METRICS,
    HeadComparison,
    compare_heads,
    decide,
    paired_difference,
    t_interval,
)
from deepfusion.model.network.registry import HEADS as REGISTRY
from tests.experiments.studies.head_runs import HEADS, accuracies, write_grid, write_run

T_975_2DOF = 4.302652729911275  # Student t quantile 0.975 with 2 degrees of freedom


def test_differences_are_transformer_minus_other_seed_by_seed(tmp_path):
    rec = compare_heads(write_grid(tmp_path))
    assert rec.seeds == (1, 2, 3) and rec.reference == "transformer" and rec.preset == "synthetic"
    # the reference first, then the other heads in registry order
    assert [h.head for h in rec.heads] == ["transformer", *[h for h in REGISTRY.names() if h != "transformer"]]
    for lead, other in enumerate(HEADS[1:], 1):
        for metric in METRICS:
            d = rec.difference(other, metric)
            assert d.per_seed == pytest.approx([lead * 1.1, lead * 1.2, lead * 1.3])
            assert d.n == 3 and d.mean == pytest.approx(lead * 1.2)
            half = T_975_2DOF * lead * 0.1 / 3**0.5
            assert (d.low, d.high) == pytest.approx((lead * 1.2 - half, lead * 1.2 + half))
    assert len(rec.differences) == 3 * len(METRICS)


def test_per_seed_values_and_baselines_are_kept_in_percent(tmp_path):
    rec = compare_heads(write_grid(tmp_path, seeds=(2, 5)))
    mlp = rec.head("mlp")
    assert mlp.values["random_knn"] == pytest.approx([100 * accuracies("mlp", s)["random_knn"] for s in (2, 5)])
    assert mlp.runs == (str(tmp_path / "mlp_s2"), str(tmp_path / "mlp_s5"))
    assert rec.head("transformer").mean("knn") == pytest.approx(60.0)


def test_a_planted_constant_effect_has_a_zero_width_interval():
    d = paired_difference(
        "transformer", "ffn", "knn", [70.0, 71.0, 72.0, 69.0, 75.0, 73.0], [68.0, 69.0, 70.0, 67.0, 73.0, 71.0]
    )
    assert d.mean == pytest.approx(2.0) and (d.low, d.high) == pytest.approx((2.0, 2.0)) and d.n == 6


def test_every_head_is_compared_with_its_random_backbone(tmp_path):
    rec = compare_heads(write_grid(tmp_path))
    for lead, head in enumerate(HEADS):
        for metric, baseline in (("knn", "random_knn"), ("linear", "random_linear")):
            g = rec.gain(head, metric)
            assert (g.minuend, g.subtrahend) == (head, "random backbone")
            # accuracies() puts random_knn 4 and random_linear 4 points above knn and linear, for every head
            assert g.per_seed == pytest.approx([-4.0] * 3) and g.mean == pytest.approx(-4.0)
    assert len(rec.gains) == 2 * len(HEADS)


def test_one_seed_gives_no_interval(tmp_path):
    rec = compare_heads(write_grid(tmp_path, seeds=(1,), heads=("transformer", "mlp")))
    d = rec.difference("mlp", "linear")
    assert d.n == 1 and d.low is None and d.high is None and t_interval([1.0]) == (None, None)


def test_the_record_round_trips_through_json(tmp_path):
    rec = compare_heads(write_grid(tmp_path))
    again = HeadComparison.from_json(json.loads(json.dumps(rec.to_json())))
    assert again == rec


def test_another_record_version_is_refused(tmp_path):
    data = compare_heads(write_grid(tmp_path, seeds=(1, 2), heads=("transformer", "ffn"))).to_json()
    with pytest.raises(DataError, match="record version 0"):
        HeadComparison.from_json(dict(data, version=0))


def test_runs_of_another_config_are_refused_naming_the_key(tmp_path):
    runs = write_grid(tmp_path, seeds=(1, 2), heads=("transformer", "ffn"))
    runs.append(write_run(tmp_path / "other", "mlp", 1, accuracies("mlp", 1), "model.dim=8"))
    with pytest.raises(DataError, match=r"differ in model\.dim, not only in model\.head and train\.seed"):
        compare_heads(runs)


def test_heads_with_other_seeds_are_refused_naming_them(tmp_path):
    runs = write_grid(tmp_path, seeds=(1, 2), heads=("transformer",)) + write_grid(tmp_path, seeds=(1,), heads=("ffn",))
    with pytest.raises(DataError, match="head ffn has seeds 1 but transformer has 1,2"):
        compare_heads(runs)


def test_two_runs_of_one_head_and_seed_are_refused(tmp_path):
    runs = write_grid(tmp_path, seeds=(1,), heads=("transformer", "ffn"))
    runs.append(write_run(tmp_path / "again", "ffn", 1, accuracies("ffn", 1)))
    with pytest.raises(DataError, match="both head ffn, seed 1"):
        compare_heads(runs)


def test_without_the_transformer_runs_there_is_nothing_to_pair(tmp_path):
    with pytest.raises(DataError, match="no transformer run"):
        compare_heads(write_grid(tmp_path, seeds=(1, 2), heads=("ffn", "mlp")))
    with pytest.raises(DataError, match="only transformer runs"):
        compare_heads(write_grid(tmp_path / "t", seeds=(1, 2), heads=("transformer",)))


def test_a_run_still_training_is_refused(tmp_path):
    runs = write_grid(tmp_path, seeds=(1,), heads=("transformer",))
    runs.append(write_run(tmp_path, "mlp", 1, accuracies("mlp", 1), finished=False))
    with pytest.raises(DataError, match="before the run's last step"):
        compare_heads(runs)
    (runs[-1] / "eval.json").unlink()
    with pytest.raises(DataError, match="mlp_s1 has no eval.json"):
        compare_heads(runs)


def test_an_eval_without_a_metric_is_refused_naming_it(tmp_path):
    values = {k: v for k, v in accuracies("ffn", 1).items() if k != "head_knn"}
    runs = write_grid(tmp_path, seeds=(1,), heads=("transformer",)) + [write_run(tmp_path, "ffn", 1, values)]
    with pytest.raises(DataError, match="ffn_s1 has no 'head_knn' accuracy; evaluate it again"):
        compare_heads(runs)


def test_no_runs_is_refused():
    with pytest.raises(DataError, match="no run folder given"):
        compare_heads([])


def _with_values(tmp_path, knn_gap, head_knn_gap, seeds=6):
    """Runs where the transformer leads ffn by knn_gap[seed] and head_knn_gap[seed] points (others far behind)."""
    runs = []
    for s in range(1, seeds + 1):
        base = accuracies("transformer", s)
        runs.append(write_run(tmp_path, "transformer", s, base))
        ffn = dict(base, knn=base["knn"] - knn_gap[s - 1] / 100, head_knn=base["head_knn"] - head_knn_gap[s - 1] / 100)
        runs.append(write_run(tmp_path, "ffn", s, ffn))
    return runs


def test_the_rule_calls_better_worse_and_tied_with_bonferroni_intervals(tmp_path):
    better = [2.0, 2.5, 3.0, 2.2, 2.8, 2.6]  # far above 0
    noise = [0.5, -0.4, 0.3, -0.6, 0.2, -0.1]  # centred on 0
    calls = {c.metric: c for c in decide(compare_heads(_with_values(tmp_path, noise, better)))}
    assert calls["head_knn"].call == "better" and calls["knn"].call == "tied"
    assert calls["knn"].level == pytest.approx(1 - 0.05 / 2)  # one other head x two primary metrics
    worse = decide(compare_heads(_with_values(tmp_path / "w", [-g for g in better], noise)))
    assert {c.metric: c.call for c in worse} == {"knn": "worse", "head_knn": "tied"}


def test_the_rule_is_wider_than_the_95_interval_and_needs_six_seeds(tmp_path):
    # a lead whose 95% interval excludes 0 but whose Bonferroni interval does not
    gaps = [0.1, 1.9, 0.2, 1.8, 0.3, 1.7]
    rec = compare_heads(_with_values(tmp_path, gaps, gaps))
    d = rec.difference("ffn", "knn")
    assert d.low > 0  # 95%
    (knn,) = [c for c in decide(rec) if c.metric == "knn"]
    assert knn.low < 0 < d.low and knn.call == "tied"
    few = decide(compare_heads(_with_values(tmp_path / "few", gaps[:3], gaps[:3], seeds=3)))
    assert {c.call for c in few} == {"exploratory"}
