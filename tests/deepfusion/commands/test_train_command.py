"""`deepfusion train` from the outside: help text and one-line errors."""

import subprocess
import sys


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "deepfusion.cli", "train", *args], capture_output=True, text=True, timeout=120
    )


def test_help_lists_options_and_presets():
    res = _run("--help")
    assert res.returncode == 0
    for word in ("--config", "--resume", "--out", "--no-progress", "key=value", "digits", "cifar10", "model.head=mlp"):
        assert word in res.stdout, word


def test_bad_key_is_one_line_without_traceback():
    res = _run("--config", "digits", "optim.lrate=0.1")
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "optim.lrate" in lines[0] and "momentum" in lines[0]


def test_unknown_preset_is_one_line():
    res = _run("--config", "nosuch")
    assert res.returncode != 0 and len(res.stderr.strip().splitlines()) == 1 and "digits" in res.stderr


def test_resume_of_missing_folder_is_one_line(tmp_path):
    res = _run("--resume", str(tmp_path / "none"))
    assert res.returncode != 0 and "Traceback" not in res.stderr and "does not exist" in res.stderr
