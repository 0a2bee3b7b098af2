"""A 2-process torchrun training run on digits (CPU, gloo) finishes, and a second torchrun resumes it."""

import json
import subprocess
import sys

import pytest
import torch

from deepfusion.model.runs.checkpoint import load_checkpoint

SMALL = [
    "train.device=cpu",
    "train.threads=1",
    "train.attend=global",
    "model.depth=1",
    "eval.linear_epochs=2",
    "--no-progress",
]


def torchrun(*args, timeout=300):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "deepfusion",
        "train",
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.distributed_slow
def test_two_process_digits_run_finishes_and_resumes(tmp_path):
    run_dir = tmp_path / "t"
    torchrun("--config", "digits", "train.epochs=1", "train.name=t", f"train.out_dir={tmp_path}", *SMALL)
    first = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert first["step"] == 5 and first["finished"]  # 1,437 digits // global batch 256
    assert len(first["rng_ranks"]) == 2 and not torch.equal(
        first["rng_ranks"][0]["torch"], first["rng_ranks"][1]["torch"]
    )
    assert (run_dir / "eval.json").is_file()

    torchrun("--resume", str(run_dir), "train.epochs=2", "--no-progress")
    last = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert last["step"] == 10 and last["epoch"] == 2 and last["finished"]
    steps = [json.loads(l)["step"] for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [5, 10]  # rank 0 alone writes the metrics
    assert any(not torch.equal(first["model"][k], last["model"][k]) for k in last["model"])


@pytest.mark.distributed_slow
def test_sigterm_under_torchrun_is_honoured_within_a_step(tmp_path):
    """With a logging interval longer than the run, SIGTERM still saves within a step and exits
    before torchrun's 30 s escalation to SIGKILL, leaving no temporary file."""
    import os
    import signal
    import time

    from tests.model.runs.test_train import TINY

    run_dir = tmp_path / "t"
    args = [a for a in TINY if not a.startswith(("train.epochs", "train.log_every", "train.device"))]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "deepfusion",
        "train",
        "--config",
        "synthetic",
        *args,
        *SMALL,
        "train.epochs=5000",
        "train.log_every=1000000",
        "train.checkpoint_every=0",
        "eval.linear_epochs=0",
        "train.name=t",
        f"train.out_dir={tmp_path}",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = time.time() + 240
    while time.time() < end and proc.poll() is None and not (run_dir / "checkpoints" / "last.pt").exists():
        time.sleep(0.05)  # the first epoch's checkpoint: training runs on both ranks
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    first = load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"]
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    took = time.time() - sent
    assert "stopped by SIGTERM" in out + err and took < 25, (took, err[-2000:])
    last = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert last["step"] >= first and not last["finished"]
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))


@pytest.mark.distributed_slow
def test_a_run_refused_for_its_data_under_torchrun_leaves_no_folder(tmp_path):
    """Each rank calls the training loop itself; rank 0 makes the run folder and the --out parents, so
    its undo (run_folder.undo_start) removes them, while the other ranks made nothing to undo. A parent
    that held something before stays."""
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "other").mkdir()
    out = tmp_path / "keep" / "a" / "b"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += ["-m", "deepfusion", "train", "--config", "fashion_mnist", f"data.root={tmp_path / 'nothere'}"]
    cmd += ["--out", str(out), *SMALL]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "Fashion-MNIST train split not found" in proc.stderr, proc.stderr[-3000:]
    assert [p.name for p in (tmp_path / "keep").iterdir()] == ["other"], proc.stderr[-3000:]
