"""Bad input through ``deepfusion.cli.main``: a non-zero exit and one line on stderr that names the problem.

Each case builds its bad input in a temporary folder and runs the command in this process (fast);
the expectations are the exit code and words the one line must contain. The broken run folders
are copies of one tiny trained run. A last test checks that ``--debug`` shows the traceback.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from deepfusion.cli import main
from tests.model.data.data_files import write_fashion

# A run of a few seconds: synthetic clusters, MLP backbone, 1-layer transformer head.
TINY = [
    "train.epochs=1",
    "data.options.num_classes=3",
    "data.options.samples_per_class=40",
    "train.batch_size=30",
    "train.device=cpu",
    "model.dim=16",
    "model.depth=1",
    "model.heads=2",
    "model.ffn_dim=16",
    "model.out_dim=8",
    "model.mlp_hidden=16",
    "eval.linear_epochs=2",
    "eval.head_batch=15",
    "eval.knn_k=5",
]
# Train options for datasets read from files (the synthetic preset's loader options do not apply).
FILE_DATA = [
    "data.options={}",
    "train.epochs=1",
    "train.batch_size=4",
    "train.device=cpu",
    "model.dim=16",
    "model.depth=1",
    "model.heads=2",
    "model.ffn_dim=16",
    "model.out_dim=8",
]


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", "--config", "synthetic", "--no-progress", "--out", str(out), *TINY, "train.name=good"]) == 0
    return out / "good"


def _broken_run(good: Path, tmp: Path, how: str) -> Path:
    """A copy of ``good`` damaged in one way."""
    run = tmp / how
    shutil.copytree(good, run)
    last = run / "checkpoints" / "last.pt"
    if how == "truncated":
        data = last.read_bytes()
        last.write_bytes(data[: len(data) // 2])
    elif how == "foreign":
        last.write_bytes(b"these are not the weights you are looking for\n")
    elif how == "other_config":  # the checkpoint of a depth-1 head beside a config asking for depth 2
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        cfg["model"]["depth"] = 2
        (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return run


def _train(tmp: Path, *args: str) -> list[str]:
    return ["train", "--config", "synthetic", "--no-progress", "--out", str(tmp / "out"), *args]


def _npz(tmp: Path, **arrays) -> Path:
    path = tmp / "data.npz"
    np.savez(path, **arrays)
    return path


def _bad_idx(tmp: Path) -> Path:
    write_fashion(tmp / "fm", n_train=8, n_test=4)
    (tmp / "fm" / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 5)  # header cut short
    return tmp / "fm"


# (id, argv from (tmp, good_run), exit code, words the message must contain)
CASES = [
    (
        "missing dataset folder",
        lambda t, g: _train(t, "data.name=fashion_mnist", f"data.root={t / 'nowhere'}", *FILE_DATA),
        2,
        ["not found", "train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"],
    ),
    (
        "malformed dataset file (IDX)",
        lambda t, g: _train(t, "data.name=fashion_mnist", f"data.root={_bad_idx(t)}", *FILE_DATA),
        2,
        ["train-images-idx3-ubyte", "too short", "IDX file"],
    ),
    (
        "malformed dataset file (npz)",
        lambda t, g: _train(
            t, "data.name=npz", f"data.root={(t / 'junk.npz').write_bytes(b'junk') and t / 'junk.npz'}", *FILE_DATA
        ),
        2,
        ["junk.npz", "not a readable .npz", "numpy.savez"],
    ),
    (
        "labels out of range (npz)",
        lambda t, g: _train(
            t,
            "data.name=npz",
            f"data.root={_npz(t, x=np.zeros((20, 4), np.float32), y=np.arange(20) % 4)}",
            *FILE_DATA,
            "data.options.num_classes=3",
        ),
        2,
        ["data.npz", "labels range over [0, 3]", "[0, 3)"],
    ),
    ("config typo", lambda t, g: _train(t, "optim.lrate=0.1"), 2, ["optim.lrate", "valid keys", "lr", "momentum"]),
    ("unknown section", lambda t, g: _train(t, "trian.epochs=1"), 2, ["trian", "valid sections", "train"]),
    ("wrong value type", lambda t, g: _train(t, "train.epochs=ten"), 2, ["train.epochs", "expected int", "'ten'"]),
    (
        "malformed YAML config",
        lambda t, g: ["train", "--config", str((t / "c.yaml").write_text("train: [1\n") and t / "c.yaml")],
        2,
        ["malformed YAML", "c.yaml", "line"],
    ),
    (
        "batch too small for per_view",
        lambda t, g: _train(t, *TINY, "model.scope=per_view", "train.batch_size=1"),
        2,
        ["train.batch_size=1", "too small"],
    ),
    (
        "batch too small for mask_pair",
        lambda t, g: _train(t, *TINY, "model.scope=mask_pair", "train.batch_size=1"),
        2,
        ["train.batch_size=1", "too small"],
    ),
    (
        "batch larger than the dataset",
        lambda t, g: _train(t, *TINY, "train.batch_size=5000"),
        2,
        ["train.batch_size=5000", "exceeds"],
    ),
    (
        "unwritable output folder",
        lambda t, g: [
            "train",
            "--config",
            "synthetic",
            "--no-progress",
            "--out",
            str((t / "file.txt").write_text("x") and t / "file.txt" / "sub"),
            *TINY,
        ],
        3,
        ["cannot write", "file.txt", "writable"],
    ),
    (
        "train.device=cuda without CUDA",
        lambda t, g: _train(t, *TINY, "train.device=cuda"),
        3,
        ["train.device=cuda", "no CUDA"],
    ),
    (
        "NaN loss before the first checkpoint",
        lambda t, g: _train(t, *TINY, "optim.lr=1e30", "train.log_every=1"),
        3,
        ["NaN/inf at step 1", "no checkpoint had been written yet", "optim.lr"],
    ),
    (
        "unknown device",
        lambda t, g: ["eval", "--run", str(g), "--device", "tpu", "--no-write"],
        2,
        ["'tpu'", "not a device"],
    ),
    (
        "truncated checkpoint (eval)",
        lambda t, g: ["eval", "--run", str(_broken_run(g, t, "truncated")), "--device", "cpu", "--no-write"],
        2,
        ["last.pt", "truncated", "prev.pt"],
    ),
    (
        "truncated checkpoint (resume)",
        lambda t, g: ["train", "--no-progress", "--resume", str(_broken_run(g, t, "truncated")), "train.epochs=2"],
        2,
        ["last.pt", "truncated"],
    ),
    (
        "foreign file as checkpoint",
        lambda t, g: ["eval", "--run", str(_broken_run(g, t, "foreign")), "--device", "cpu", "--no-write"],
        2,
        ["last.pt", "not a deepfusion checkpoint"],
    ),
    (
        "checkpoint of another model config",
        lambda t, g: ["eval", "--run", str(_broken_run(g, t, "other_config")), "--device", "cpu", "--no-write"],
        2,
        ["different config", "model.depth"],
    ),
    (
        "resume with a changed model",
        lambda t, g: ["train", "--no-progress", "--resume", str(_broken_run(g, t, "copy")), "model.depth=3"],
        2,
        ["different config", "model.depth"],
    ),
    (
        "--resume of a folder that is not a run",
        lambda t, g: ["train", "--resume", str(t)],
        3,
        ["not a run folder", "config.yaml"],
    ),
    (
        "eval --run of a missing folder",
        lambda t, g: ["eval", "--run", str(t / "absent")],
        3,
        ["absent", "does not exist"],
    ),
    (
        "analyze --run of a missing folder",
        lambda t, g: ["analyze", "--run", str(t / "absent")],
        3,
        ["absent", "does not exist"],
    ),
    (
        "existing run of other settings without --resume",
        lambda t, g: [
            "train",
            "--config",
            "synthetic",
            "--no-progress",
            "--out",
            str(g.parent),
            *TINY,
            "loss.temperature=0.3",
            "train.name=good",
        ],
        3,
        ["loss.temperature", "train.name"],
    ),
    (
        "folder in the way without a checkpoint",
        lambda t, g: [
            "train",
            "--config",
            "synthetic",
            "--no-progress",
            "--out",
            str(t),
            *TINY,
            f"train.name={(t / 'mine').mkdir() or (t / 'mine' / 'notes.txt').write_text('x') and 'mine'}",
        ],
        3,
        ["exists and is not empty", "notes.txt", "nothing there is overwritten"],
    ),
    (
        "preset that leaves --out",
        lambda t, g: ["train", "--config", str((t / "p.yaml").write_text("preset: ../../../x\n") and t / "p.yaml")],
        2,
        ["preset='../../../x'", "plain folder name"],
    ),
    (
        "seed beyond numpy's range",
        lambda t, g: _train(t, "train.seed=1000000000000000"),
        2,
        ["train.seed", "[0, 4294967295]"],
    ),
    ("temperature too small", lambda t, g: _train(t, "loss.temperature=1e-30"), 2, ["loss.temperature=1e-30", "0.001"]),
    ("warm-up beyond reach", lambda t, g: _train(t, "optim.warmup_epochs=1e308"), 2, ["optim.warmup_epochs", "100000"]),
    ("--force without --resume", lambda t, g: _train(t, "--force"), 2, ["--force applies only with --resume"]),
    (
        "resume with a changed batch size",
        lambda t, g: ["train", "--no-progress", "--resume", str(_broken_run(g, t, "copy")), "train.batch_size=20"],
        2,
        ["train.batch_size differ", "--force"],
    ),
    ("unknown option (argparse)", lambda t, g: ["train", "--bogus"], 2, ["unrecognized arguments: --bogus", "--help"]),
    ("missing required option (argparse)", lambda t, g: ["eval"], 2, ["required", "--run"]),
    ("bad option value (argparse)", lambda t, g: ["bench", "nothing"], 2, ["invalid choice", "'nothing'"]),
    ("unknown command", lambda t, g: ["frobnicate"], 2, ["unknown command", "train"]),
]


@pytest.mark.parametrize("argv, code, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line_and_nonzero_exit(argv, code, words, tmp_path, good_run, capsys):
    if "train.device=cuda" in words and torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    args = argv(tmp_path, good_run)
    try:
        rc = main(args)
    except SystemExit as exit_:  # argparse errors leave through SystemExit
        rc = exit_.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == code, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("deepfusion"), lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])


@pytest.mark.parametrize(
    "raised, words",
    [
        (
            PermissionError(13, "Permission denied", "/data/out/eval.json"),
            ["cannot use /data/out/eval.json", "Permission denied"],
        ),
        (OSError(28, "No space left on device"), ["No space left on device", "disk space"]),
        (
            torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
            ["out of memory", "Tried to allocate", "batch"],
        ),
        (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 99 bytes"), ["out of memory"]),
    ],
)
def test_os_and_memory_errors_are_one_line(monkeypatch, capsys, raised, words):
    from deepfusion.commands import evaluate

    def fail(args):
        raise raised

    monkeypatch.setattr(evaluate, "run", fail)
    assert main(["eval", "--run", "x"]) == 3
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and all(w in lines[0] for w in words), lines


def test_bugs_are_not_hidden(monkeypatch):
    """An error that is not the user's (a bug) keeps its traceback."""
    from deepfusion.commands import evaluate

    monkeypatch.setattr(evaluate, "run", lambda args: 1 // 0)
    with pytest.raises(ZeroDivisionError):
        main(["eval", "--run", "x"])


def test_debug_shows_the_traceback(capsys):
    argv = ["train", "--config", "synthetic", "optim.lrate=0.1"]
    assert main(argv) == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
    # --debug through the process entry point, where Python itself prints the traceback
    debug = subprocess.run(
        [sys.executable, "-m", "deepfusion.cli", "--debug", *argv], capture_output=True, text=True, timeout=120
    )
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "ConfigError" in debug.stderr
    assert "optim.lrate" in debug.stderr.strip().splitlines()[-1]


def test_a_model_too_large_for_memory_is_one_line(monkeypatch, capsys, tmp_path):
    """``model.depth=2147483647`` ends in C++'s std::bad_alloc, raised by torch as a RuntimeError."""
    import deepfusion.experiments.runs as runs

    def bad_alloc(*a, **k):
        raise RuntimeError("std::bad_alloc")

    monkeypatch.setattr(runs, "train", bad_alloc)  # the training loop as the run cache calls it
    assert main(["train", "--config", "synthetic", "--no-progress", "--out", str(tmp_path), "train.epochs=1"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "out of memory (std::bad_alloc)" in err[0]
