"""Multi-head attention across the samples of a batch.

The tokens are the samples: a view-major batch of ``M = V*N`` rows, token ``i``
being instance ``i % N`` of view ``i // N``. A *scope* says which tokens a
token may attend to:

- ``both_views`` (the paper): every token sees all ``V*N`` tokens, itself and
  its positive view(s) included. No mask.
- ``per_view``: a token sees only the tokens of its own view. Run as ``V``
  independent sequences (views as a batch dimension), which needs no mask and
  costs ``1/V`` of the full attention.
- ``mask_pair``: a token does not see its positive view(s), the tokens with the
  same instance index in the other views; it still sees itself.

Two paths compute the same function. The fast path (``forward``) fuses the Q, K,
V projections into one matmul and calls ``F.scaled_dot_product_attention``,
passing a mask (a cached additive bias) only for ``mask_pair``. The explicit path
(``forward(..., need_weights=True)``) writes out the softmax and also returns
the ``(heads, M, M)`` attention weights, exactly zero where masked.

Data-parallel training (``forward_options(attend="global")``, set by the training loop): each
process holds its own slice of the batch; its queries attend to the keys and values of the whole
batch, gathered from every process with gradients, so the function equals attention on the
concatenated batch, each process keeping its own rows. Without a process group it is local.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from deepfusion.model.network.collectives import gather_rows
from deepfusion.model.network.forward_options import current
from deepfusion.model.network.registry import SCOPES
from deepfusion.model.network.sizes import check_heads_divide


@SCOPES.register(
    "both_views",
    label="both views (paper)",
    min_instances=1,
    summary="every token sees all V*N tokens, itself and its positive view(s) included",
)
def _both_views_mask(n: int, views: int, device=None) -> torch.Tensor | None:
    return None


@SCOPES.register(
    "per_view", label="within each view", min_instances=2, summary="a token sees only the tokens of its own view"
)
def _per_view_mask(n: int, views: int, device=None) -> torch.Tensor:
    view = torch.arange(n * views, device=device) // n
    return view[:, None] == view[None, :]


@SCOPES.register(
    "mask_pair",
    label="positive view hidden",
    min_instances=2,
    summary="a token does not see its positive view(s); it still sees itself",
)
def _mask_pair_mask(n: int, views: int, device=None) -> torch.Tensor:
    idx = torch.arange(n * views, device=device)
    inst = idx % n  # hide same instance, other token
    return (inst[:, None] != inst[None, :]) | (idx[:, None] == idx[None, :])


def check_scope(scope: str) -> str:
    return SCOPES.check(scope)


def min_instances(scope: str) -> int:
    """Smallest number of instances per view for ``scope``, so that every token has someone besides
    itself to attend to (per_view and mask_pair hide the positive)."""
    return SCOPES.get(scope).extra["min_instances"]


def scope_mask(scope: str, n: int, views: int, device=None) -> torch.Tensor | None:
    """Boolean ``(M, M)`` matrix, True where token ``i`` may attend to token ``j``; None for ``both_views``."""
    return SCOPES.get(scope).build(n, views, device)


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class BatchAttention(nn.Module):
    """Multi-head self-attention whose sequence is the batch: ``(M, dim) -> (M, dim)``."""

    def __init__(self, dim: int, heads: int, scope: str = "both_views", views: int = 2, dropout: float = 0.0):
        super().__init__()
        check_heads_divide(dim, heads)
        self.dim, self.heads, self.views = dim, heads, views
        self.scope = check_scope(scope)
        self.dropout = float(dropout)
        self.qkv = nn.Linear(dim, 3 * dim)  # fused Q, K, V projection
        self.proj = nn.Linear(dim, dim)
        self._mask_key: tuple | None = None
        self._mask: torch.Tensor | None = None
        self._bias_key: tuple | None = None
        self._bias: torch.Tensor | None = None
        # Same initialisation as nn.MultiheadAttention, so heads start comparable to the reference layer.
        nn.init.xavier_uniform_(self.qkv.weight)
        nn.init.zeros_(self.qkv.bias)
        nn.init.zeros_(self.proj.bias)

    def mask(self, m: int, device) -> torch.Tensor | None:
        """The scope mask for ``m`` tokens, cached while the batch size and device stay the same."""
        key = (m, str(device))
        if self._mask_key != key:
            self._mask = scope_mask(self.scope, m // self.views, self.views, device)
            self._mask_key = key
        return self._mask

    def additive_mask(self, m: int, device, dtype) -> torch.Tensor:
        """The scope mask as an additive ``(M, M)`` bias (0 or -inf) in the attention dtype, cached.

        SDPA would otherwise turn a boolean mask into this bias on every call of every layer.
        """
        key = (m, str(device), dtype)
        if self._bias_key != key:
            allowed = self.mask(m, device)
            self._bias = torch.zeros(m, m, device=device, dtype=dtype).masked_fill_(~allowed, float("-inf"))
            self._bias_key = key
        return self._bias

    def forward(self, x: torch.Tensor, need_weights: bool = False):
        """``x`` (M, dim) view-major. Returns ``out`` or, with ``need_weights``, ``(out, weights)``."""
        if need_weights:
            return self._explicit(x)
        m, d = x.shape
        h, hd = self.heads, d // self.heads
        p = self.dropout if self.training else 0.0
        qkv = self.qkv(x)  # (M, 3D)
        if current().attend == "global" and _world() > 1:
            return self.proj(self._global(qkv, p))
        if self.scope == "per_view":
            v, n = self.views, m // self.views
            q, k, val = qkv.view(v, n, 3, h, hd).permute(2, 0, 3, 1, 4)  # each (V, H, N, hd)
            out = F.scaled_dot_product_attention(q, k, val, dropout_p=p)  # (V, H, N, hd)
            out = out.permute(0, 2, 1, 3).reshape(m, d)
        else:
            # 4-D (1, H, M, hd) inputs: the fused GPU kernels accept only 4-D tensors.
            q, k, val = qkv.view(1, m, 3, h, hd).permute(2, 0, 3, 1, 4)  # each (1, H, M, hd)
            mask = self.additive_mask(m, x.device, q.dtype) if self.scope == "mask_pair" else None
            out = F.scaled_dot_product_attention(q, k, val, attn_mask=mask, dropout_p=p)  # (1, H, M, hd)
            out = out[0].transpose(0, 1).reshape(m, d)
        return self.proj(out)

    def _global(self, qkv: torch.Tensor, p: float) -> torch.Tensor:
        """Local queries against the keys and values of every process, in the global view-major order."""
        m, d3 = qkv.shape
        d = d3 // 3
        h, hd, v = self.heads, d // self.heads, self.views
        kv, rows = gather_rows(qkv[:, d:], v)  # (Mg, 2D) global, own row indices (M,)
        mg = kv.shape[0]
        q = qkv[:, :d]
        if self.scope == "per_view":  # view v's queries see view v's global tokens only
            q = q.view(v, m // v, h, hd).transpose(1, 2)  # (V, H, n, hd)
            k, val = kv.view(v, mg // v, 2, h, hd).permute(2, 0, 3, 1, 4)  # each (V, H, N, hd)
            out = F.scaled_dot_product_attention(q, k, val, dropout_p=p)  # (V, H, n, hd)
            return out.transpose(1, 2).reshape(m, d)
        q = q.view(1, m, h, hd).transpose(1, 2)  # (1, H, M, hd)
        k, val = kv.view(1, mg, 2, h, hd).permute(2, 0, 3, 1, 4)  # each (1, H, Mg, hd)
        mask = self.additive_mask(mg, q.device, q.dtype)[rows] if self.scope == "mask_pair" else None
        out = F.scaled_dot_product_attention(q, k, val, attn_mask=mask, dropout_p=p)  # (1, H, M, hd)
        return out[0].transpose(0, 1).reshape(m, d)

    def _explicit(self, x: torch.Tensor):
        m, d = x.shape
        h, hd = self.heads, d // self.heads
        q, k, val = self.qkv(x).view(m, 3, h, hd).permute(1, 2, 0, 3)  # each (H, M, hd)
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))  # (H, M, M)
        mask = self.mask(m, x.device)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))  # self is always allowed: no empty row
        weights = scores.softmax(dim=-1)  # exp(-inf) = 0: masked weights are exactly zero
        attn = F.dropout(weights, self.dropout) if (self.training and self.dropout) else weights
        out = (attn @ val).transpose(0, 1).reshape(m, d)  # (M, D)
        return self.proj(out), weights
