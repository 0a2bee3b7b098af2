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
    seeds = sweeps.seeds
    assert sweeps.train_seeds == list(range(1, seeds + 1))
    for sweep in sweeps.sweeps:
        for per_value in (sweep.knn, sweep.random_knn, sweep.ratio, sweep.linear):
            assert len(per_value) == len(sweep.values) and all(len(v) == seeds for v in per_value)
    # A cell whose config is an arm's (the preset in every sweep, temperature 0.1) holds that arm's runs.
    arms = {arm.name: arm for arm in record.arms}
    by_key = {s.key: s for s in sweeps.sweeps}
    cells = [(s.key, s.base_value, "as is") for s in sweeps.sweeps] + [("loss.temperature", 0.1, "temperature 0.1")]
    for key, value, name in cells:
        sweep, arm = by_key[key], arms[name]
        i = sweep.values.index(value)
        assert sweep.knn[i] == arm.knn[:seeds] and sweep.random_knn[i] == arm.random_knn[:seeds], (key, value)
        assert sweep.ratio[i] == [r["last_ratio"] for r in arm.pooled.per_run][:seeds], (key, value)


def test_the_paper_cpu_head_record_pairs_with_the_paper_regime_record():
    from deepfusion.experiments.studies.head_comparison import HeadComparison

    heads = HeadComparison.from_json(json.loads((RECORD.parent / "heads_paper_cpu.json").read_text()))
    as_is = next(arm for arm in read_paper_regime(RECORD).arms if arm.name == "as is")
    # the transformer's runs are the preset's: the same seeds give the arm's numbers
    transformer = heads.head("transformer").values
    n = len(heads.seeds)
    assert heads.seeds == (1, 2) and list(transformer["knn"]) == as_is.knn[:n]
    assert list(transformer["random_knn"]) == as_is.random_knn[:n]
    ffn = heads.difference("ffn", "head_knn")
    assert ffn.per_seed == tuple(t - f for t, f in zip(transformer["head_knn"], heads.head("ffn").values["head_knn"]))
