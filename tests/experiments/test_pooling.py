"""Pooling training seeds: one config only, each folder once, and the seeds as the verdict's unit."""

import numpy as np
import pytest

from deepfusion.errors import DataError
from deepfusion.experiments import analyze
from deepfusion.experiments.calibration import gain_for_ratio, synthetic_attention
from deepfusion.experiments.pooling import check_runs, pool
from deepfusion.experiments.record import PooledAnalysis
from deepfusion.model.runs.config import load_config, save_config


def run_folder(root, name, *overrides):
    folder = root / name
    folder.mkdir()
    save_config(load_config("synthetic", list(overrides)), folder / "config.yaml")
    return folder


def test_runs_differing_only_in_seed_and_output_pass(tmp_path):
    a = run_folder(tmp_path, "a", "train.seed=1", "train.name=a")
    b = run_folder(tmp_path, "b", "train.seed=2", "train.name=b", "train.log_every=3")
    assert [c.train.seed for c in check_runs([a, b])] == [1, 2]


def test_runs_of_different_configs_name_the_keys(tmp_path):
    a = run_folder(tmp_path, "a", "train.seed=1")
    b = run_folder(tmp_path, "b", "train.seed=2", "model.depth=3", "loss.temperature=0.1")
    with pytest.raises(DataError, match=r"differ in loss.temperature, model.depth, not only in train.seed"):
        check_runs([a, b])


def test_a_folder_given_twice_and_shared_seeds_are_refused(tmp_path):
    a = run_folder(tmp_path, "a", "train.seed=1")
    with pytest.raises(DataError, match="given twice"):
        check_runs([a, tmp_path / "." / "a"])
    b = run_folder(tmp_path, "b", "train.seed=1")
    with pytest.raises(DataError, match="share train.seed"):
        check_runs([a, b])


def synthetic_record(seed: int, ratios, step: int = 10):
    rng = np.random.default_rng(seed)
    C, n = 4, 6
    gains = np.array([gain_for_ratio(r, C, n) for r in ratios])
    caps, untrained = [], []
    for _ in range(4):
        A, labels, inst = synthetic_attention(gains, C, n, rng)
        tokens = rng.standard_normal((len(ratios) + 1, len(labels), 8))
        caps.append({"attention": A[:, None], "tokens": tokens, "labels": labels, "inst": inst,
                     "visible": np.ones((len(labels), len(labels)), bool)})
        untrained.append(synthetic_attention(np.zeros(len(ratios)), C, n, rng)[0][:, None])
    return analyze.record_from_batches(caps, untrained, n_boot=300, seed=seed,
                                       settings={"seed": 0, "batch_seed": seed},  # one analysis seed, own batches
                                       identity={"run": f"s{seed}", "train_seed": seed, "step": step})


def test_pooled_seeds_give_the_verdict_over_seeds():
    records = [synthetic_record(s, [1.0, 1.2, 1.4, 1.6]) for s in range(3)]
    pooled = pool(records, n_boot=300)
    assert pooled.verdict.seeds == 3 and pooled.verdict.outcome == "observed"
    assert pooled.runs == ["s0", "s1", "s2"] and len(pooled.layers) == 4
    assert pooled.verdict.layers == pytest.approx(np.mean([r.verdict.layers for r in records], axis=0))
    assert pooled.settings.batch_seed is None and pooled.settings.n_boot == 300  # each run drew its own batches
    assert PooledAnalysis.from_json(pooled.to_json()).settings == pooled.settings


def test_runs_at_different_steps_are_not_pooled():
    with pytest.raises(DataError, match="different steps"):
        pool([synthetic_record(0, [1.0, 1.5], step=5), synthetic_record(1, [1.0, 1.5], step=9)], n_boot=300)


def test_analyses_made_with_other_options_are_not_pooled_and_named():
    a, b = synthetic_record(0, [1.0, 1.5]), synthetic_record(1, [1.0, 1.5])
    b.settings.views = "eval_view"
    with pytest.raises(DataError, match="differ in views"):
        pool([a, b], n_boot=300)
