"""``Run``: a finished run as the rest of the project sees it: its folder, its config and its evaluation.

The training loop returns one (:func:`deepfusion.model.runs.loop.train`), and so does the run cache
(:func:`deepfusion.experiments.runs.get_run`); nothing has to read ``eval.json`` back to learn what a
run it just made scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deepfusion.model.runs.config import Config
from deepfusion.model.runs.eval_result import EvalResult
from deepfusion.model.runs.layout import RunFolder


@dataclass(frozen=True)
class Run:
    """One run folder with the resolved config it was trained with and its final evaluation."""

    run_dir: Path
    cfg: Config
    eval: EvalResult

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.run_dir)

    @property
    def name(self) -> str:
        return Path(self.run_dir).name
