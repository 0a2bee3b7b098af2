"""A start that died before its first checkpoint restarts under the same command; symbolic links
in place of a run folder or its checkpoints/ are refused, and nothing behind them is written or deleted."""

import os
import shutil

import pytest
import torch

from deepfusion.cli import main
from deepfusion.errors import RunError
from deepfusion.model.runs import run_setup
from tests.model.runs.test_train import TINY, tiny


def _fail_at_first_step(monkeypatch, error):
    real = run_setup.nt_xent

    def failing(*a, **k):
        if error == "nan":
            return real(*a, **k) * float("nan")
        raise error

    monkeypatch.setattr(run_setup, "nt_xent", failing)
    return real


@pytest.mark.parametrize("error", ["nan", torch.OutOfMemoryError("out of memory"), KeyboardInterrupt()])
def test_a_start_that_died_before_its_first_checkpoint_restarts(tmp_path, monkeypatch, capsys, error):
    import deepfusion.model.runs.loop as T

    cfg = tiny(tmp_path, "train.name=dead", "train.epochs=1", "eval.linear_epochs=0")
    real = _fail_at_first_step(monkeypatch, error)
    with pytest.raises((RunError, KeyboardInterrupt)):
        T.train(cfg, progress=False)
    left = sorted(os.listdir(tmp_path / "dead"))
    assert "config.yaml" in left and not (tmp_path / "dead" / "checkpoints" / "last.pt").exists()
    # --resume has nothing to resume and says to start again; starting again works
    assert main(["train", "--no-progress", "--resume", str(tmp_path / "dead")]) == 2
    assert "start it again with the same command without --resume" in capsys.readouterr().err
    monkeypatch.setattr(run_setup, "nt_xent", real)
    run = T.train(cfg, progress=False).run_dir
    assert (run / "checkpoints" / "last.pt").is_file() and (run / "eval.json").is_file()


def test_leftovers_of_a_kill_during_the_first_write_are_cleared(tmp_path):
    from deepfusion.model.runs.loop import train

    run = tmp_path / "k9"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("data: {}\n")
    (run / "metrics.jsonl").write_text('{"step": 1}\n')
    (run / ".write-test.abc123").write_text("ok")
    (run / "checkpoints" / ".last.pt.x1y2.tmp").write_bytes(b"PK\x03\x04half")
    assert (
        train(tiny(tmp_path, "train.name=k9", "train.epochs=1", "eval.linear_epochs=0"), progress=False).run_dir == run
    )
    assert not (run / "checkpoints" / ".last.pt.x1y2.tmp").exists() and not (run / ".write-test.abc123").exists()


def test_a_file_of_the_users_beside_leftovers_still_stops_a_new_run(tmp_path):
    from deepfusion.model.runs.loop import train

    run = tmp_path / "mine"
    run.mkdir()
    (run / "config.yaml").write_text("data: {}\n")
    (run / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="not empty"):
        train(tiny(tmp_path, "train.name=mine"), progress=False)
    assert sorted(os.listdir(run)) == [".lock", "config.yaml", "notes.txt"]


# ---------------------------------------------------------------- symbolic links
def test_a_run_folder_that_is_a_link_is_not_trained_into(tmp_path):
    from deepfusion.model.runs.loop import train

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "r").symlink_to(elsewhere)
    with pytest.raises(RunError, match="symbolic link"):
        train(tiny(tmp_path / "out", "train.name=r"), progress=False)
    assert os.listdir(elsewhere) == []


def test_a_checkpoints_link_is_neither_written_nor_cleaned_through(tmp_path):
    out = tmp_path / "out"
    assert (
        main(
            [
                "train",
                "--config",
                "synthetic",
                "--no-progress",
                "--out",
                str(out),
                *TINY,
                "train.name=r",
                "train.epochs=1",
                "eval.linear_epochs=0",
            ]
        )
        == 0
    )
    run, elsewhere = out / "r", tmp_path / "elsewhere"
    shutil.move(run / "checkpoints", elsewhere)
    (run / "checkpoints").symlink_to(elsewhere)
    stale = elsewhere / ".last.pt.abcd.tmp"
    stale.write_bytes(b"someone else's file")
    before = {p.name: p.stat().st_mtime_ns for p in elsewhere.iterdir()}
    assert main(["train", "--no-progress", "--resume", str(run), "train.epochs=2"]) == 3
    assert {p.name: p.stat().st_mtime_ns for p in elsewhere.iterdir()} == before and stale.exists()


def test_bad_data_leaves_no_run_folder_behind(tmp_path):
    import numpy as np

    x = np.random.default_rng(0).normal(size=(40, 4))
    x[5] = np.nan
    np.savez(tmp_path / "nan.npz", x=x, y=np.arange(40) % 2)
    assert (
        main(
            [
                "train",
                "--no-progress",
                "data.name=npz",
                f"data.root={tmp_path / 'nan.npz'}",
                "--out",
                str(tmp_path / "runs"),
                "train.name=r",
                "train.threads=1",
            ]
        )
        == 2
    )
    assert not (tmp_path / "runs" / "r").exists()


def test_a_deleted_config_yaml_is_taken_from_the_checkpoint(tmp_path, capsys):
    out = tmp_path / "out"
    assert (
        main(
            [
                "train",
                "--config",
                "synthetic",
                "--no-progress",
                "--out",
                str(out),
                *TINY,
                "train.name=r",
                "train.epochs=1",
                "eval.linear_epochs=0",
            ]
        )
        == 0
    )
    (out / "r" / "config.yaml").unlink()
    assert main(["eval", "--run", str(out / "r"), "--device", "cpu", "--no-write"]) == 0
    assert main(["train", "--no-progress", "--resume", str(out / "r"), "train.epochs=2"]) == 0
    assert "config.yaml is missing; using the config saved in the run's checkpoint" in capsys.readouterr().err
    assert (out / "r" / "config.yaml").is_file()
