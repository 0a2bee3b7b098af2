"""train.log=tensorboard: event files beside metrics.jsonl, read back with tensorboard's own reader."""

import importlib.util
import json

import pytest

from deepfusion.errors import ConfigError
from deepfusion.model.runs.config import load_config
from deepfusion.model.runs.layout import RunFolder
from deepfusion.model.runs.log_tensorboard import require_backend

TINY = [
    "train.epochs=2",
    "data.options.num_classes=4",
    "data.options.samples_per_class=60",
    "data.test_fraction=0.25",
    "train.batch_size=30",
    "train.log_every=2",
    "train.device=cpu",
    "train.threads=1",
    "model.dim=16",
    "model.depth=1",
    "model.heads=2",
    "model.ffn_dim=16",
    "model.out_dim=8",
    "eval.linear_epochs=2",
    "eval.head_batch=30",
    "eval.knn_k=5",
]


def _scalars(logdir) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_event_files_hold_the_training_log_and_the_evaluation(tmp_path):
    pytest.importorskip(
        "tensorboard", reason="the tensorboard extra is not installed (pip install deepfusion[tensorboard])"
    )
    from deepfusion.model.runs.loop import train

    run = RunFolder(
        train(
            load_config("synthetic", TINY + ["train.log=tensorboard", f"train.out_dir={tmp_path}"]), progress=False
        ).run_dir
    )
    scalars = _scalars(run.tensorboard)
    lines = [json.loads(line) for line in run.metrics.read_text().splitlines()]
    for key in ("loss", "lr", "images_per_s", "steps_per_s"):
        assert [s for s, _ in scalars[f"train/{key}"]] == [r["step"] for r in lines]
        assert [v for _, v in scalars[f"train/{key}"]] == pytest.approx([r[key] for r in lines], rel=1e-6)
    results = json.loads(run.eval.read_text())
    for key in ("knn", "random_knn", "linear", "head_loo1nn", "untrained_head_knn"):
        assert scalars[f"eval/{key}"] == [(results["step"], pytest.approx(results[key], rel=1e-6))]
    assert "eval/linear_fraction" not in scalars  # settings are not accuracies


def test_jsonl_stays_the_default_and_writes_no_event_files(tmp_path):
    from deepfusion.model.runs.loop import train

    cfg = load_config("synthetic", TINY + ["train.epochs=1", f"train.out_dir={tmp_path}"])
    assert cfg.train.log == "jsonl"
    run = RunFolder(train(cfg, progress=False).run_dir)
    assert run.metrics.exists() and not run.tensorboard.exists()


def test_a_missing_tensorboard_is_named_before_any_folder_is_made(tmp_path, monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else object())
    with pytest.raises(ConfigError, match=r"pip install \"deepfusion\[tensorboard\]\""):
        require_backend("tensorboard")
    from deepfusion.model.runs.loop import train

    with pytest.raises(ConfigError, match="needs the tensorboard package"):
        train(load_config("synthetic", TINY + ["train.log=tensorboard", f"train.out_dir={tmp_path / 'runs'}"]))
    assert not (tmp_path / "runs").exists()


def test_an_unknown_log_backend_lists_the_choices():
    with pytest.raises(ConfigError, match="train.log='wandb' is not valid; choose from jsonl, tensorboard"):
        from deepfusion.model.runs.config import validate

        validate(load_config("synthetic", ["train.log=wandb"]))


def test_a_resume_hides_the_steps_logged_after_the_checkpoint(tmp_path):
    """What an interrupted run logged past its checkpoint is purged, as metrics.jsonl is truncated."""
    pytest.importorskip(
        "tensorboard", reason="the tensorboard extra is not installed (pip install deepfusion[tensorboard])"
    )
    from deepfusion.model.runs.log_tensorboard import TensorBoardLog

    first = TensorBoardLog(tmp_path)
    for step in (2, 4, 6):
        first.step({"step": step, "loss": float(step)})
    first.close()
    resumed = TensorBoardLog(tmp_path, start_step=4)  # the checkpoint was at step 4
    resumed.step({"step": 6, "loss": 60.0})
    resumed.close()
    assert _scalars(tmp_path)["train/loss"] == [(2, 2.0), (6, 60.0)]
