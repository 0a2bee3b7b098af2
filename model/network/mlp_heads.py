"""Feed-forward projection heads, the baselines of the transformer head.

``MLPHead`` is SimCLR's head, Linear-BN-ReLU-Linear, with or without the
BatchNorm. BatchNorm also mixes samples (through the batch statistics), so the
head comparison includes both. ``FFNHead`` is the paper's feed-forward
baseline: the transformer head's layout with each block turned into
Linear + BatchNorm + ReLU (no attention, no residual), and the same bias-free
output BatchNorm for parity.

Both follow the head interface of the transformer head: ``forward(x,
return_attention=False)`` (the attention list is empty) and ``trace(x)`` whose
``tokens`` are the features entering each block plus the last block's output.
"""

from __future__ import annotations

import torch
from torch import nn

from deepfusion.model.network.forward_options import current
from deepfusion.model.network.registry import HEADS
from deepfusion.model.network.sizes import check_positive_ints
from deepfusion.model.network.transformer_head import BiasFreeBatchNorm1d, check_head_input


class _FeedForwardHead(nn.Module):
    """Shared plumbing: input checks, ``forward`` and ``trace`` over ``stem -> blocks -> tail``."""

    in_dim: int
    stem: nn.Module
    blocks: nn.ModuleList
    tail: nn.Module

    def _run(self, x: torch.Tensor, keep_tokens: bool):
        check_head_input(x, self.in_dim, check_finite=current().check_inputs)
        z = self.stem(x)
        tokens = []
        for block in self.blocks:
            if keep_tokens:
                tokens.append(z)
            z = block(z)
        if keep_tokens:
            tokens.append(z)
        return self.tail(z), tokens

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        """``x`` (M, in_dim) -> (M, out_dim), or ``(out, [])`` with ``return_attention``."""
        out, _ = self._run(x, keep_tokens=False)
        return (out, []) if return_attention else out

    def trace(self, x: torch.Tensor) -> dict:
        out, tokens = self._run(x, keep_tokens=True)
        return {"out": out, "tokens": tokens, "attention": []}


# Decorators apply bottom-up: mlp registers before mlp_nobn.
@HEADS.register(
    "mlp_nobn",
    label="MLP, no BatchNorm",
    attends=False,
    fixed={"batchnorm": False},
    summary="Linear-ReLU-Linear: nothing mixes the samples of a batch",
    options={"mlp_hidden": "hidden_dim", "out_dim": "out_dim"},
)
@HEADS.register(
    "mlp",
    label="MLP + BatchNorm (SimCLR)",
    attends=False,
    fixed={"batchnorm": True},
    summary="SimCLR's head: Linear-BN-ReLU-Linear",
    options={"mlp_hidden": "hidden_dim", "out_dim": "out_dim"},
)
class MLPHead(_FeedForwardHead):
    """SimCLR's projection head: Linear-BN-ReLU-Linear (``batchnorm=False``: Linear-ReLU-Linear)."""

    def __init__(self, in_dim: int, hidden_dim: int = 2048, out_dim: int = 128, batchnorm: bool = True):
        super().__init__()
        check_positive_ints(in_dim=in_dim, mlp_hidden=hidden_dim, out_dim=out_dim)
        self.in_dim, self.out_dim, self.batchnorm = in_dim, out_dim, batchnorm
        self.stem = nn.Identity()
        # The BN that follows removes any bias, so the Linear before it has none.
        layers = [nn.Linear(in_dim, hidden_dim, bias=not batchnorm)]
        layers += [nn.BatchNorm1d(hidden_dim)] if batchnorm else []
        self.blocks = nn.ModuleList([nn.Sequential(*layers, nn.ReLU(inplace=True))])
        self.tail = nn.Linear(hidden_dim, out_dim)


@HEADS.register(
    "ffn",
    label="FFN blocks (paper baseline)",
    attends=False,
    summary="the paper's baseline: the transformer's layout with Linear-BN-ReLU blocks",
    options=("dim", "depth", "out_dim", "out_bn"),
)
class FFNHead(_FeedForwardHead):
    """The paper's feed-forward baseline: Linear to ``dim``, ``depth`` Linear-BN-ReLU blocks, output Linear + BN."""

    def __init__(self, in_dim: int, dim: int = 256, depth: int = 10, out_dim: int = 512, out_bn: bool = True):
        super().__init__()
        check_positive_ints(in_dim=in_dim, dim=dim, depth=depth, out_dim=out_dim)
        self.in_dim, self.dim, self.depth, self.out_dim = in_dim, dim, depth, out_dim
        self.stem = nn.Linear(in_dim, dim)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(inplace=True))
            for _ in range(depth)
        )
        self.tail = nn.Sequential(nn.Linear(dim, out_dim), BiasFreeBatchNorm1d(out_dim) if out_bn else nn.Identity())
