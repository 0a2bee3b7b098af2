"""Gathers across processes that keep gradients, and the NT-Xent loss over the gathered batch.

Gradients. Rank r's loss averages over its own anchors only, with negatives from every rank:
``L_r = mean_{i in rank r} loss_i``. One process on the concatenated batch minimises
``L = (1/R) sum_r L_r``. The backward of :func:`gather` *sums* the gradients that all ranks send to
a rank's rows, so rank s receives ``sum_r dL_r/dz_s``; DDP then *averages* the parameter
gradients over ranks, giving ``(1/R) sum_s sum_r dL_r/dz_s dz_s/dtheta = dL/dtheta``. Nothing is
multiplied or divided by the world size anywhere else (tests/model/runs/test_distributed.py checks
the equality).

Global order: rank r holds ``(V*n)`` view-major rows; the gathered ``(V*R*n)`` rows are
view-major over the concatenated batch (all first views of rank 0, rank 1, ..., then all second
views), i.e. the order one process would use.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from deepfusion.model.network.losses import nt_xent


class _Gather(torch.autograd.Function):
    """all_gather whose backward sums each rank's incoming gradient (not average, not local only)."""

    @staticmethod
    def forward(ctx, x):
        world = dist.get_world_size()
        ctx.rank, ctx.world = dist.get_rank(), world
        out = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(out, x.contiguous())
        return torch.stack(out)  # (R, *x.shape)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        if dist.get_backend() == "nccl":
            own = torch.empty_like(grad[0])
            dist.reduce_scatter_tensor(own, grad, op=dist.ReduceOp.SUM)
            return own
        grad = grad.clone()  # the incoming gradient buffer is not ours to overwrite
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)  # gloo has no reduce_scatter
        return grad[ctx.rank]


def gather(x: torch.Tensor) -> torch.Tensor:
    """``(m, ...)`` on every rank -> ``(R, m, ...)``, differentiable; ``x[None]`` without a group."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x[None]
    return _Gather.apply(x)


def gather_rows(x: torch.Tensor, views: int) -> tuple[torch.Tensor, torch.Tensor]:
    """View-major local rows ``(V*n, ...)`` -> (global view-major rows ``(V*R*n, ...)``, own row indices).

    Every rank must hold the same ``n``. The own indices place this rank's rows in the global order.
    """
    g = gather(x)  # (R, V*n, ...)
    world, m = g.shape[0], g.shape[1]
    n = m // views
    rest = g.shape[2:]
    out = g.reshape(world, views, n, *rest).transpose(0, 1).reshape(views * world * n, *rest)
    rank = dist.get_rank() if world > 1 else 0
    v = torch.arange(views, device=x.device)[:, None]
    rows = (v * world * n + rank * n + torch.arange(n, device=x.device)[None, :]).reshape(-1)
    return out, rows


class GatheredNTXent:
    """NT-Xent of this rank's anchors against the gathered batch of every rank, for fixed ids.

    ``local_ids`` are this rank's instance ids ``(V*n,)`` numbered *globally* (distinct across ranks).
    They are gathered once here, so each call gathers only the embeddings (one collective, not two).
    Without a process group a call is ``nt_xent(z, local_ids, temperature)``.
    """

    def __init__(self, local_ids: torch.Tensor, views: int = 2):
        self.views = views
        self.ids, self.rows = gather_rows(local_ids, views)

    def __call__(self, z: torch.Tensor, temperature: float) -> torch.Tensor:
        zg, _ = gather_rows(z, self.views)
        return nt_xent(zg, self.ids, temperature, rows=self.rows)


def gathered_nt_xent(z: torch.Tensor, local_ids: torch.Tensor, temperature: float, views: int = 2) -> torch.Tensor:
    """One call of :class:`GatheredNTXent` (a loop with fixed ids should build that once)."""
    return GatheredNTXent(local_ids, views)(z, temperature)
