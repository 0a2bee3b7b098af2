"""Divergence: what stops a run whose numbers left the finite range, before it is saved.

The loop reads the loss only at logging steps and checkpoints (:class:`~deepfusion.model.runs.loop.LossMeter`),
but an optimiser step can turn the weights into NaN/inf while every loss read so far was finite:
the loss of the *next* step would be the first to show it. A checkpoint is therefore written only
after :func:`check_weights` has seen every floating-point tensor of the model finite, so ``last.pt``
is always a state worth resuming from; loading refuses non-finite weights as well
(:func:`~deepfusion.model.runs.checkpoint.load_checkpoint`), so a resume falls back to ``prev.pt``.
"""

from __future__ import annotations

import torch

from deepfusion.errors import RunError
from deepfusion.model.runs import distributed as ddp_util
from deepfusion.model.runs.checkpoint import nonfinite_tensor
from deepfusion.model.runs.layout import RunFolder

ADVICE = "lower optim.lr, raise loss.temperature, or allow train.skip_nonfinite=K"


def kept(folder: RunFolder) -> str:
    """What a stopped run leaves to resume from, in words."""
    if folder.last.exists() or folder.prev.exists():
        return f"kept the last good checkpoint in {folder.checkpoints}"
    return "no checkpoint had been written yet (the same command starts it again)"


def check_weights(
    model: torch.nn.Module, device: torch.device, step: int, steps_per_epoch: int, folder: RunFolder
) -> None:
    """Raise a one-line :class:`RunError` if any rank's model holds a NaN/inf weight or buffer."""
    bad = nonfinite_tensor(model.state_dict())
    flag = ddp_util.all_reduce_max(torch.tensor(int(bad is not None), device=device))
    if int(flag.item()):
        where = f" ({bad})" if bad else " (on another process)"
        raise RunError(
            f"weights became NaN/inf by step {step} (epoch {(step - 1) // max(1, steps_per_epoch)})"
            f"{where}; stopped before saving them and {kept(folder)}; {ADVICE}"
        )
