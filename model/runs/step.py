"""One training step and its bookkeeping: the batch and its two views (:func:`get_batch`), forward,
NT-Xent, backward and update (:func:`train_step`), the loss summed on the device (:class:`LossMeter`),
the stop on a non-finite loss (:func:`check_finite`) and the metrics line (:func:`log_step`)."""

from __future__ import annotations

import json
import time
from contextlib import nullcontext

import torch

from deepfusion.errors import RunError
from deepfusion.model.runs import distributed as ddp_util
from deepfusion.model.runs.controls import stream_seed
from deepfusion.model.runs.divergence import ADVICE, kept
from deepfusion.model.runs.run_setup import Progress, Setup


def get_batch(setup: Setup, perm: torch.Tensor, b: int, step: int, gen: torch.Generator) -> torch.Tensor:
    """This rank's share of batch ``b`` of the epoch, as two augmented views (view-major)."""
    B, Bl, rank, world = setup.cfg.train.batch_size, setup.local_batch, setup.dinfo.rank, setup.dinfo.world
    xb = setup.x_all[perm[b * B + rank * Bl : b * B + (rank + 1) * Bl]]
    gen.manual_seed(stream_seed(setup.cfg.train.seed, step + 1) * world + rank)  # draws depend on the step alone
    views = setup.augment.two_views(xb, generator=gen)
    return views.contiguous(memory_format=torch.channels_last) if setup.channels_last else views


def train_step(setup: Setup, views: torch.Tensor, skip_nonfinite: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward, NT-Xent, backward and optimiser step; returns (loss, whether it is finite), on the device.

    With ``skip_nonfinite`` a non-finite loss (read on the host: one sync) is not stepped on.
    """
    cuda_amp = setup.device.type == "cuda" and setup.cfg.train.amp
    with torch.autocast("cuda", dtype=torch.bfloat16) if cuda_amp else nullcontext():
        z = setup.fwd(views)
    loss = setup.loss_fn(z.float(), setup.cfg.loss.temperature)
    ok = torch.isfinite(loss)
    setup.opt.zero_grad(set_to_none=True)
    if not (skip_nonfinite and not bool(ok)):
        loss.backward()
        setup.opt.step()
    return loss.detach(), ok


class LossMeter:
    """Loss summed on the device since the last log line, and the first non-finite step."""

    def __init__(self, device):
        self.sum = torch.zeros((), device=device)
        self.count = 0
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)

    def add(self, loss: torch.Tensor, ok: torch.Tensor, step: int) -> None:
        self.sum += torch.where(ok, loss, torch.zeros_like(loss))
        self.count += 1
        self.first_bad = torch.where((self.first_bad < 0) & ~ok, step, self.first_bad)

    def mean_and_reset(self) -> float:
        mean = float(ddp_util.all_reduce_mean(self.sum.clone()).item()) / max(1, self.count)
        self.sum.zero_()
        self.count = 0
        return mean


def check_finite(setup: Setup, meter: LossMeter) -> None:
    """Stop with a one-line error if any rank saw a non-finite loss since the run began."""
    bad = int(ddp_util.all_reduce_max(meter.first_bad.clone()).item())
    if bad >= 0:
        raise RunError(
            f"loss became NaN/inf at step {bad} (epoch {bad // setup.steps_per_epoch}); stopped and "
            f"{kept(setup.folder)}; {ADVICE}"
        )


def log_step(setup: Setup, state: Progress, meter: LossMeter, metrics, clock: dict, bar, log) -> None:
    """One metrics line: mean loss since the last line, the lr used, images and steps per second."""
    check_finite(setup, meter)
    now = time.perf_counter()
    mean = meter.mean_and_reset()
    steps_per_s = (state.step - clock["step"]) / max(now - clock["time"], 1e-9)
    rec = dict(
        step=state.step,
        epoch=state.epoch,
        loss=mean,
        lr=clock["lr"],
        images_per_s=steps_per_s * setup.cfg.train.batch_size,
        steps_per_s=steps_per_s,
        time=now - clock["start"],
    )
    metrics.write(json.dumps(rec) + "\n")
    metrics.flush()
    log.step(rec)
    bar.set_postfix(loss=f"{mean:.4f}", epoch=state.epoch)
    clock.update(time=now, step=state.step)
