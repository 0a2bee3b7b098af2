"""Data-parallel training across processes: process group, gathers with gradients, gathered NT-Xent.

Launch with ``torchrun``: it sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``, and :func:`setup`
joins the process group (NCCL on CUDA, gloo on CPU). ``train.batch_size`` stays the *global*
batch: each step every rank takes its own equal slice of the same seeded batch, so R processes
see exactly the batches one process would.

Gradients. Rank r's loss averages over its own anchors only, with negatives from every rank:
``L_r = mean_{i in rank r} loss_i``. One process on the concatenated batch minimises
``L = (1/R) sum_r L_r``. The backward of :func:`gather` *sums* the gradients that all ranks send to
a rank's rows, so rank s receives ``sum_r dL_r/dz_s``; DDP then *averages* the parameter
gradients over ranks, giving ``(1/R) sum_s sum_r dL_r/dz_s dz_s/dtheta = dL/dtheta``. Nothing is
multiplied or divided by the world size anywhere else (tests/model/test_distributed.py checks the
equality).

Global order: rank r holds ``(V*n)`` view-major rows; the gathered ``(V*R*n)`` rows are
view-major over the concatenated batch (all first views of rank 0, rank 1, ..., then all second
views), i.e. the order one process would use.
"""

from __future__ import annotations

import gc
import os
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from deepfusion.errors import RunError

ATTEND = ("local", "global")


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def launched() -> bool:
    """True when started by torchrun (or any launcher that sets WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device_name: str) -> tuple[DistInfo, str]:
    """Join the process group if launched by torchrun; returns (info, device name for this rank).

    On CUDA each rank takes ``cuda:LOCAL_RANK``; ``train.device=cpu`` (or no CUDA) uses gloo.
    """
    if not launched():
        return DistInfo(), device_name
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device_name != "cpu" and torch.cuda.is_available()
    if device_name.startswith("cuda") and not torch.cuda.is_available():
        raise RunError(f"train.device={device_name} under torchrun but no CUDA device is available; use train.device=cpu")
    if cuda:
        if local >= torch.cuda.device_count():
            raise RunError(f"LOCAL_RANK={local} but only {torch.cuda.device_count()} CUDA device(s); "
                           "start torchrun with --nproc-per-node at most the number of GPUs")
        torch.cuda.set_device(local)
        device_name = f"cuda:{local}"
    else:
        device_name = "cpu"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return DistInfo(rank, world, local), device_name


def teardown(clean: bool = True) -> None:
    """Leave the process group so that no rank's exit races another's.

    DDP's reducer sits in reference cycles, so without a collection the gloo group lives until
    interpreter exit, where its destructor can run while the peer has already closed its sockets
    ("terminate called without an active exception", SIGABRT). Collect those cycles first, then
    meet at a barrier so both ranks destroy the group while the other is still there. After an
    error (``clean=False``) the peers may be stuck in another collective, so skip the barrier and let
    the launcher stop them.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    gc.collect()
    try:
        if clean and dist.get_world_size() > 1:
            dist.barrier()
    finally:
        dist.destroy_process_group()
        gc.collect()


def info() -> DistInfo:
    """Rank and world of the current process group (world 1 when none)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistInfo()


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
        from deepfusion.model.network.losses import nt_xent

        zg, _ = gather_rows(z, self.views)
        return nt_xent(zg, self.ids, temperature, rows=self.rows)


def gathered_nt_xent(z: torch.Tensor, local_ids: torch.Tensor, temperature: float, views: int = 2) -> torch.Tensor:
    """One call of :class:`GatheredNTXent` (a loop with fixed ids should build that once)."""
    return GatheredNTXent(local_ids, views)(z, temperature)


def set_attend(model: torch.nn.Module, attend: str) -> None:
    """Set the attention scope of every batch attention in ``model``: this rank's batch or the global one."""
    from deepfusion.model.network.attention import BatchAttention

    if attend not in ATTEND:
        from deepfusion.errors import ConfigError

        raise ConfigError(f"train.attend={attend!r} is not valid; choose from {', '.join(ATTEND)}")
    for module in model.modules():
        if isinstance(module, BatchAttention):
            module.attend = attend


@contextmanager
def attending(model: torch.nn.Module, attend: str):
    """Temporarily set the attention scope (``global`` only makes sense inside a training step)."""
    from deepfusion.model.network.attention import BatchAttention

    old = {m: m.attend for m in model.modules() if isinstance(m, BatchAttention)}
    set_attend(model, attend)
    try:
        yield
    finally:
        for m, a in old.items():
            m.attend = a


def barrier() -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def all_reduce_max(x: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(x, op=dist.ReduceOp.MAX)
    return x


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        x /= dist.get_world_size()
    return x


def gather_objects(obj) -> list:
    """Every rank's ``obj`` (a list of one item without a group)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
