"""The SimCLR training loop: resident data, per-step schedule, fault-tolerant checkpoints.

Each step draws a batch from a seeded per-epoch permutation (:func:`get_batch`), makes two
augmented views on the device, runs backbone + head and applies NT-Xent with instance ids
(:func:`train_step`). The loss is accumulated on the device; the host reads it only every
``train.log_every`` steps and at checkpoints (:func:`log_step`), so the GPU never waits on Python.

Faults: ``resume=True`` continues from ``checkpoints/last.pt`` exactly (same batch order,
augmentation draws and RNG states; bit-identical weights on CPU); SIGTERM and SIGINT save a
checkpoint at the next step boundary and stop; a NaN/inf loss stops the run naming the first bad
step and leaves the last good checkpoint.

Data parallel (started by ``torchrun``, see :mod:`deepfusion.model.runs.distributed`):
``train.batch_size`` is the global batch; rank r takes its equal slice of each seeded batch,
NT-Xent takes its negatives from every rank, and ``train.attend=global`` lets the head attend
across the whole batch. Rank 0 writes the config, metrics and checkpoints (with every rank's RNG
state) and evaluates; the ranks agree on a signal to stop at every step (a gloo all-reduce of one
integer) and on a NaN loss at logging steps, their only synchronisation besides DDP's. BatchNorm layers use each rank's own statistics.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from deepfusion.errors import CheckpointError, ConfigError, Interrupted, RunError
from deepfusion.model.network.collectives import GatheredNTXent
from deepfusion.model.network.forward_options import forward_options
from deepfusion.model.network.losses import nt_xent
from deepfusion.model.runs import distributed as ddp_util
from deepfusion.model.runs.checkpoint import capture_rng, load_model_state, restore_rng, save_checkpoint
from deepfusion.model.runs.config import Config, config_to_dict, save_config, validate
from deepfusion.model.runs.devices import resolve_device
from deepfusion.model.runs.eval_result import EvalResult
from deepfusion.model.runs.evaluate import evaluate_model
from deepfusion.model.runs.run_record import Run
from deepfusion.model.runs.divergence import ADVICE, check_weights, kept
from deepfusion.model.runs.layout import RunFolder, open_append, write_json
from deepfusion.model.runs.lock import holds_lock
from deepfusion.model.runs.loading import build_run_augment, load_datasets
from deepfusion.model.runs.prepare import read_record
from deepfusion.model.runs.run_folder import open_run_folder, truncate_metrics
from deepfusion.model.runs.log_tensorboard import open_log, require_backend
from deepfusion.model.runs.progress_line import Heartbeat, ProgressLine
from deepfusion.model.runs.controls import (ABORTED, check_batch, deterministic, epoch_permutation,
                                            seed_everything, stop_on_signals)


class TrainingInterrupted(Interrupted):
    """SIGTERM/SIGINT stopped the run after saving a checkpoint; exit code 128 + signal (picklable)."""


@dataclass
class Setup:
    """What every step needs, built once per run."""

    cfg: Config
    folder: RunFolder
    dinfo: ddp_util.DistInfo
    device: torch.device
    model: torch.nn.Module  # the plain model (its state is what checkpoints hold)
    fwd: torch.nn.Module  # what the step calls: the model, under DDP and/or torch.compile
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    augment: torch.nn.Module
    x_all: torch.Tensor  # the training set, resident on the device
    channels_last: bool
    loss_fn: object  # (z, temperature) -> loss, over the global batch under DDP
    steps_per_epoch: int
    total: int

    @property
    def local_batch(self) -> int:
        return self.cfg.train.batch_size // self.dinfo.world


@dataclass
class Progress:
    """Where the run stands; a checkpoint stores it and a resume starts from it."""

    epoch: int = 0
    position: int = 0  # batches of ``epoch`` already done
    step: int = 0
    skipped: int = 0  # non-finite steps skipped (train.skip_nonfinite)
    elapsed: float = 0.0  # training seconds before this process started


def train(cfg: Config, run_dir: str | Path | None = None, resume: bool = False, progress: bool = True,
          force: bool = False) -> Run | None:
    """Train the model a config describes; returns the finished run (folder, config, evaluation; see
    :mod:`deepfusion.model.runs.layout`), on every process but rank 0 under torchrun None.

    ``force`` lets a resume change keys that alter the run's trajectory (batch size, seed, data, ...).
    Under ``torchrun`` every process calls this; see the module docstring.
    """
    validate(cfg)
    require_backend(cfg.train.log)  # before any folder is made
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    dinfo, device_name = ddp_util.setup(cfg.train.device)
    clean = False
    try:
        out = _train(cfg, dinfo, resolve_device(device_name), run_dir, resume, progress, force)
        clean = True
        return out
    finally:
        if dinfo.active:
            ddp_util.teardown(clean)


def _train(cfg: Config, dinfo, device, run_dir, resume: bool, progress: bool, force: bool) -> Run | None:
    t = cfg.train
    if t.batch_size % dinfo.world:
        raise ConfigError(f"train.batch_size={t.batch_size} (the global batch) does not split evenly over "
                          f"{dinfo.world} processes; use a multiple of {dinfo.world}")
    if dinfo.active and t.skip_nonfinite:
        raise ConfigError("train.skip_nonfinite needs a per-step decision that processes would have to share; "
                          "set it to 0 under torchrun")
    with open_run_folder(cfg, run_dir, resume, dinfo, force) as (folder, ckpt):
        seed_everything(t.seed + dinfo.rank)  # rank 0 of any world size seeds as a single process
        train_ds, test_ds, record = load_datasets(cfg, read_record(folder.data) if ckpt is not None else None, force)
        check_batch(cfg, len(train_ds.y), dinfo.world)
        setup = build(cfg, folder, dinfo, device, train_ds)
        state = restore(setup, ckpt) if ckpt is not None else Progress()
        if dinfo.main:
            if ckpt is not None:
                truncate_metrics(folder.metrics, state.step)
            save_config(cfg, folder.config)
            write_json(folder.data, record.to_json())  # the statistics evaluation reuses
        start_wall = time.perf_counter() - state.elapsed
        with open_log(t.log, folder, dinfo.main, state.step) as log:
            run_epochs(setup, state, start_wall, progress, log)
            ev = finish(setup, train_ds, test_ds, state, start_wall, log) if dinfo.main else None
        ddp_util.barrier()  # the other ranks wait for rank 0's evaluation
    return Run(folder.root, cfg, ev) if ev is not None else None


def build(cfg: Config, folder: RunFolder, dinfo, device: torch.device, train_ds) -> Setup:
    """Data on the device, augmentation, model, optimiser and loss of one run."""
    from deepfusion.model.runs.factory import build_model
    from deepfusion.model.runs.optim import build_optimizer

    t = cfg.train
    images = len(train_ds.input_shape) == 3
    cuda = device.type == "cuda"
    channels_last = images and cuda and t.channels_last
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x_all = torch.as_tensor(train_ds.x).to(device)
    if images:
        x_all = x_all.contiguous(memory_format=fmt)
    augment = build_run_augment(cfg, train_ds).to(device)
    model = build_model(cfg, tuple(train_ds.input_shape)).to(device=device, memory_format=fmt)
    prepare_backbone(cfg, model, augment, x_all)
    steps_per_epoch = len(train_ds.y) // t.batch_size  # drop the last partial batch: every step sees B instances
    opt, sched = build_optimizer(cfg, model, steps_per_epoch)
    fwd = model
    if dinfo.active:
        fwd = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    fwd = torch.compile(fwd) if (t.compile and cuda) else fwd
    local = t.batch_size // dinfo.world
    ids = torch.arange(dinfo.rank * local, (dinfo.rank + 1) * local, device=device).repeat(2)  # view-major, global
    loss_fn = GatheredNTXent(ids) if dinfo.active else (lambda z, temp: nt_xent(z, ids, temp))
    return Setup(cfg, folder, dinfo, device, model, fwd, opt, sched, augment, x_all, channels_last,
                 loss_fn, steps_per_epoch, t.epochs * steps_per_epoch)


def prepare_backbone(cfg: Config, model, augment, x_all: torch.Tensor) -> None:
    """Start the backbone from another run's weights (``model.backbone_from``), and fit a fixed
    feature map (the ``pca`` backbone) on the unaugmented training inputs."""
    if cfg.model.backbone_from:
        load_backbone(model, cfg.model.backbone_from)
    fit = getattr(model.backbone, "fit", None)
    if fit is not None:
        with torch.no_grad():
            fit(torch.cat([augment.eval_view(x_all[i:i + 4096]) for i in range(0, len(x_all), 4096)]))


def load_backbone(model, run_dir: str) -> None:
    """The backbone weights of a trained run (its newest loadable checkpoint) into ``model.backbone``."""
    from deepfusion.model.runs.checkpoint import latest_checkpoint

    folder = RunFolder(run_dir)
    if not folder.checkpoints.is_dir():
        raise ConfigError(f"model.backbone_from={run_dir}: no run folder with checkpoints there; give a folder "
                          "written by deepfusion train")
    state = {k[len("backbone."):]: v for k, v in latest_checkpoint(folder.checkpoints)["model"].items()
             if k.startswith("backbone.")}
    load_model_state(model.backbone, state, source=f"the backbone of {run_dir} (model.backbone_from)")


def restore(setup: Setup, ckpt: dict) -> Progress:
    """Load a checkpoint's weights, optimiser, schedule and this rank's RNG states; its progress.

    The fields were checked when the file was read (:mod:`deepfusion.model.runs.checkpoint_fields`);
    here they are checked against the run: the progress must be a position of this run's schedule,
    and the states must fit the model and optimiser built from the config.
    """
    source = f"checkpoint in {setup.folder}"
    load_model_state(setup.model, ckpt["model"], source=source)
    spe, saved_batch = setup.steps_per_epoch, ckpt["config"].get("train", {}).get("batch_size")
    if saved_batch == setup.cfg.train.batch_size and (
            ckpt["position"] > spe or ckpt["step"] != ckpt["epoch"] * spe + ckpt["position"]):
        raise CheckpointError(f"{source} holds an impossible position (step {ckpt['step']}, epoch {ckpt['epoch']}, "
                              f"batch {ckpt['position']} of {spe}); the file is damaged: use prev.pt or retrain")
    if ckpt["step"] > setup.total:  # evaluating it would call a run finished that its checkpoint is not
        raise RunError(f"{source} is at step {ckpt['step']} (epoch {ckpt['epoch']}), past the {setup.total} steps of "
                       f"train.epochs={setup.cfg.train.epochs}; resume with train.epochs >= {-(-ckpt['step'] // spe)}, or "
                       f"evaluate it as it stands: deepfusion eval --run {setup.folder.root}")
    ranks = ckpt.get("rng_ranks")
    world = setup.dinfo.world
    for name, apply in (("optimizer", setup.opt.load_state_dict), ("scheduler", setup.sched.load_state_dict),
                        ("rng", lambda _: restore_rng(ranks[setup.dinfo.rank] if ranks and len(ranks) == world
                                                      else ckpt["rng"]))):
        try:
            apply(ckpt[name])
        except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:120]
            raise CheckpointError(f"{source}: its {name} state does not fit this run ({first}); use the run's own "
                                  "config.yaml, prev.pt, or retrain") from None
    return Progress(ckpt["epoch"], min(ckpt["position"], spe), ckpt["step"], ckpt["skipped"], float(ckpt["elapsed"]))


def get_batch(setup: Setup, perm: torch.Tensor, b: int, step: int, gen: torch.Generator) -> torch.Tensor:
    """This rank's share of batch ``b`` of the epoch, as two augmented views (view-major)."""
    B, Bl, rank, world = setup.cfg.train.batch_size, setup.local_batch, setup.dinfo.rank, setup.dinfo.world
    xb = setup.x_all[perm[b * B + rank * Bl:b * B + (rank + 1) * Bl]]
    gen.manual_seed((setup.cfg.train.seed * 1_000_003 + step + 1) * world + rank)  # draws depend on the step alone
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
        raise RunError(f"loss became NaN/inf at step {bad} (epoch {bad // setup.steps_per_epoch}); stopped and "
                       f"{kept(setup.folder)}; {ADVICE}")


