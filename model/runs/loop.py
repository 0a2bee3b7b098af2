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
integer) and on a NaN loss at logging steps, their only synchronisation besides DDP's. BatchNorm
layers use each rank's own statistics.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from deepfusion.errors import ConfigError, Interrupted, RunError, first_line
from deepfusion.model.network.forward_options import forward_options
from deepfusion.model.runs import distributed as ddp_util
from deepfusion.model.runs.batch import check_batch
from deepfusion.model.runs.config import Config, save_config
from deepfusion.model.runs.controls import deterministic, epoch_permutation, seed_everything, stop_on_signals
from deepfusion.model.runs.devices import resolve_device
from deepfusion.model.runs.eval_result import EvalResult
from deepfusion.model.runs.evaluate import evaluate_model
from deepfusion.model.runs.layout import open_append, write_json
from deepfusion.model.runs.loading import load_datasets
from deepfusion.model.runs.log_tensorboard import open_log, require_backend
from deepfusion.model.runs.prepare import read_record
from deepfusion.model.runs.progress_line import Heartbeat, ProgressLine
from deepfusion.model.runs.run_folder import open_run_folder, truncate_metrics
from deepfusion.model.runs.run_record import Run
from deepfusion.model.runs.run_setup import Progress, Setup, build
from deepfusion.model.runs.run_state import restore, save
from deepfusion.model.runs.step import LossMeter, check_finite, get_batch, log_step, train_step


class TrainingInterrupted(Interrupted):
    """SIGTERM/SIGINT stopped the run after saving a checkpoint; exit code 128 + signal (picklable)."""


def train(
    cfg: Config, run_dir: str | Path | None = None, resume: bool = False, progress: bool = True, force: bool = False
) -> Run | None:
    """Train the model a config describes; returns the finished run (folder, config, evaluation; see
    :mod:`deepfusion.model.runs.layout`), on every process but rank 0 under torchrun None.

    ``cfg`` is a validated config, as :func:`~deepfusion.model.runs.config.load_config`, ``run_config`` and
    ``RunSpec.config`` give (a config changed by hand goes through ``validate`` first); it is not
    validated again here. ``force`` lets a resume change keys that alter the run's trajectory (batch
    size, seed, data, ...). Under ``torchrun`` every process calls this; see the module docstring.
    """
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
    if dinfo.active and t.skip_nonfinite:
        raise ConfigError(
            "train.skip_nonfinite needs a per-step decision that processes would have to share; "
            "set it to 0 under torchrun"
        )
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


def stop_requested(setup: Setup, state: Progress, stop: dict) -> int | None:
    """The signal to stop on; under DDP decided jointly at every step (one tiny gloo all-reduce), so
    a SIGTERM is honoured within one step, long before torchrun escalates to SIGKILL."""
    if not setup.dinfo.active:
        return stop["signum"]
    return ddp_util.max_flag(stop["signum"] or 0) or None


def progress_bar(setup: Setup, state: Progress, progress: bool):
    """A tqdm bar on a terminal, a plain ``ProgressLine`` on a file or pipe (no \\r lines in logs), none
    off the main process or without ``progress``."""
    show = progress and setup.dinfo.main and sys.stderr.isatty()
    return (
        tqdm(total=setup.total, initial=state.step, desc=setup.folder.name, unit="step", dynamic_ncols=True)
        if show
        else ProgressLine(setup.total, state.step, setup.folder.name)
        if progress and setup.dinfo.main
        else tqdm(disable=True)
    )


def run_epochs(setup: Setup, state: Progress, start_wall: float, progress: bool, log) -> None:
    """Train from ``state`` to the last epoch, logging and checkpointing on the way."""
    t, n = setup.cfg.train, len(setup.x_all)
    meter, gen = LossMeter(setup.device), torch.Generator(device=setup.device)
    clock = dict(time=time.perf_counter(), step=state.step, start=start_wall, lr=0.0)
    bar = progress_bar(setup, state, progress)
    setup.model.train()
    metrics_path = setup.folder.metrics if setup.dinfo.main else os.devnull
    try:
        with (
            open_append(metrics_path) as metrics,
            stop_on_signals() as stop,
            deterministic(t.deterministic and setup.device.type != "cuda"),
            forward_options(attend=t.attend, check_inputs=False),
        ):
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
                            f"checkpoint saved; resume with: deepfusion train --resume {setup.folder}",
                            signum,
                        )
                    if t.checkpoint_every and state.step % t.checkpoint_every == 0 and b + 1 < setup.steps_per_epoch:
                        save(setup, state, start_wall, meter)
                state.epoch, state.position = state.epoch + 1, 0
                save(setup, state, start_wall, meter)
    except torch.OutOfMemoryError as err:  # a shared GPU can fill up hours into a run
        first = first_line(err, default="out of memory")
        raise RunError(
            f"out of {setup.device.type} memory at step {state.step} ({first}); resume with --resume "
            f"{setup.folder} once memory is free, or start a new run with a smaller train.batch_size "
            "or model"
        ) from None
    finally:
        bar.close()


def finish(setup: Setup, train_ds, test_ds, state: Progress, start_wall: float, log) -> EvalResult:
    """Evaluate the trained model (one process) and write ``eval.json`` with the step it describes."""
    setup.model.eval()
    with Heartbeat(f"{setup.folder.name} evaluation"):  # a log shows it is alive
        result = evaluate_model(
            setup.model, setup.augment, train_ds, test_ds, setup.cfg.eval, setup.device, setup.cfg.train.seed
        )
    result = result.with_training(state.step, state.step >= setup.total, time.perf_counter() - start_wall)
    result.save(setup.folder.eval)
    log.evaluation(result)
    return result
