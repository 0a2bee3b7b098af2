"""Data-parallel training across processes: the process group and the loop's few collectives.

Launch with ``torchrun``: it sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``, and :func:`setup`
joins the process group (NCCL on CUDA, gloo on CPU). ``train.batch_size`` stays the *global*
batch: each step every rank takes its own equal slice of the same seeded batch, so R processes
see exactly the batches one process would. The differentiable gathers that the loss and the
attention use are in :mod:`deepfusion.model.network.collectives`.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from deepfusion.errors import RunError


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
        raise RunError(
            f"train.device={device_name} under torchrun but no CUDA device is available; use train.device=cpu"
        )
    if cuda:
        if local >= torch.cuda.device_count():
            raise RunError(
                f"LOCAL_RANK={local} but only {torch.cuda.device_count()} CUDA device(s); "
                "start torchrun with --nproc-per-node at most the number of GPUs"
            )
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
        global _FLAGS
        _FLAGS = None
        dist.destroy_process_group()
        gc.collect()


def info() -> DistInfo:
    """Rank and world of the current process group (world 1 when none)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistInfo()


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


_FLAGS = None  # a gloo group for host-side flags, so that deciding to stop never waits on a GPU


def max_flag(value: int) -> int:
    """The largest ``value`` over the ranks (``value`` itself without a group), through a CPU (gloo)
    group: cheap enough for every step, and no device synchronisation under NCCL."""
    global _FLAGS
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    if _FLAGS is None:  # every rank comes here at the same step, so the group is made collectively
        _FLAGS = dist.group.WORLD if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")
    flag = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=_FLAGS)
    return int(flag.item())


def gather_objects(obj) -> list:
    """Every rank's ``obj`` (a list of one item without a group)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