def save(setup: Setup, state: Progress, start_wall: float, meter: LossMeter) -> None:
    """Write a checkpoint of the current state (rank 0), after making sure no loss went non-finite."""
    check_finite(setup, meter)  # never overwrite a good checkpoint with poisoned weights
    check_weights(setup.model, setup.device, state.step, setup.steps_per_epoch, setup.folder)
    rng = ddp_util.gather_objects(capture_rng())  # every rank's, so a resume continues each exactly
    extra = dict(rng_ranks=rng) if setup.dinfo.active else {}
    payload = dict(model=setup.model.state_dict(), optimizer=setup.opt.state_dict(),
                   scheduler=setup.sched.state_dict(), rng=rng[0], **extra,
                   epoch=state.epoch, position=state.position, step=state.step, skipped=state.skipped,
                   elapsed=time.perf_counter() - start_wall, config=config_to_dict(setup.cfg),
                   finished=state.step >= setup.total)
    if setup.dinfo.main:
        try:
            save_checkpoint(payload, setup.folder.checkpoints, clear_stale=holds_lock(setup.folder.root))
        except OSError as err:  # disk full (torch's RuntimeError arrives as OSError), folder gone
            if ABORTED.is_set():  # a second Ctrl-C inside torch's writer, not a full disk
                raise KeyboardInterrupt from None
            raise RunError(f"cannot write a checkpoint to {setup.folder.checkpoints} ({err.strerror or err}); any "
                           f"earlier checkpoint there is intact: free space, then resume with --resume "
                           f"{setup.folder}") from None
    ddp_util.barrier()  # a resume never reads a half-written checkpoint


