"""deepfusion figures --paper-record: F7 drawn from a saved paper-regime record, nothing trained."""

import json
from pathlib import Path

import pytest

from deepfusion.cli import main
from deepfusion.errors import DataError
from deepfusion.experiments.studies.paper_regime import read_paper_regime

RECORD = Path(__file__).parents[2] / "experiments" / "paper_regime_cpu.json"


def test_the_projects_record_draws_f7_with_its_runs_in_the_index(tmp_path):
    assert main(["figures", "--paper-record", str(RECORD), "--out", str(tmp_path / "f7")]) == 0
    assert (tmp_path / "f7" / "f7_paper_regime.png").stat().st_size > 10_000
    page = (tmp_path / "f7" / "index.md").read_text()
    record = json.loads(RECORD.read_text())
    for run in record["arms"][0]["runs"]:
        assert run in page  # every arm run is named, with its config hash
    assert f"--paper-record {RECORD}" in page  # the command that redraws it


@pytest.mark.parametrize(
    "text, words",
    [(None, "not found"), ("[", "not a readable"), ('{"version": 1}', "'arms'"), ('{"version": 99}', "version 1")],
    ids=["missing", "not json", "no arms", "other version"],
)
def test_a_file_that_is_not_a_record_is_refused_by_name(tmp_path, text, words):
    path = tmp_path / "rec.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(DataError, match="rec.json") as err:
        read_paper_regime(path)
    assert words in str(err.value)


def test_paper_record_cannot_be_combined_with_the_other_modes(tmp_path, capsys):
    assert main(["figures", "--paper-record", str(RECORD), "--quick", "--out", str(tmp_path / "x")]) != 0
    assert "cannot be combined with --quick" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_weight_decay_ticks_stay_short():
    from deepfusion.paper_figures.f7_paper_regime import _tick

    assert [_tick(v) for v in (0.0, 1e-4, 5e-4, 0.02, 256)] == ["0", "1e-4", "5e-4", "0.02", "256"]


def test_the_projects_record_holds_every_seed_of_every_ablation_cell():
    record = read_paper_regime(RECORD)
    sweeps = record.ablations
    assert sweeps.train_seeds == list(range(1, sweeps.seeds + 1))
    for sweep in sweeps.sweeps:
        for per_value in (sweep.knn, sweep.random_knn, sweep.ratio, sweep.linear):
            assert len(per_value) == len(sweep.values) and all(len(v) == sweeps.seeds for v in per_value)
    # a cell equal to the preset is one set of runs, whichever sweep it sits in
    preset = [s.knn[s.values.index(s.base_value)] for s in sweeps.sweeps]
    assert all(p == preset[0] for p in preset)
    # and those runs are the first arm's (the preset as is) seeds of the same numbers
    assert preset[0] == record.arms[0].knn[: sweeps.seeds]
