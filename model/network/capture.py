"""Attention of a transformer head inside any model: ``capture_attention(model, batches)``.

A researcher's model holds a :class:`TransformerHead` somewhere (as a projection head after a
backbone, inside a SimCLR wrapper, ...). ``capture_attention`` runs the model on each batch as the
model's own ``forward`` would, records the input the head receives (through a forward pre-hook
that is removed afterwards), and passes that input through ``head(x, return_attention=True)``.
Nothing on the model is switched and restored: the hook only reads. The result has the layout
``deepfusion.analyze_attention`` takes for one training seed: ``(B, L, H, M, M)``, one row per
batch, ``L`` layers, ``H`` heads, ``M`` tokens (all views of the batch).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from deepfusion.errors import DataError
from deepfusion.model.network.transformer_head import TransformerHead


def find_head(model: nn.Module) -> TransformerHead:
    """The one :class:`TransformerHead` inside ``model`` (``model`` itself counts)."""
    heads = [m for m in model.modules() if isinstance(m, TransformerHead)]
    if not heads:
        raise DataError(
            f"{type(model).__name__} holds no deepfusion TransformerHead; build its projection head "
            "with deepfusion.TransformerHead, or pass head="
        )
    if len(heads) > 1:
        raise DataError(f"{type(model).__name__} holds {len(heads)} TransformerHeads; pass the one to read as head=")
    return heads[0]


def _as_args(batch) -> tuple:
    return tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)


@torch.no_grad()
def capture_attention(model: nn.Module, batches, head: TransformerHead | None = None) -> np.ndarray:
    """(B, L, H, M, M) float32 attention of ``head`` (default: the one inside ``model``) on each batch.

    ``batches`` is an iterable of model inputs: a tensor, or a tuple/list of positional arguments,
    passed as ``model(*batch)``. Put the model in the mode to analyse first (``model.eval()`` for
    deterministic attention; the head's attention itself has no train/eval difference without
    dropout). Every batch must give the head the same number of tokens ``M``, as the verdict needs.
    Rows of each (M, M) matrix sum to 1; row ``i`` is what token ``i`` attends to.
    """
    head = find_head(model) if head is None else head
    if not isinstance(head, TransformerHead):
        raise DataError(f"head= must be a deepfusion TransformerHead, got {type(head).__name__}")
    seen: list[torch.Tensor] = []
    handle = head.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
    maps = []
    try:
        for i, batch in enumerate(batches):
            seen.clear()
            model(*_as_args(batch))
            if not seen:
                raise DataError(
                    f"batch {i}: the model's forward never called the head; pass the model that holds "
                    "it, or head= the module its forward uses"
                )
            _, attention = head(seen[0], return_attention=True)
            maps.append(torch.stack(attention).float().cpu().numpy())  # (L, H, M, M)
    finally:
        handle.remove()
    if not maps:
        raise DataError("capture_attention got no batches; pass at least one")
    sizes = sorted({m.shape[-1] for m in maps})
    if len(sizes) > 1:
        raise DataError(
            f"the head saw batches of {', '.join(map(str, sizes))} tokens; give every batch the same "
            "size (drop the last, smaller batch)"
        )
    return np.stack(maps)  # (B, L, H, M, M)
