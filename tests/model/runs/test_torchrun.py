"""A 2-process torchrun training run on digits (CPU, gloo) finishes, and a second torchrun resumes it."""

import json
import subprocess
import sys

import pytest
import torch

from deepfusion.model.runs.checkpoint import load_checkpoint

SMALL = ["train.device=cpu", "train.threads=1", "train.attend=global", "model.depth=1", "eval.linear_epochs=2",
         "--no-progress"]


def torchrun(*args, timeout=300):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "deepfusion", "train", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.distributed_slow
def test_two_process_digits_run_finishes_and_resumes(tmp_path):
    run_dir = tmp_path / "t"
    torchrun("--config", "digits", "train.epochs=1", "train.name=t", f"train.out_dir={tmp_path}", *SMALL)
    first = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert first["step"] == 5 and first["finished"]  # 1,437 digits // global batch 256
    assert len(first["rng_ranks"]) == 2 and not torch.equal(first["rng_ranks"][0]["torch"], first["rng_ranks"][1]["torch"])
    assert (run_dir / "eval.json").is_file()

    torchrun("--resume", str(run_dir), "train.epochs=2", "--no-progress")
    last = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert last["step"] == 10 and last["epoch"] == 2 and last["finished"]
    steps = [json.loads(l)["step"] for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [5, 10]  # rank 0 alone writes the metrics
    assert any(not torch.equal(first["model"][k], last["model"][k]) for k in last["model"])
