"""Pooling training seeds: one config only, each folder once, and the seeds as the verdict's unit."""

from pathlib import Path

import numpy as np
import pytest

from deepfusion.errors import DataError
from deepfusion.experiments import analyze
from deepfusion.experiments import calibration as cal
from deepfusion.experiments.pooling import check_runs, pool, pool_files
from deepfusion.experiments.record import PooledAnalysis
from deepfusion.model.runs.config import load_config, save_config
from deepfusion.model.runs.layout import RunFolder


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


def synthetic_record(root, seed: int, ratios, step: int = 10, per_class: int = 6):
    """A run folder with the record and attention.npz of synthetic batches at ``ratios`` x chance."""
    rng = np.random.default_rng(seed)
    world = cal.World(rng, "theory")
    A, labels, inst = cal.seed_attention(world, ratios)
    A0 = cal.seed_attention(world, [1.0] * len(ratios))[0]
    caps = [
        {
            "attention": A[b],
            "tokens": rng.standard_normal((len(ratios) + 1, labels.shape[1], 8)),
            "labels": labels[b],
            "inst": np.tile(np.arange(labels.shape[1] // 2), 2),
            "indices": inst[b, : labels.shape[1] // 2],
            "visible": np.ones((labels.shape[1],) * 2, bool),
        }
        for b in range(A.shape[0])
    ]
    untrained = [A0[b] for b in range(A.shape[0])]
    record = analyze.record_from_batches(
        caps,
        untrained,
        seed=seed,
        settings={"seed": 0, "batch_seed": seed},
        identity={"run": f"s{seed}", "train_seed": seed, "step": step},
    )
    folder = Path(root) / f"s{seed}"
    folder.mkdir(exist_ok=True)
    np.savez(RunFolder(folder).attention, **analyze.capture_arrays(caps, untrained))
    return record, folder


def test_pooled_seeds_give_the_verdict_over_seeds(tmp_path):
    made = [synthetic_record(tmp_path, s, [1.0, 1.2, 1.4, 1.6]) for s in range(6)]
    records, dirs = [m[0] for m in made], [m[1] for m in made]
    pooled = pool(records, dirs)
    assert pooled.verdict.seeds == 6 and pooled.verdict.outcome == "observed"
    assert pooled.runs == [f"s{s}" for s in range(6)] and len(pooled.layers) == 4
    assert pooled.verdict.layers == pytest.approx(np.mean([r.verdict.layers for r in records], axis=0))
    assert pooled.settings.batch_seed is None  # each run drew its own batches
    assert PooledAnalysis.from_json(pooled.to_json()).settings == pooled.settings


def test_files_and_run_folders_give_the_same_verdict(tmp_path):
    made = [synthetic_record(tmp_path, s, [1.0, 1.3]) for s in range(2)]
    pooled = pool([m[0] for m in made], [m[1] for m in made])
    files = pool_files([RunFolder(m[1]).attention for m in made])
    assert files.verdict == pooled.verdict


def test_runs_at_different_steps_are_not_pooled(tmp_path):
    made = [synthetic_record(tmp_path, 0, [1.0, 1.5], step=5), synthetic_record(tmp_path, 1, [1.0, 1.5], step=9)]
    with pytest.raises(DataError, match="different steps"):
        pool([m[0] for m in made], [m[1] for m in made])


def test_analyses_made_with_other_options_are_not_pooled_and_named(tmp_path):
    (a, da), (b, db) = synthetic_record(tmp_path, 0, [1.0, 1.5]), synthetic_record(tmp_path, 1, [1.0, 1.5])
    b.settings.views = "eval_view"
    with pytest.raises(DataError, match="differ in views"):
        pool([a, b], [da, db])


def test_a_fit_that_no_seed_has_pools_to_nan_without_a_warning(tmp_path):
    import dataclasses
    import warnings

    record, folder = synthetic_record(tmp_path, 0, [1.0, 1.3])
    layer = record.layers[1]
    nan_fit = dataclasses.replace(layer, heads={**layer.heads, "beta_r2": np.full_like(layer.heads["beta_r2"], np.nan)})
    record = dataclasses.replace(record, layers=[record.layers[0], nan_fit])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "Mean of empty slice" would reach the user's terminal
        pooled = pool([record], [folder])
    assert np.isnan(pooled.layers[1]["beta_r2"]) and np.isfinite(pooled.layers[0]["beta_r2"])
