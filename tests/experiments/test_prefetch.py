"""Training missing runs ahead, several processes at a time, through the run cache."""

import pytest

from deepfusion.experiments.runs import RunSpec, is_finished, prefetch, run_dir_for
from tests.experiments.test_runs import TINY


@pytest.mark.slow  # trains runs in two worker processes (about 5 s)
def test_two_workers_train_each_missing_run_once(tmp_path):
    specs = [RunSpec("synthetic", TINY + (f"train.seed={s}",)) for s in (0, 1)]
    specs.append(specs[0])  # the same config twice: trained once
    lines = []
    assert prefetch(specs, tmp_path, workers=2, log=lines.append) == 2
    assert all(is_finished(run_dir_for(s.config(), tmp_path)) for s in specs)
    assert any("2 at a time" in line for line in lines)
    assert prefetch(specs, tmp_path, workers=2) == 0  # everything cached now
