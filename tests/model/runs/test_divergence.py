"""Divergence: an update that leaves NaN weights is never saved, and resume skips a saved one."""

from pathlib import Path

import pytest
import torch

from deepfusion.errors import CheckpointError, RunError
from deepfusion.model.runs.checkpoint import latest_checkpoint, load_checkpoint
from deepfusion.model.runs.checksum import FIELD as CHECKSUM
from tests.model.runs.test_train import tiny


def finite(state: dict) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())


def _poison_after(monkeypatch, step: int):
    """The optimiser update of step ``step`` (1-based) leaves one weight NaN; every loss read before is finite."""
    import deepfusion.model.runs.loop as T

    real, calls = T.train_step, {"n": 0}

    def poisoned(setup, views, skip_nonfinite):
        out = real(setup, views, skip_nonfinite)
        calls["n"] += 1
        if calls["n"] == step:
            with torch.no_grad():
                next(setup.model.parameters()).fill_(float("nan"))
        return out

    monkeypatch.setattr(T, "train_step", poisoned)


def test_nonfinite_weights_are_never_saved(tmp_path, monkeypatch):
    import deepfusion.model.runs.loop as T

    _poison_after(monkeypatch, 4)  # checkpoints at steps 1, 2, 3; the weights of step 4 are NaN
    cfg = tiny(tmp_path, "train.name=div", "train.log_every=100", "train.checkpoint_every=1")
    with pytest.raises(RunError, match="NaN/inf") as info:
        T.train(cfg, progress=False)
    assert "\n" not in str(info.value) and "kept the last good checkpoint" in str(info.value)
    folder = tmp_path / "div" / "checkpoints"
    for name in ("last.pt", "prev.pt"):
        assert finite(torch.load(folder / name, weights_only=True)["model"]), name
    assert load_checkpoint(folder / "last.pt")["step"] == 3


def test_nonfinite_weights_before_the_first_checkpoint_say_so(tmp_path, monkeypatch):
    import deepfusion.model.runs.loop as T

    _poison_after(monkeypatch, 1)
    with pytest.raises(RunError, match="no checkpoint had been written yet"):
        T.train(tiny(tmp_path, "train.name=div1", "train.log_every=100", "train.checkpoint_every=1"), progress=False)
    assert not (tmp_path / "div1" / "checkpoints" / "last.pt").exists()


def _nan_copy(path: Path) -> None:
    """NaN weights in a checkpoint as older code wrote it: saved after a diverged update, with no checksum."""
    ckpt = torch.load(path, weights_only=True)
    first = next(k for k, v in ckpt["model"].items() if v.is_floating_point())
    ckpt["model"][first] = torch.full_like(ckpt["model"][first], float("nan"))
    ckpt.pop(CHECKSUM, None)
    torch.save(ckpt, path)


def test_a_checkpoint_with_nonfinite_weights_does_not_load(tmp_path):
    from deepfusion.model.runs.loop import train

    run = train(tiny(tmp_path, "train.name=p", "train.epochs=1", "eval.linear_epochs=0"), progress=False).run_dir
    _nan_copy(run / "checkpoints" / "last.pt")
    with pytest.raises(CheckpointError, match="non-finite weights"):
        load_checkpoint(run / "checkpoints" / "last.pt")


def test_resume_falls_back_past_a_diverged_last(tmp_path):
    from deepfusion.model.runs.loop import train

    cfg = tiny(tmp_path, "train.name=r", "train.epochs=1", "train.checkpoint_every=1", "eval.linear_epochs=0")
    run = train(cfg, progress=False).run_dir
    prev_step = load_checkpoint(run / "checkpoints" / "prev.pt")["step"]
    _nan_copy(run / "checkpoints" / "last.pt")  # what the loop wrote before weights were checked
    assert latest_checkpoint(run / "checkpoints", quiet=True)["step"] == prev_step
    train(
        tiny(tmp_path, "train.name=r", "train.epochs=2", "train.checkpoint_every=1", "eval.linear_epochs=0"),
        run_dir=run,
        resume=True,
        progress=False,
    )
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["finished"] and finite(last["model"])
    assert list((run / "checkpoints").glob("last.corrupt-*.pt"))  # the diverged file was set aside, not rotated


def test_a_second_ctrl_c_inside_a_checkpoint_write_is_an_interrupt_not_a_full_disk(tmp_path, monkeypatch):
    """torch turns an exception raised inside its writer into "unexpected pos": not a full disk."""
    import os
    import signal

    import deepfusion.model.runs.checkpoint as C
    import deepfusion.model.runs.loop as T

    real_save, calls = C.torch.save, {"n": 0}

    class Interrupting:
        def __init__(self, f):
            self.f, self.writes = f, 0

        def write(self, b):
            self.writes += 1
            if self.writes == 2:  # two Ctrl-C half-way through the write
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGINT)
            return self.f.write(b)

        def __getattr__(self, name):
            return getattr(self.f, name)

    def save(obj, f, *a, **k):
        calls["n"] += 1
        return real_save(obj, Interrupting(f) if calls["n"] == 2 else f, *a, **k)

    monkeypatch.setattr(C.torch, "save", save)
    with pytest.raises(KeyboardInterrupt):
        T.train(tiny(tmp_path, "train.name=cc", "train.checkpoint_every=1"), progress=False)
    assert load_checkpoint(tmp_path / "cc" / "checkpoints" / "last.pt")["step"] == 1  # the first one, intact
