"""Atomic writes of a run folder's files: their mode, and no process state touched."""

import os
import subprocess
import sys

import pytest

from deepfusion.model.runs.layout import write_atomic, write_json, write_text_atomic


def test_importing_the_layout_leaves_the_umask_alone():
    code = (
        "import os\n"
        "calls = []\n"
        "os.umask = lambda *a: calls.append(a) or 0o022\n"
        "import deepfusion.model.runs.layout\n"
        "raise SystemExit(len(calls))\n"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_files_get_the_mode_open_would_give_under_the_umask_of_the_moment(tmp_path, mask):
    old = os.umask(mask)
    try:
        write_json(tmp_path / "eval.json", {"x": 1})
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    assert (tmp_path / "eval.json").stat().st_mode & 0o777 == 0o666 & ~mask
    assert (tmp_path / "eval.json").stat().st_mode & 0o777 == (tmp_path / "plain.txt").stat().st_mode & 0o777


def test_a_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "config.yaml"
    target.write_text("old")
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "eval.json"
    target.write_text("{}")

    def fail(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, fail)
    assert target.read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.json"]
