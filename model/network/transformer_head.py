"""The transformer projection head: the samples of a batch are its tokens.

``TransformerHead`` maps backbone features ``(V*N, in_dim)`` (view-major: all
first views, then all second views) to projections ``(V*N, out_dim)``:
input Linear to ``dim``, ``depth`` blocks of batch attention and a GELU
feed-forward layer, no positional encoding, output Linear, then a BatchNorm1d
with a learned per-dimension scale and no learned bias.

Post-LN (the paper): ``Z = LN(Z + MHA(Z)); Z = LN(Z + FFN(Z))``.
Pre-LN: ``Z = Z + MHA(LN(Z)); Z = Z + FFN(LN(Z))`` and a final LN.

The output BatchNorm keeps the weight and drops the bias. A bias adds one
vector to every embedding; it carries no information about any instance, and
after L2 normalisation in the loss it only pulls all embeddings towards a
common direction, raising every cosine, positives and negatives alike. The
per-dimension scale is not redundant under that normalisation (it reweights
dimensions in the cosine), so it stays, as in SimCLR's projection head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deepfusion.errors import ConfigError, DataError
from deepfusion.model.network.attention import BatchAttention, check_scope, min_instances
from deepfusion.model.network.forward_options import current
from deepfusion.model.network.registry import HEADS, NORMS
from deepfusion.model.network.sizes import check_positive_ints


class BiasFreeBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d with a learned scale and no learned bias (the output layer of the heads)."""

    def __init__(self, num_features: int):
        super().__init__(num_features, affine=True)
        self.register_parameter("bias", None)  # F.batch_norm accepts bias=None


def check_head_input(
    x: torch.Tensor, in_dim: int, views: int = 1, min_instances: int = 1, scope: str = "", check_finite: bool = True
) -> None:
    """Raise ``DataError`` naming what is wrong with a head's input ``x`` (expected ``(V*N, in_dim)``)."""
    if not isinstance(x, torch.Tensor):
        raise DataError(f"head input must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise DataError(
            f"head input must be a 2-D (V*N, in_dim) matrix of backbone features, got a {x.dim()}-D tensor "
            f"of shape {tuple(x.shape)}; flatten the features or stack the views along dim 0"
        )
    m, d = x.shape
    if d != in_dim:
        raise DataError(
            f"head input has feature size {d}, but the head was built for in_dim={in_dim}; "
            "build the head with the backbone's out_dim"
        )
    if m % views:
        raise DataError(
            f"head input has M={m} rows, not divisible by views={views}; "
            "stack the same number of samples for every view"
        )
    n = m // views
    if n < min_instances:
        raise DataError(
            f"scope {scope!r} needs at least {min_instances} instances per view so a token sees "
            f"someone besides itself, got N={n} (M={m}, views={views}); use a larger batch"
        )
    if check_finite and not bool(torch.isfinite(x).all()):
        raise DataError("head input contains NaN or inf features; check the backbone and the learning rate")


@NORMS.register("post", label="post-LN (paper)", summary="Z = LN(Z + MHA(Z)); Z = LN(Z + FFN(Z))", final_ln=False)
def post_ln(block: "TransformerBlock", z: torch.Tensor, need_weights: bool):
    a, weights = block.attend(z, need_weights)
    z = block.ln1(z + block.drop(a))
    return block.ln2(z + block.ffn(z)), weights


@NORMS.register("pre", label="pre-LN", summary="Z = Z + MHA(LN(Z)); Z = Z + FFN(LN(Z)), and a final LN", final_ln=True)
def pre_ln(block: "TransformerBlock", z: torch.Tensor, need_weights: bool):
    a, weights = block.attend(block.ln1(z), need_weights)
    z = z + block.drop(a)
    return z + block.ffn(block.ln2(z)), weights


