"""A run records its data's absolute path and fingerprint: replaced data is refused, a relative
data.root is read from where the run started, ~ is expanded, and older run folders still work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from deepfusion.cli import main
from tests.model.runs.test_own_data import FAST, _vectors_file

TRAIN = ["train", "data.name=npz", "--no-progress", *FAST, "train.epochs=1", "eval.linear_epochs=0", "train.name=r"]


def _train(data: str, out: Path) -> Path:
    assert main([*TRAIN, f"data.root={data}", "--out", str(out)]) == 0
    return out / "r"


def _same_shape_other_values(path: Path) -> None:
    with np.load(path) as z:
        x, y = z["x"], z["y"]
    np.savez(path, x=x[::-1].copy(), y=y)


def test_the_data_path_and_fingerprint_are_recorded(tmp_path):
    data = _vectors_file(tmp_path / "v.npz")
    run = _train(str(data), tmp_path / "runs")
    source = json.loads((run / "data.json").read_text())["source"]
    assert source["path"] == str(data) and source["size"] == data.stat().st_size and len(source["sha256"]) == 64


def test_data_replaced_under_a_run_is_refused_unless_forced(tmp_path, capsys):
    data = _vectors_file(tmp_path / "v.npz")
    run = _train(str(data), tmp_path / "runs")
    _same_shape_other_values(data)
    capsys.readouterr()
    assert main(["train", "--no-progress", "--resume", str(run), "train.epochs=2"]) == 2
    assert main(["eval", "--run", str(run), "--device", "cpu", "--no-write"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("is not what this run started on" in line and "--force" in line for line in err)
    assert main(["eval", "--run", str(run), "--device", "cpu", "--no-write", "--force"]) == 0
    assert main(["train", "--no-progress", "--resume", str(run), "train.epochs=2", "--force"]) == 0
    assert "using it anyway (--force)" in capsys.readouterr().err


def test_a_relative_root_is_read_from_where_the_run_started(tmp_path, monkeypatch):
    start, elsewhere = tmp_path / "start", tmp_path / "elsewhere"
    start.mkdir()
    elsewhere.mkdir()
    _vectors_file(start / "v.npz")
    monkeypatch.chdir(start)
    run = _train("v.npz", tmp_path / "runs")
    monkeypatch.chdir(elsewhere)  # holds no v.npz: the run's own file must be used
    assert main(["eval", "--run", str(run), "--device", "cpu", "--no-write"]) == 0
    _vectors_file(elsewhere / "v.npz", labels=np.arange(60) % 2)  # another file of that name here
    assert main(["eval", "--run", str(run), "--device", "cpu", "--no-write"]) == 0  # still the run's


def test_a_tilde_in_data_root_and_out_dir_is_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    _vectors_file(tmp_path / "home" / "v.npz")
    monkeypatch.chdir(tmp_path)
    assert main([*TRAIN, "data.root=~/v.npz", "train.out_dir=~/runs"]) == 0
    assert (tmp_path / "home" / "runs" / "r" / "eval.json").is_file() and not (tmp_path / "~").exists()


def test_a_run_from_before_fingerprints_warns_once_and_works(tmp_path, capsys):
    data = _vectors_file(tmp_path / "v.npz")
    run = _train(str(data), tmp_path / "runs")
    record = json.loads((run / "data.json").read_text())
    del record["source"]
    (run / "data.json").write_text(json.dumps(record))
    capsys.readouterr()
    assert main(["eval", "--run", str(run), "--device", "cpu", "--no-write"]) == 0
    assert main(["train", "--no-progress", "--resume", str(run), "train.epochs=2"]) == 0
    warnings = [l for l in capsys.readouterr().err.splitlines() if "fingerprint was not recorded" in l]
    assert len(warnings) == 2
    assert json.loads((run / "data.json").read_text())["source"]["sha256"]  # recorded from now on
