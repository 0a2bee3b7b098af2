"""Run folders: the lock between processes, the rules for new and resumed runs, no symlink followed."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from deepfusion.cli import main
from deepfusion.errors import CheckpointError, RunError
from deepfusion.model.runs.layout import RunFolder, write_json
from deepfusion.model.runs.lock import folder_lock, holds_lock
from deepfusion.model.runs.run_folder import make_folder, remove_made
from tests.model.runs.test_train import TINY, _env, _wait_for_step, tiny

HOLD = textwrap.dedent("""
    import sys
    from deepfusion.model.runs.lock import folder_lock
    with folder_lock(sys.argv[1]):
        print("locked", flush=True)
        sys.stdin.read()  # hold until the test closes stdin
""")


class Holder:
    """Another process holding a run folder's lock until the block ends."""

    def __init__(self, root: Path):
        self.root = root

    def __enter__(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(self.root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        assert self.proc.stdout.readline().strip() == "locked"
        return self.proc

    def __exit__(self, *exc):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def test_a_second_process_gets_the_holders_pid(tmp_path):
    with Holder(tmp_path) as proc:
        with pytest.raises(RunError, match=f"in use by process {proc.pid}; wait for it to finish") as info:
            with folder_lock(tmp_path, "train in"):
                pass
        assert "\n" not in str(info.value)
    with folder_lock(tmp_path) as folder:  # released when the holder ends
        assert holds_lock(folder.root)
    assert not holds_lock(tmp_path)


def test_the_lock_is_reentrant_within_one_process(tmp_path):
    with folder_lock(tmp_path):
        with folder_lock(tmp_path):  # the cache around the training loop
            assert holds_lock(tmp_path)
        assert holds_lock(tmp_path)
    assert not holds_lock(tmp_path)


def _train_argv(out: Path, name: str, *extra: str) -> list[str]:
    return ["train", "--config", "synthetic", "--no-progress", "--out", str(out), *TINY, f"train.name={name}", *extra]


@pytest.mark.slow  # a real training process (about 6 s)
def test_second_train_and_resume_of_a_training_run_are_refused(tmp_path, capsys):
    """A real training process; a second train of the same name and a --resume of it both stop at once."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "deepfusion.cli"]
        + _train_argv(tmp_path, "busy", "train.epochs=200", "train.checkpoint_every=1", "eval.linear_epochs=0"),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert _wait_for_step(proc, tmp_path / "busy" / "metrics.jsonl", 2)
        before = (tmp_path / "busy" / "metrics.jsonl").read_text()
        assert main(_train_argv(tmp_path, "busy", "train.epochs=200")) == 3
        assert main(["train", "--no-progress", "--resume", str(tmp_path / "busy")]) == 3
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 2 and all(f"in use by process {proc.pid}" in line for line in lines), lines
        assert (tmp_path / "busy" / "metrics.jsonl").read_text().startswith(before)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    steps = [json.loads(l)["step"] for l in (tmp_path / "busy" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, len(steps) + 1))  # one writer: no step twice


def test_new_run_in_a_non_empty_folder_is_refused(tmp_path):
    from deepfusion.model.runs.loop import train

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("my notes")
    with pytest.raises(RunError, match="exists and is not empty \\(notes.txt\\).*nothing there is overwritten"):
        train(tiny(tmp_path, "train.name=mine"), progress=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "my notes"
    assert sorted(os.listdir(tmp_path / "mine")) == [".lock", "notes.txt"]


def test_new_run_in_an_empty_folder_is_fine(tmp_path):
    from deepfusion.model.runs.loop import train

    (tmp_path / "empty").mkdir()
    assert train(tiny(tmp_path, "train.name=empty", "train.epochs=1", "eval.linear_epochs=0"), progress=False)


@pytest.fixture(scope="module")
def done(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    assert main(_train_argv(out, "done", "train.epochs=2", "eval.linear_epochs=0")) == 0
    return out / "done"


def _copy(done: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(done, tmp_path / "run"))


@pytest.mark.parametrize("override", ["train.batch_size=24", "train.seed=7", "data.seed=3", "loss.temperature=0.3"])
def test_resume_refuses_a_change_of_trajectory(done, tmp_path, override):
    from deepfusion.model.runs.loading import run_config
    from deepfusion.model.runs.loop import train

    run = _copy(done, tmp_path)
    cfg = run_config(run, [override, "train.epochs=3"])
    with pytest.raises(CheckpointError, match=f"{override.split('=')[0]} differ.*--force"):
        train(cfg, run_dir=run, resume=True, progress=False)


def test_resume_refuses_an_edited_config_yaml_unless_forced(done, tmp_path, capsys):
    run = _copy(done, tmp_path)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["train"]["seed"] = 99
    (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert main(["train", "--no-progress", "--resume", str(run), "train.epochs=3"]) == 2
    assert "train.seed differ" in capsys.readouterr().err
    assert main(["train", "--no-progress", "--resume", str(run), "--force", "train.epochs=3"]) == 0
    assert "warning: resuming" in capsys.readouterr().err
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["seed"] == 99
    assert main(["train", "--no-progress", "--force", "--config", "synthetic"]) == 2  # --force needs --resume


def test_epochs_may_change_on_resume(done, tmp_path):
    run = _copy(done, tmp_path)
    assert main(["train", "--no-progress", "--resume", str(run), "train.epochs=3"]) == 0
    assert json.loads((run / "eval.json").read_text())["finished"]


# ---------------------------------------------------------------- symlinks
def _outside(tmp_path: Path) -> Path:
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    return outside


def test_symlinked_json_files_are_replaced_not_followed(done, tmp_path):
    run, outside = _copy(done, tmp_path), _outside(tmp_path)
    for name in ("eval.json", "eval.json.tmp", "analysis.json", "analysis.json.tmp"):
        (run / name).unlink(missing_ok=True)
        (run / name).symlink_to(outside)
    assert main(["eval", "--run", str(run), "--device", "cpu", "eval.linear_epochs=0"]) == 0
    write_json(RunFolder(run).analysis, {"x": 1})  # the writer analyze uses
    assert outside.read_text() == "precious"
    assert not (run / "eval.json").is_symlink() and json.loads((run / "eval.json").read_text())["step"] > 0
    assert not (run / "analysis.json").is_symlink()


def test_symlinked_config_and_metrics_are_not_followed(done, tmp_path):
    from deepfusion.model.runs.config import load_config, save_config
    from deepfusion.model.runs.layout import open_append

    run, outside = _copy(done, tmp_path), _outside(tmp_path)
    (run / "config.yaml").rename(run / "real.yaml")
    (run / "config.yaml").symlink_to(outside)
    save_config(load_config(run / "real.yaml"), run / "config.yaml")
    assert not (run / "config.yaml").is_symlink()
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").symlink_to(outside)
    with pytest.raises(RunError, match="metrics.jsonl is a symbolic link"):
        open_append(run / "metrics.jsonl")
    assert main(["train", "--no-progress", "--resume", str(run), "train.epochs=3"]) == 0  # rewritten, not followed
    assert not (run / "metrics.jsonl").is_symlink() and outside.read_text() == "precious"


def test_analysis_of_a_held_folder_is_refused_before_the_checkpoint_is_read(tmp_path, monkeypatch):
    from deepfusion.experiments import analyze

    def no_load(*args, **kwargs):
        raise AssertionError("the checkpoint was read while another process held the folder")

    monkeypatch.setattr("deepfusion.model.runs.loading.load_run", no_load)
    with Holder(tmp_path) as proc:
        with pytest.raises(RunError, match=f"in use by process {proc.pid}"):
            analyze.analyze_run(tmp_path)


def test_make_folder_reports_the_levels_it_made_and_remove_made_undoes_them(tmp_path):
    (tmp_path / "a").mkdir()
    made = make_folder(RunFolder(tmp_path / "a" / "b" / "c"))
    assert made == [tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"]
    assert make_folder(RunFolder(tmp_path / "a" / "b" / "c")) == []
    (tmp_path / "a" / "b" / "kept").mkdir()  # another run put in a made level: it stays, and so does b
    remove_made(made)
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == ["kept"]
    (tmp_path / "a" / "b" / "kept").rmdir()
    remove_made(made)
    assert list((tmp_path / "a").iterdir()) == []