class TransformerBlock(nn.Module):
    """One block: batch attention and a GELU feed-forward layer, each with a residual and LayerNorm
    placed as the registered ``norm`` says (``post_ln``, ``pre_ln``)."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, norm: str, scope: str, views: int, dropout: float):
        super().__init__()
        self.norm = NORMS.check(norm)
        self.pre = norm == "pre"
        self._layout = NORMS.get(norm).build
        self.attn = BatchAttention(dim, heads, scope=scope, views=views, dropout=dropout)
        self.ln1 = nn.LayerNorm(dim)
        self.ln2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, dim)
        self.dropout = float(dropout)

    def drop(self, z: torch.Tensor) -> torch.Tensor:
        return F.dropout(z, self.dropout, True) if (self.training and self.dropout) else z

    def ffn(self, z: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(z)))))

    def attend(self, a: torch.Tensor, need_weights: bool):
        """Attention output and its (heads, M, M) weights (None unless ``need_weights``)."""
        return self.attn(a, need_weights=True) if need_weights else (self.attn(a), None)

    def forward(self, z: torch.Tensor, need_weights: bool = False):
        """``z`` (M, dim) -> ``(z', weights)``; weights (heads, M, M) or None."""
        return self._layout(self, z, need_weights)


@HEADS.register(
    "transformer",
    label="Transformer (across batch)",
    attends=True,
    summary="the paper's head: blocks of attention across the batch and a GELU FFN",
    options=("dim", "depth", "heads", "ffn_dim", "out_dim", "norm", "scope", "views", "out_bn", "dropout"),
)
class TransformerHead(nn.Module):
    """Transformer head attending across the batch; see the module docstring."""

    def __init__(
        self,
        in_dim: int,
        dim: int = 256,
        depth: int = 10,
        heads: int = 16,
        ffn_dim: int = 1024,
        out_dim: int = 512,
        norm: str = "post",
        scope: str = "both_views",
        views: int = 2,
        out_bn: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        NORMS.check(norm)
        check_positive_ints(
            in_dim=in_dim, dim=dim, depth=depth, heads=heads, ffn_dim=ffn_dim, out_dim=out_dim, views=views
        )
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout={dropout!r} must lie in [0, 1)")
        self.in_dim, self.dim, self.depth, self.heads = in_dim, dim, depth, heads
        self.out_dim, self.norm, self.views = out_dim, norm, views
        self.scope = check_scope(scope)
        self.inp = nn.Linear(in_dim, dim)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, heads, ffn_dim, norm, scope, views, dropout) for _ in range(depth)
        )
        self.final_ln = nn.LayerNorm(dim) if NORMS.get(norm).extra["final_ln"] else nn.Identity()
        self.out = nn.Linear(dim, out_dim)
        self.bn = BiasFreeBatchNorm1d(out_dim) if out_bn else nn.Identity()

    @classmethod
    def paper(cls, in_dim: int) -> "TransformerHead":
        """The authors' sizes: D=256, 10 post-LN layers, 16 heads, FFN 1024, output 512 with bias-free BN."""
        return cls(
            in_dim,
            dim=256,
            depth=10,
            heads=16,
            ffn_dim=1024,
            out_dim=512,
            norm="post",
            scope="both_views",
            views=2,
            out_bn=True,
        )

    def _check(self, x: torch.Tensor) -> None:
        check_head_input(x, self.in_dim, self.views, min_instances(self.scope), self.scope, current().check_inputs)

    def _run(self, x: torch.Tensor, need_weights: bool, keep_tokens: bool):
        self._check(x)
        z = self.inp(x)  # (M, D)
        tokens, attention = [], []
        for block in self.blocks:
            if keep_tokens:
                tokens.append(z)
            z, w = block(z, need_weights)
            if need_weights:
                attention.append(w)
        if keep_tokens:
            tokens.append(z)
        out = self.bn(self.out(self.final_ln(z)))  # (M, out_dim)
        return out, tokens, attention

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        """``x`` (V*N, in_dim) view-major -> (V*N, out_dim), or ``(out, attn)`` with one (heads, M, M) per layer."""
        out, _, attention = self._run(x, return_attention, keep_tokens=False)
        return (out, attention) if return_attention else out

    def trace(self, x: torch.Tensor) -> dict:
        """Outputs, the (M, dim) input of every block plus the last block's output, and the attention weights."""
        out, tokens, attention = self._run(x, need_weights=True, keep_tokens=True)
        return {"out": out, "tokens": tokens, "attention": attention}
