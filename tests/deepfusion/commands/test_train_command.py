"""`deepfusion train`: help text and one-line errors, through a fresh interpreter where the process
itself is the point (exit code, nothing else on stderr), in process otherwise."""

import subprocess
import sys

from deepfusion.cli import main


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "deepfusion.cli", "train", *args], capture_output=True, text=True, timeout=120
    )


def test_help_lists_options_and_presets():
    res = _run("--help")
    assert res.returncode == 0
    for word in ("--config", "--resume", "--out", "--no-progress", "key=value", "digits", "cifar10", "model.head=mlp"):
        assert word in res.stdout, word


def test_help_does_not_import_torch():
    # torch takes seconds to import; --help (the config keys and dataset names) needs none of it
    code = (
        "import sys\nfrom deepfusion.cli import main\ntry:\n    main(['train', '--help'])\n"
        "except SystemExit:\n    pass\nprint(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:3])"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "[]"


def test_bad_key_is_one_line_without_traceback():
    res = _run("--config", "digits", "optim.lrate=0.1")
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "optim.lrate" in lines[0] and "momentum" in lines[0]


# The other one-line errors in process: main catches them, so no traceback can reach stderr.
def _stderr_lines(capsys, *args):
    code = main(["train", *args])
    return code, capsys.readouterr().err.strip().splitlines()


def test_unknown_preset_is_one_line(capsys):
    code, lines = _stderr_lines(capsys, "--config", "nosuch")
    assert code != 0 and len(lines) == 1 and "digits" in lines[0]


def test_resume_of_missing_folder_is_one_line(tmp_path, capsys):
    code, lines = _stderr_lines(capsys, "--resume", str(tmp_path / "none"))
    assert code != 0 and len(lines) == 1 and "does not exist" in lines[0]


TINY = [
    "--config",
    "synthetic",
    "--no-progress",
    "train.epochs=1",
    "data.options.num_classes=3",
    "data.options.samples_per_class=40",
    "train.batch_size=30",
    "model.dim=16",
    "model.depth=1",
    "model.heads=2",
    "model.ffn_dim=16",
    "model.out_dim=8",
    "eval.linear_epochs=2",
]


def test_same_command_again_shows_the_finished_run_without_training(tmp_path, capsys):
    from deepfusion.cli import main
    from deepfusion.model.runs.config import load_config
    from deepfusion.model.runs.run_name import run_dir_for

    assert main(["train", "--out", str(tmp_path), *TINY]) == 0
    first = capsys.readouterr().out
    run_dir = run_dir_for(load_config("synthetic", TINY[3:]), tmp_path)  # the run cache's folder for this config
    metrics = (run_dir / "metrics.jsonl").read_text()
    assert main(["train", "--out", str(tmp_path), *TINY]) == 0
    second = capsys.readouterr().out
    assert "already holds this run" in second and "already holds" not in first
    assert (run_dir / "metrics.jsonl").read_text() == metrics  # nothing trained again
    score = [line for line in first.splitlines() if line.strip().startswith("kNN")]
    assert score and score == [line for line in second.splitlines() if line.strip().startswith("kNN")]
    assert [p.name for p in tmp_path.iterdir()] == [run_dir.name]


def test_same_command_after_a_stop_continues_the_run(tmp_path, capsys, monkeypatch):
    import json
    import signal

    from deepfusion.cli import main
    from deepfusion.model.runs import loop

    argv = ["train", "--out", str(tmp_path), *TINY, "train.epochs=2", "train.log_every=1"]
    real = loop.stop_requested
    monkeypatch.setattr(loop, "stop_requested", lambda setup, state, stop: signal.SIGTERM if state.step == 3 else None)
    assert main(argv) != 0  # stopped at step 3, checkpoint saved
    assert "stopped by SIGTERM at step 3" in capsys.readouterr().out
    monkeypatch.setattr(loop, "stop_requested", real)
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "continuing from its last checkpoint" in out and "wall time" in out
    (run_dir,) = tmp_path.iterdir()
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) > 3  # each step once, on to the end
