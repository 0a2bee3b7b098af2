"""A resume whose train.epochs ends before the checkpoint's step is refused, so eval.json never calls
finished a run whose checkpoint is not (and nothing in the folder changes)."""

import pytest

from deepfusion.errors import RunError
from deepfusion.model.runs.loop import train
from tests.model.runs.test_train import tiny


def test_resume_with_fewer_epochs_than_done_is_refused_and_changes_nothing(tmp_path):
    run = train(tiny(tmp_path, "train.name=r", "train.epochs=2", "eval.linear_epochs=0"), progress=False).run_dir
    before = {p.name: p.read_bytes() for p in (run / "eval.json", run / "config.yaml", run / "checkpoints" / "last.pt")}
    with pytest.raises(RunError, match=r"past the \d+ steps of train.epochs=1; resume with train.epochs >= 2"):
        train(
            tiny(tmp_path, "train.name=r", "train.epochs=1", "eval.linear_epochs=0"),
            run_dir=run,
            resume=True,
            progress=False,
        )
    after = {p.name: p.read_bytes() for p in (run / "eval.json", run / "config.yaml", run / "checkpoints" / "last.pt")}
    assert after == before
