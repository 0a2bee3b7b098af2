"""One transformer block's weights as numpy arrays, the input of the per-layer predictions.

``block_params(block)`` reads a torch ``TransformerBlock`` through its tensors' own methods (no torch
import here); ``BlockParams.head(h)`` slices one head's query, key, value and output maps
(``experiments.layer_prediction`` predicts from them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class BlockParams:
    """One transformer block's weights as numpy arrays (torch layout: Linear weights are (out, in))."""

    W_qkv: np.ndarray  # (3D, D): rows 0:D queries, D:2D keys, 2D:3D values; head h = rows h d_h:(h+1) d_h
    b_qkv: np.ndarray  # (3D,)
    W_O: np.ndarray  # (D, D) output projection
    b_O: np.ndarray  # (D,)
    heads: int
    ln1_weight: np.ndarray  # (D,)
    ln1_bias: np.ndarray
    ln2_weight: np.ndarray
    ln2_bias: np.ndarray
    fc1_weight: np.ndarray  # (F, D)
    fc1_bias: np.ndarray  # (F,)
    fc2_weight: np.ndarray  # (D, F)
    fc2_bias: np.ndarray  # (D,)
    norm: str  # "post" or "pre"
    ln_eps: float = 1e-5

    @property
    def dim(self) -> int:
        return self.W_O.shape[0]

    def head(self, h):
        """S8/S9: (W_Q, b_Q, W_K, b_K, W_V, b_V, W_O^h) of head h; W_Q (d_h, D), W_O^h (D, d_h)."""
        D, dh = self.dim, self.dim // self.heads
        rows = [slice(part * D + h * dh, part * D + (h + 1) * dh) for part in range(3)]
        return (*(a for s in rows for a in (self.W_qkv[s], self.b_qkv[s])), self.W_O[:, h * dh : (h + 1) * dh])


def block_params(block) -> BlockParams:
    """Read a ``TransformerBlock`` (torch) into ``BlockParams`` (float64 numpy)."""

    def a(t):
        return t.detach().cpu().double().numpy().copy()

    return BlockParams(
        W_qkv=a(block.attn.qkv.weight),
        b_qkv=a(block.attn.qkv.bias),
        W_O=a(block.attn.proj.weight),
        b_O=a(block.attn.proj.bias),
        heads=int(block.attn.heads),
        ln1_weight=a(block.ln1.weight),
        ln1_bias=a(block.ln1.bias),
        ln2_weight=a(block.ln2.weight),
        ln2_bias=a(block.ln2.bias),
        fc1_weight=a(block.fc1.weight),
        fc1_bias=a(block.fc1.bias),
        fc2_weight=a(block.fc2.weight),
        fc2_bias=a(block.fc2.bias),
        norm="pre" if block.pre else "post",
        ln_eps=float(block.ln1.eps),
    )
