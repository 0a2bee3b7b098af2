"""TensorBoard event files for a run (``train.log=tensorboard``), beside ``metrics.jsonl``.

``metrics.jsonl`` stays the run's record (resume truncates it, figures read it); with
``train.log=tensorboard`` every logged step also goes to ``<run>/tensorboard/`` as scalars
``train/loss``, ``train/lr``, ``train/images_per_s``, ``train/steps_per_s``, and the final
evaluation as ``eval/<metric>`` (``knn``, ``random_knn``, ``linear``, ...) at the step it
describes. Point TensorBoard at the folder: ``tensorboard --logdir runs``.

TensorBoard is an optional extra (``pip install "deepfusion[tensorboard]"``):
:func:`require_backend` names the missing package before a run folder is created.
"""

from __future__ import annotations

import importlib.util
import math
from contextlib import contextmanager

from deepfusion.errors import ConfigError
from deepfusion.model.runs.eval_result import SCORES, EvalResult

TRAIN_KEYS = ("loss", "lr", "images_per_s", "steps_per_s")


def require_backend(log: str) -> None:
    """A ``ConfigError`` when ``train.log`` names a backend whose package is not installed."""
    if log == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(
            'train.log=tensorboard needs the tensorboard package: pip install "deepfusion[tensorboard]" '
            "(or leave train.log at jsonl)"
        )


class TensorBoardLog:
    """Scalars of the training log and the evaluation, written with torch's ``SummaryWriter``."""

    def __init__(self, logdir, start_step: int = 0):
        # Imported here: tensorboard is an optional extra, and require_backend names it when it is missing.
        from torch.utils.tensorboard import SummaryWriter

        # a resume hides what the interrupted run logged after its checkpoint, as metrics.jsonl is truncated
        self.writer = SummaryWriter(log_dir=str(logdir), purge_step=start_step or None)

    def step(self, rec: dict) -> None:
        """One ``metrics.jsonl`` record (``step``, ``loss``, ``lr``, ``images_per_s``, ``steps_per_s``)."""
        for key in TRAIN_KEYS:
            if rec.get(key) is not None:
                self.writer.add_scalar(f"train/{key}", float(rec[key]), int(rec["step"]))
        self.writer.flush()

    def evaluation(self, result: EvalResult) -> None:
        """Every accuracy of the evaluation (:data:`SCORES`; one that was not measured is left out), drawn
        at the step the evaluation describes."""
        for name in SCORES:
            value = result.score(name)
            if value is not None and math.isfinite(value):
                self.writer.add_scalar(f"eval/{name}", float(value), int(result.step))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class NoLog:
    """``train.log=jsonl``: nothing besides ``metrics.jsonl``."""

    def step(self, rec: dict) -> None:
        pass

    def evaluation(self, result: EvalResult) -> None:
        pass

    def close(self) -> None:
        pass


@contextmanager
def open_log(log: str, folder, main: bool, start_step: int = 0):
    """The extra log of ``train.log`` for the process that writes (rank 0); :class:`NoLog` elsewhere.
    ``start_step``: the step a resumed run continues from."""
    sink = TensorBoardLog(folder.tensorboard, start_step) if log == "tensorboard" and main else NoLog()
    try:
        yield sink
    finally:
        sink.close()
