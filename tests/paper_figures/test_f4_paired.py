"""F4 paired by seed (figures --heads): the files, the index naming every run and seed, refusals."""

import json

import pytest

from deepfusion import cli
from deepfusion.experiments.studies.head_comparison import HeadComparison, compare_heads
from tests.experiments.studies.head_runs import write_grid


def test_figures_heads_draws_f4_and_indexes_every_run_and_seed(tmp_path, capsys):
    runs = write_grid(tmp_path / "runs", seeds=(1, 2))
    out = tmp_path / "fig"
    assert cli.main(["figures", "--heads", str(tmp_path / "runs" / "*"), "--out", str(out)]) == 0
    for suffix in ("png", "pdf", "json"):
        assert (out / f"f4_head_comparison_paired.{suffix}").stat().st_size > 0, suffix
    rec = HeadComparison.from_json(json.loads((out / "f4_head_comparison_paired.json").read_text()))
    assert rec == compare_heads(runs)
    index = (out / "index.md").read_text()
    for run in runs:
        head, seed = run.name.rsplit("_s", 1)
        assert f"{run}: model.head={head} train.seed={seed}" in index, run
    assert "seeds 1,2, n=2" in index and "Fewer than 6 seeds: exploratory" in index
    assert "95% t-interval over the 2 seeds" in index
    assert f"deepfusion figures --heads '{tmp_path / 'runs' / '*'}' --out {out}" in index


def test_one_seed_draws_without_an_interval(tmp_path):
    write_grid(tmp_path / "runs", seeds=(4,), heads=("transformer", "ffn"))
    assert cli.main(["figures", "--heads", str(tmp_path / "runs" / "*"), "--out", str(tmp_path / "fig")]) == 0
    assert "one seed: no interval" in (tmp_path / "fig" / "index.md").read_text()


@pytest.mark.parametrize("extra, words", [(["--quick"], "--quick"), (["--run", "x"], "--run")])
def test_heads_with_another_mode_is_one_line(tmp_path, capsys, extra, words):
    write_grid(tmp_path / "runs", seeds=(1,), heads=("transformer", "ffn"))
    out = tmp_path / "fig"
    assert cli.main(["figures", "--heads", str(tmp_path / "runs" / "*"), *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0] and "--heads" in err[0]
    assert not out.exists()


def test_unpaired_runs_leave_no_figure(tmp_path, capsys):
    write_grid(tmp_path / "runs", seeds=(1, 2), heads=("transformer",))
    write_grid(tmp_path / "runs", seeds=(1,), heads=("mlp",))
    out = tmp_path / "fig"
    assert cli.main(["figures", "--heads", str(tmp_path / "runs" / "*"), "--out", str(out)]) == 2
    assert "head mlp has seeds 1" in capsys.readouterr().err
    assert not out.exists()
