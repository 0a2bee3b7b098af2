"""The GPU scripts' plumbing on a CPU: the paper-scale script at toy size, end to end."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.model.data.data_files import write_fashion

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # trains and analyses a toy run end to end (about 10 s)
def test_paper_scale_script_trains_analyses_and_prints_its_table(tmp_path):
    write_fashion(tmp_path / "fm", n_train=300, n_test=200)
    env = dict(os.environ, FASHION_MNIST=str(tmp_path / "fm"), PAPER_SCALE_TINY="1", PYTHON=sys.executable)
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_paper_scale.sh"), str(tmp_path / "out")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[-1].startswith("  verdict: exploratory (1 seed") and any("knn" in line for line in lines)
    assert (tmp_path / "out" / "analysis.json").is_file()
    assert (tmp_path / "out" / "runs" / "paper_scale" / "eval.json").is_file()


def test_paper_scale_script_says_where_the_data_should_be(tmp_path):
    env = dict(os.environ, FASHION_MNIST=str(tmp_path / "nowhere"), PAPER_SCALE_TINY="1")
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_paper_scale.sh"), str(tmp_path / "out")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and "FASHION_MNIST=" in proc.stderr and "IDX" in proc.stderr
