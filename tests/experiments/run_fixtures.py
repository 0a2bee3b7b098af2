"""Finished-looking run folders without training: a checkpoint stub flagged finished and its evaluation."""

from __future__ import annotations

from pathlib import Path

import torch

from deepfusion.model.runs import checkpoint as ck
from deepfusion.model.runs.config import config_to_dict
from deepfusion.model.runs.eval_result import EvalResult
from deepfusion.model.runs.layout import RunFolder
from deepfusion.model.runs.run_record import Run


def write_finished(run_dir: Path, scores: dict, step: int = 7, finished: bool = True, cfg=None) -> EvalResult:
    """What a finished run leaves for the cache: a checkpoint (no weights) flagged ``finished``, trained
    with ``cfg``, and an ``eval.json`` holding ``scores`` that records its step; returns that evaluation."""
    folder = RunFolder(run_dir)
    folder.checkpoints.mkdir(parents=True, exist_ok=True)
    config = config_to_dict(cfg) if cfg is not None else {}
    torch.save(
        {"format": ck.FORMAT, "version": ck.VERSION, "model": {}, "config": config, "step": step, "finished": finished},
        folder.last,
    )
    ev = EvalResult(**scores).with_training(step, finished)
    ev.save(folder.eval)
    return ev


class CountingTrain:
    """Stands in for the training loop: records calls, writes a finished checkpoint and its evaluation."""

    def __init__(self):
        self.calls = []

    def __call__(self, cfg, run_dir=None, resume=False, progress=False):
        self.calls.append((run_dir, resume))
        return Run(run_dir, cfg, write_finished(run_dir, {"knn": 0.5, "linear": 0.5}, cfg=cfg))
