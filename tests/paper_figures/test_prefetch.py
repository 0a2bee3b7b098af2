"""Training the figures' runs ahead, several processes at a time, through the cache."""

import pytest

from deepfusion.paper_figures import cache, runs

TINY = ("train.epochs=1", "train.batch_size=64", "model.depth=1", "eval.linear_epochs=2", "eval.head_batch=32",
        "data.options={samples_per_class: 40}", "train.device=cpu")


@pytest.mark.slow  # trains runs in two worker processes (about 5 s)
def test_two_workers_train_each_missing_run_once(tmp_path):
    specs = [runs.RunSpec("synthetic", TINY + (f"train.seed={s}",)) for s in (0, 1)]
    specs.append(specs[0])  # the same config twice: trained once
    lines = []
    assert runs.prefetch(specs, tmp_path, workers=2, log=lines.append) == 2
    assert all(cache.is_finished(cache.run_dir_for(s.config(), tmp_path)) for s in specs)
    assert any("2 at a time" in line for line in lines)
    assert runs.prefetch(specs, tmp_path, workers=2) == 0  # everything cached now