def log_step(setup: Setup, state: Progress, meter: LossMeter, metrics, clock: dict, bar, log) -> None:
    """One metrics line: mean loss since the last line, the lr used, images and steps per second."""
    check_finite(setup, meter)
    now = time.perf_counter()
    mean = meter.mean_and_reset()
    steps_per_s = (state.step - clock["step"]) / max(now - clock["time"], 1e-9)
    rec = dict(step=state.step, epoch=state.epoch, loss=mean, lr=clock["lr"],
               images_per_s=steps_per_s * setup.cfg.train.batch_size, steps_per_s=steps_per_s,
               time=now - clock["start"])
    metrics.write(json.dumps(rec) + "\n")
    metrics.flush()
    log.step(rec)
    bar.set_postfix(loss=f"{mean:.4f}", epoch=state.epoch)
    clock.update(time=now, step=state.step)


def stop_requested(setup: Setup, state: Progress, stop: dict) -> int | None:
    """The signal to stop on; under DDP decided jointly at every step (one tiny gloo all-reduce), so
    a SIGTERM is honoured within one step, long before torchrun escalates to SIGKILL."""
    if not setup.dinfo.active:
        return stop["signum"]
    return ddp_util.max_flag(stop["signum"] or 0) or None


def run_epochs(setup: Setup, state: Progress, start_wall: float, progress: bool, log) -> None:
    """Train from ``state`` to the last epoch, logging and checkpointing on the way."""
    from tqdm.auto import tqdm

    t, n = setup.cfg.train, len(setup.x_all)
    meter, gen = LossMeter(setup.device), torch.Generator(device=setup.device)
    clock = dict(time=time.perf_counter(), step=state.step, start=start_wall, lr=0.0)
    show = progress and setup.dinfo.main and sys.stderr.isatty()  # no \r lines in logs
    bar = (tqdm(total=setup.total, initial=state.step, desc=setup.folder.name, unit="step", dynamic_ncols=True)
           if show else ProgressLine(setup.total, state.step, setup.folder.name)  # a file or pipe: plain lines
           if progress and setup.dinfo.main else tqdm(disable=True))
    setup.model.train()
    metrics_path = setup.folder.metrics if setup.dinfo.main else os.devnull
    try:
        with (open_append(metrics_path) as metrics, stop_on_signals() as stop,
              deterministic(t.deterministic and setup.device.type != "cuda"),
              forward_options(attend=t.attend, check_inputs=False)):
            while state.epoch < t.epochs:
                perm = epoch_permutation(t.seed, state.epoch, n).to(setup.device)
                for b in range(state.position, setup.steps_per_epoch):
                    views = get_batch(setup, perm, b, state.step, gen)
                    loss, ok = train_step(setup, views, skip_nonfinite=bool(t.skip_nonfinite))
                    if t.skip_nonfinite and not bool(ok):
                        state.skipped += 1
                        if state.skipped > t.skip_nonfinite:
                            meter.add(loss, ok, state.step)
                            check_finite(setup, meter)
                    else:
                        meter.add(loss, ok, state.step)
                    clock["lr"] = setup.opt.param_groups[0]["lr"]
                    setup.sched.step()
                    state.step, state.position = state.step + 1, b + 1
                    bar.update(1)
                    if state.step % t.log_every == 0 or state.step == setup.total:
                        log_step(setup, state, meter, metrics, clock, bar, log)
                    signum = stop_requested(setup, state, stop)
                    if signum is not None:
                        save(setup, state, start_wall, meter)
                        raise TrainingInterrupted(
                            f"stopped by {signal.Signals(signum).name} at step {state.step}/{setup.total}; "
                            f"checkpoint saved; resume with: deepfusion train --resume {setup.folder}", signum)
                    if t.checkpoint_every and state.step % t.checkpoint_every == 0 and b + 1 < setup.steps_per_epoch:
                        save(setup, state, start_wall, meter)
                state.epoch, state.position = state.epoch + 1, 0
                save(setup, state, start_wall, meter)
    except torch.OutOfMemoryError as err:  # a shared GPU can fill up hours into a run
        first = (str(err).strip().splitlines() or ["out of memory"])[0][:120]
        raise RunError(f"out of {setup.device.type} memory at step {state.step} ({first}); resume with --resume "
                       f"{setup.folder} once memory is free, or start a new run with a smaller train.batch_size "
                       "or model") from None
    finally:
        bar.close()


def finish(setup: Setup, train_ds, test_ds, state: Progress, start_wall: float, log) -> EvalResult:
    """Evaluate the trained model (one process) and write ``eval.json`` with the step it describes."""
    setup.model.eval()
    with Heartbeat(f"{setup.folder.name} evaluation"):  # a log shows it is alive
        result = evaluate_model(setup.model, setup.augment, train_ds, test_ds, setup.cfg.eval, setup.device,
                                setup.cfg.train.seed)
    result = result.with_training(state.step, state.step >= setup.total, time.perf_counter() - start_wall)
    result.save(setup.folder.eval)
    log.evaluation(result)
    return result
