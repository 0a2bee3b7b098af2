"""A run's final evaluation (``eval.json``, written by ``model/runs/evaluate.py``) read for a study.

``read_eval(run_dir)`` returns the parsed file of a finished run; ``accuracy(ev, key, run_dir)``
one accuracy in percent. Both refuse with one line naming the run and the fix: a missing or
unreadable file, a run stopped before its last step, an entry that is absent or not a finite
accuracy in [0, 1].
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from deepfusion.errors import DataError
from deepfusion.model.runs.layout import RunFolder


def read_eval(run_dir: str | Path) -> dict:
    """The parsed ``eval.json`` of the finished run in ``run_dir``."""
    path = RunFolder(run_dir).eval
    if not path.is_file():
        raise DataError(f"{run_dir} has no {path.name} (training not finished?); finish it or leave it out")
    try:
        ev = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"cannot read {path} ({err}); evaluate the run again: "
                        f"deepfusion eval --run {run_dir}") from None
    if not isinstance(ev, dict):
        raise DataError(f"{path} holds no evaluation record; evaluate the run again: deepfusion eval --run {run_dir}")
    if ev.get("finished") is False:
        raise DataError(f"{path} describes step {ev.get('step')}, before the run's last step; finish it with "
                        f"deepfusion train --resume {run_dir}")
    return ev


def accuracy(ev: dict, key: str, run_dir: str | Path) -> float:
    """Entry ``key`` of an evaluation record, in percent."""
    value = ev.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0.0 <= value <= 1.0:
        what = "no" if key not in ev else f"no finite accuracy in [0, 1] ({value!r}) as"
        raise DataError(f"eval.json of {run_dir} has {what} {key!r} entry; evaluate it again: "
                        f"deepfusion eval --run {run_dir}")
    return 100.0 * float(value)
