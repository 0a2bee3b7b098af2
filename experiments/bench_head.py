"""Head benchmark: our TransformerHead against a reference built from ``nn.TransformerEncoderLayer``.

The reference has the same sizes and, through :func:`reference_head`, the same weights: post-LN,
batch_first, GELU, no dropout, the batch as one sequence ``(1, M, D)``. The two compute the same
function (tests/experiments/test_bench.py), so a speed ratio compares implementations, not models.
"""

from __future__ import annotations

import copy
from contextlib import nullcontext

import torch
from torch import nn

from deepfusion.experiments.bench_timing import time_interleaved
from deepfusion.model.network.forward_options import forward_options
from deepfusion.model.network.mlp_heads import MLPHead
from deepfusion.model.network.transformer_head import TransformerHead


class ReferenceHead(nn.Module):
    """Input Linear, ``nn.TransformerEncoderLayer`` blocks on ``(1, M, D)``, output Linear and BatchNorm."""

    def __init__(self, head: TransformerHead):
        super().__init__()
        if head.norm != "post" or head.scope != "both_views":
            raise ValueError("the reference head mirrors post-LN heads with scope both_views only")
        d, like = head.dim, next(head.parameters())
        self.inp, self.out, self.bn = copy.deepcopy(head.inp), copy.deepcopy(head.out), copy.deepcopy(head.bn)
        self.layers = nn.ModuleList()
        for block in head.blocks:
            layer = nn.TransformerEncoderLayer(
                d,
                head.heads,
                block.fc1.out_features,
                dropout=0.0,
                activation="gelu",
                batch_first=True,
                norm_first=False,
                device=like.device,
                dtype=like.dtype,
            )
            with torch.no_grad():  # our fused qkv has the in_proj layout: rows q, then k, then v
                layer.self_attn.in_proj_weight.copy_(block.attn.qkv.weight)
                layer.self_attn.in_proj_bias.copy_(block.attn.qkv.bias)
                layer.self_attn.out_proj.weight.copy_(block.attn.proj.weight)
                layer.self_attn.out_proj.bias.copy_(block.attn.proj.bias)
                for mine, theirs in (
                    (block.fc1, layer.linear1),
                    (block.fc2, layer.linear2),
                    (block.ln1, layer.norm1),
                    (block.ln2, layer.norm2),
                ):
                    theirs.weight.copy_(mine.weight)
                    theirs.bias.copy_(mine.bias)
            self.layers.append(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.inp(x)[None]  # (1, M, D)
        for layer in self.layers:
            z = layer(z)
        return self.bn(self.out(z[0]))


def reference_head(head: TransformerHead) -> ReferenceHead:
    """A reference head holding copies of ``head``'s weights."""
    return ReferenceHead(head).to(next(head.parameters()).device)


def bench_head(
    sizes=(512, 2048, 8192),
    device="cpu",
    in_dim=512,
    dim=256,
    depth=6,
    heads=8,
    ffn_dim=1024,
    out_dim=512,
    repeats=5,
    warmup=2,
) -> list[dict]:
    """Forward+backward seconds of ours, the reference and the MLP head for each token count M.

    fp32 on CPU, bf16 autocast on CUDA. The reference ratio is ours / reference (< 1: ours faster)."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else nullcontext
    torch.manual_seed(0)
    ours = TransformerHead(in_dim, dim=dim, depth=depth, heads=heads, ffn_dim=ffn_dim, out_dim=out_dim).to(device)
    ref = reference_head(ours)
    mlp = MLPHead(in_dim, hidden_dim=2048, out_dim=out_dim, batchnorm=True).to(device)
    rows = []
    for m in sizes:
        x = torch.randn(m, in_dim, device=device, requires_grad=True)

        def step(module):
            def go():
                with autocast(), forward_options(check_inputs=False):  # as in training: no host sync
                    out = module(x)
                out.float().square().mean().backward()

            return go

        row = dict(M=m, dim=dim, depth=depth, heads=heads, dtype="bf16" if cuda else "fp32")
        contenders = {"ours_s": ours, "reference_s": ref, "mlp_s": mlp}
        row.update(time_interleaved({k: step(m) for k, m in contenders.items()}, device, repeats, warmup))
        for module in contenders.values():
            module.zero_grad(set_to_none=True)
        row["ours_over_reference"] = row["ours_s"] / row["reference_s"]
        row["speedup"] = row["reference_s"] / row["ours_s"]
        rows.append(row)
    return rows
