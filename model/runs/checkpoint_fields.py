"""What a checkpoint must hold, checked field by field before anything uses it.

A file can carry the deepfusion format tag and still lack a field or hold one of the wrong kind
(edited by hand, written by a buggy tool, damaged in a way the zip checksums miss). Each field
is checked here, so such a file is a one-line :class:`CheckpointError` naming the field, never a
``KeyError`` or ``TypeError`` from deep inside a resume.

Every use needs ``model`` (name -> tensor), ``config`` (section -> mapping), ``step`` and
``finished``; a resume also needs the optimiser and scheduler states, the RNG states and
the progress counters. ``scaler`` (an unused, disabled loss scaler's state) is written by older
versions only; where present it is checked and otherwise ignored.
"""

from __future__ import annotations

import math

import torch

from deepfusion.errors import CheckpointError


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _count(v) -> str | None:
    return None if _is_int(v) and v >= 0 else "must be an integer >= 0"


def _flag(v) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


def _seconds(v) -> str | None:
    ok = (_is_int(v) or isinstance(v, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
    return None if ok else "must be a finite number of seconds >= 0"


def _tensors(v) -> str | None:
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(t, torch.Tensor) for k, t in v.items()):
        return "must map parameter names to tensors"
    return None


def _config(v) -> str | None:
    if not isinstance(v, dict) or not all(isinstance(s, dict) for k, s in v.items() if k != "preset"):
        return "must map config sections to mappings"
    return None


def _mapping(v) -> str | None:
    return None if isinstance(v, dict) else "must be a mapping"


def _optimizer(v) -> str | None:
    if not isinstance(v, dict) or not isinstance(v.get("state"), dict) or not isinstance(v.get("param_groups"), list):
        return "must be an optimiser state (a mapping with 'state' and 'param_groups')"
    if not all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in v["param_groups"]):
        return "has a parameter group without a 'params' list"
    return None


def _byte_tensor(v) -> bool:
    return isinstance(v, torch.Tensor) and v.dtype == torch.uint8 and v.dim() == 1


def _rng(v) -> str | None:
    """The states :func:`deepfusion.model.runs.checkpoint.capture_rng` stores."""
    if not isinstance(v, dict) or not _byte_tensor(v.get("torch")):
        return "must hold torch's RNG state (a 1-d uint8 tensor)"
    n = v.get("numpy")
    if not (
        isinstance(n, dict)
        and n.get("kind") == "MT19937"
        and isinstance(n.get("keys"), torch.Tensor)
        and tuple(n["keys"].shape) == (624,)
        and _is_int(n.get("pos"))
        and 0 <= n["pos"] <= 624
        and n.get("has_gauss") in (0, 1)
        and isinstance(n.get("gauss"), float)
    ):
        return "must hold numpy's MT19937 state (624 keys, a position in [0, 624])"
    p = v.get("python")
    if not (
        isinstance(p, dict)
        and _is_int(p.get("version"))
        and isinstance(p.get("state"), list)
        and len(p["state"]) == 625
        and all(_is_int(x) for x in p["state"])
        and (p.get("gauss") is None or isinstance(p.get("gauss"), float))
    ):
        return "must hold python's random state (625 integers)"
    cuda = v.get("cuda")
    if cuda is not None and not (isinstance(cuda, list) and all(_byte_tensor(t) for t in cuda)):
        return "has CUDA RNG states that are not uint8 tensors"
    return None


def _rng_ranks(v) -> str | None:
    if not isinstance(v, list) or not v:
        return "must be a list of every process's RNG states"
    for state in v:
        problem = _rng(state)
        if problem:
            return problem
    return None


ALWAYS = {"model": _tensors, "config": _config, "step": _count, "finished": _flag}
FOR_RESUME = {
    "optimizer": _optimizer,
    "scheduler": _mapping,
    "rng": _rng,
    "epoch": _count,
    "position": _count,
    "skipped": _count,
    "elapsed": _seconds,
}
OPTIONAL = {"rng_ranks": _rng_ranks, "scaler": _mapping}  # scaler: older checkpoints only


def check_fields(obj: dict, path, resume: bool = False) -> None:
    """Raise a one-line :class:`CheckpointError` naming the first missing or malformed field."""
    required = dict(ALWAYS, **FOR_RESUME) if resume else ALWAYS
    for name, check in required.items():
        if name not in obj:
            raise CheckpointError(
                f"checkpoint {path} has no '{name}' field; it was not written by deepfusion train "
                "or is damaged: use prev.pt beside it or retrain"
            )
    for name, check in {**ALWAYS, **FOR_RESUME, **OPTIONAL}.items():
        if name in obj:
            problem = check(obj[name])
            if problem:
                raise CheckpointError(
                    f"checkpoint {path}: field '{name}' {problem} (got {_show(obj[name])}); "
                    "the file is damaged: use prev.pt beside it or retrain"
                )


def _show(v) -> str:
    if isinstance(v, torch.Tensor):
        return f"a {v.dtype} tensor of shape {tuple(v.shape)}"
    text = repr(v)
    return text if len(text) <= 40 else f"a {type(v).__name__}"
