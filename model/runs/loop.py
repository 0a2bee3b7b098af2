"""The SimCLR training loop: resident data, per-step schedule, fault-tolerant checkpoints.

Each step draws a batch from a seeded per-epoch permutation, makes two augmented
views on the device, runs backbone + head, and applies NT-Xent with instance ids.
The loss is accumulated on the device; the host reads it only every
``train.log_every`` steps and at checkpoints, so the GPU never waits on Python.

Faults: ``resume=True`` continues from ``checkpoints/last.pt`` exactly (same batch
order, augmentation draws and RNG states; bit-identical weights on CPU); SIGTERM
and SIGINT save a checkpoint at the next step boundary and stop; a NaN/inf loss
stops the run naming the first bad step and leaves the last good checkpoint.

Data parallel (started by ``torchrun``, see :mod:`model.distributed`): ``train.batch_size`` is
the global batch; rank r takes its equal slice of each seeded batch, NT-Xent takes its negatives
from every rank, and ``train.attend=global`` lets the head attend across the whole batch. Rank 0
writes the config, metrics and checkpoints (with every rank's RNG state) and evaluates; the ranks
agree on stopping (signals, NaN) at logging steps, their only synchronisation besides DDP's.
BatchNorm layers use each rank's own statistics.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch

from deepfusion.errors import ConfigError, RunError
from deepfusion.model.runs.checkpoint import capture_rng, check_config_matches, latest_checkpoint, load_model_state, restore_rng, save_checkpoint
from deepfusion.model.runs.config import Config, config_to_dict, save_config, validate
from deepfusion.model.runs.devices import resolve_device
from deepfusion.model.runs import distributed as ddp_util
from deepfusion.model.network.losses import nt_xent
from deepfusion.model.runs.optim import build_optimizer
from deepfusion.model.runs.folder import (CHECKPOINT_DIR, CONFIG_FILE, EVAL_FILE, METRICS_FILE, build_run_augment, default_run_dir,
                       load_datasets)


class TrainingInterrupted(RunError):
    """SIGTERM/SIGINT stopped the run after saving a checkpoint; exit code 128 + signal."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _check_writable(run_dir: Path) -> None:
    try:
        (run_dir / CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise RunError(f"cannot write to run folder {run_dir} ({err.strerror}); set train.out_dir or --out to a writable folder") from None


def _check_batch(cfg: Config, n_train: int, world: int = 1) -> None:
    from deepfusion.model.network.attention import MIN_INSTANCES

    need = max(2, MIN_INSTANCES.get(cfg.model.scope, 1) if cfg.model.head == "transformer" else 2)
    if cfg.train.batch_size < need:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} is too small for model.scope={cfg.model.scope}; use at least {need}")
    seen = cfg.train.batch_size // world  # with train.attend=local the head sees one process's share
    if world > 1 and cfg.train.attend == "local" and seen < need:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} gives each of {world} processes {seen} samples, too few "
                          f"for model.scope={cfg.model.scope} with train.attend=local; use at least {need * world} "
                          "or train.attend=global")
    if cfg.train.batch_size > n_train:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} exceeds the {n_train} training samples; lower it")


@contextmanager
def _stop_on_signals():
    """Record SIGTERM/SIGINT in a flag checked at step boundaries; a second SIGINT aborts at once."""
    flag = {"signum": None}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag["signum"] is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag["signum"] = signum

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextmanager
def _deterministic(on: bool):
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(on)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def _permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def _evaluate(model, augment, train_ds, test_ds, cfg: Config, device) -> dict:
    from deepfusion.model.runs.evaluate import evaluate_model

    return evaluate_model(model, augment, train_ds, test_ds, cfg.eval, device, cfg.train.seed)


def train(cfg: Config, run_dir: str | Path | None = None, resume: bool = False, progress: bool = True) -> Path:
    """Train the model a config describes; returns the run folder (see :mod:`model.run`).

    Under ``torchrun`` every process calls this; see the module docstring.
    """
    validate(cfg)
    t = cfg.train
    if t.threads:
        torch.set_num_threads(t.threads)
    dinfo, device_name = ddp_util.setup(t.device)
    clean = False
    try:
        out = _train(cfg, dinfo, resolve_device(device_name), run_dir, resume, progress)
        clean = True
        return out
    finally:
        if dinfo.active:
            ddp_util.teardown(clean)


def _train(cfg: Config, dinfo, device, run_dir, resume: bool, progress: bool) -> Path:
    from tqdm.auto import tqdm
    from deepfusion.model.network.factory import build_model

    t = cfg.train
    rank, world = dinfo.rank, dinfo.world
    if t.batch_size % world:
        raise ConfigError(f"train.batch_size={t.batch_size} (the global batch) does not split evenly over {world} "
                          f"processes; use a multiple of {world}")
    if world > 1 and t.skip_nonfinite:
        raise ConfigError("train.skip_nonfinite needs a per-step decision that processes would have to share; "
                          "set it to 0 under torchrun")
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(cfg)
    ckpt_dir = run_dir / CHECKPOINT_DIR
    if resume:
        if not ckpt_dir.is_dir():
            raise RunError(f"cannot resume: {run_dir} has no {CHECKPOINT_DIR}/ folder; start a new run without --resume")
        ckpt = latest_checkpoint(ckpt_dir)
        check_config_matches(ckpt["config"], config_to_dict(cfg), source=f"checkpoint in {run_dir}",
                             sections=("data", "model", "optim", "loss"))
    elif (ckpt_dir / "last.pt").exists():
        raise RunError(f"{run_dir} already holds a run; continue it with --resume {run_dir} or set train.name to a new name")
    if dinfo.main:
        _check_writable(run_dir)
    ddp_util.barrier()  # no rank sees the folder before it exists

    seed_everything(t.seed + rank)  # rank 0 of any world size seeds as a single process
    train_ds, test_ds = load_datasets(cfg)
    _check_batch(cfg, len(train_ds.y), world)
    images = len(train_ds.input_shape) == 3
    cuda = device.type == "cuda"
    fmt = torch.channels_last if (images and cuda and t.channels_last) else torch.contiguous_format
    x_all = torch.as_tensor(train_ds.x).to(device)
    if images:
        x_all = x_all.contiguous(memory_format=fmt)
    augment = build_run_augment(cfg, train_ds).to(device)
    model = build_model(cfg, tuple(train_ds.input_shape)).to(device=device, memory_format=fmt)
    head = getattr(model, "head", None)
    if head is not None and hasattr(head, "check_finite"):
        head.check_finite = False  # its check syncs every step; the loop tracks non-finite losses itself

    n, B = len(train_ds.y), t.batch_size
    Bl = B // world  # this rank's share of every batch
    steps_per_epoch = n // B  # drop the last partial batch: every step sees B instances
    total = t.epochs * steps_per_epoch
    opt, sched = build_optimizer(cfg, model, steps_per_epoch)
    scaler = torch.amp.GradScaler(device.type, enabled=False)  # bf16 needs no loss scaling; kept for fp16 use
    epoch, pos, step, skipped, elapsed = 0, 0, 0, 0, 0.0
    if resume:
        load_model_state(model, ckpt["model"], source=f"checkpoint in {run_dir}")
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        ranks = ckpt.get("rng_ranks")
        restore_rng(ranks[rank] if ranks and len(ranks) == world else ckpt["rng"])
        epoch, pos, step = ckpt["epoch"], ckpt["position"], ckpt["step"]
        skipped, elapsed = ckpt["skipped"], ckpt["elapsed"]
        if dinfo.main:
            _truncate_metrics(run_dir / METRICS_FILE, step)
    if dinfo.main:
        save_config(cfg, run_dir / CONFIG_FILE)

    ddp_util.set_attend(model, t.attend)
    fwd = model
    if dinfo.active:
        fwd = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    fwd = torch.compile(fwd) if (t.compile and cuda) else fwd
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if (cuda and t.amp) else nullcontext()
    ids = torch.arange(rank * Bl, (rank + 1) * Bl, device=device).repeat(2)  # view-major, numbered globally
    loss_fn = ddp_util.GatheredNTXent(ids) if dinfo.active else (lambda z, temp: nt_xent(z, ids, temp))
    gen = torch.Generator(device=device)
    acc = torch.zeros((), device=device)  # loss summed since the last log line
    first_bad = torch.full((), -1, dtype=torch.long, device=device)
    acc_steps, last_log, last_log_step = 0, time.perf_counter(), step
    start_wall = time.perf_counter() - elapsed
    metrics = open(run_dir / METRICS_FILE if dinfo.main else os.devnull, "a")

    def state(ep: int, p: int) -> dict:
        rng = ddp_util.gather_objects(capture_rng())  # every rank's, so a resume continues each exactly
        extra = dict(rng_ranks=rng) if dinfo.active else {}
        return dict(model=model.state_dict(), optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                    scaler=scaler.state_dict(), rng=rng[0], **extra, epoch=ep, position=p, step=step,
                    skipped=skipped, elapsed=time.perf_counter() - start_wall, config=config_to_dict(cfg),
                    finished=step >= total)

    def check_finite() -> None:
        bad = int(ddp_util.all_reduce_max(first_bad.clone()).item())
        if bad >= 0:
            kept = (f"kept the last good checkpoint in {ckpt_dir}" if (ckpt_dir / "last.pt").exists()
                    else "no checkpoint had been written yet")
            raise RunError(
                f"loss became NaN/inf at step {bad} (epoch {bad // steps_per_epoch}); stopped and {kept}; "
                "lower optim.lr, raise loss.temperature, or allow train.skip_nonfinite=K"
            )

    def checkpoint(ep: int, p: int) -> None:
        check_finite()  # never overwrite a good checkpoint with poisoned weights
        s = state(ep, p)
        if dinfo.main:
            try:
                save_checkpoint(s, ckpt_dir)
            except OSError as err:  # disk full, folder gone: the earlier checkpoint is untouched
                raise RunError(f"cannot write a checkpoint to {ckpt_dir} ({err.strerror or err}); any earlier "
                               f"checkpoint there is intact: free space, then resume with --resume {run_dir}") from None
        ddp_util.barrier()  # a resume never reads a half-written checkpoint

    def stop_requested() -> int | None:
        """The signal to stop on; under DDP decided jointly, and only at logging steps."""
        if not dinfo.active:
            return stop["signum"]
        if step % t.log_every and step != total:
            return None
        flag = torch.tensor(stop["signum"] or 0, device=device)
        flag = int(ddp_util.all_reduce_max(flag).item())
        return flag or None

    bar = tqdm(total=total, initial=step, disable=not (progress and dinfo.main), desc=run_dir.name, unit="step", dynamic_ncols=True)
    model.train()
    try:
        with _stop_on_signals() as stop, _deterministic(t.deterministic and not cuda):
            while epoch < t.epochs:
                perm = _permutation(t.seed, epoch, n).to(device)
                for b in range(pos, steps_per_epoch):
                    xb = x_all[perm[b * B + rank * Bl:b * B + (rank + 1) * Bl]]
                    # augmentation draws depend on the step (and rank) alone
                    gen.manual_seed((t.seed * 1_000_003 + step + 1) * world + rank)
                    views = augment.two_views(xb, generator=gen)
                    if images and fmt is torch.channels_last:
                        views = views.contiguous(memory_format=fmt)
                    with autocast:
                        z = fwd(views)
                    loss = loss_fn(z.float(), cfg.loss.temperature)
                    ok = torch.isfinite(loss)
                    if t.skip_nonfinite and not bool(ok):  # opt-in per-step sync
                        skipped += 1
                        if skipped > t.skip_nonfinite:
                            first_bad.fill_(step)
                            check_finite()
                        opt.zero_grad(set_to_none=True)
                    else:
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
                        acc += loss.detach()
                        acc_steps += 1
                        first_bad = torch.where((first_bad < 0) & ~ok, step, first_bad)
                    lr_used = opt.param_groups[0]["lr"]
                    sched.step()
                    step += 1
                    bar.update(1)
                    if step % t.log_every == 0 or step == total:
                        check_finite()
                        now = time.perf_counter()
                        mean = float(ddp_util.all_reduce_mean(acc.clone()).item()) / max(1, acc_steps)
                        rec = dict(step=step, epoch=epoch, loss=mean, lr=lr_used,
                                   images_per_s=(step - last_log_step) * B / max(now - last_log, 1e-9),
                                   time=now - start_wall)
                        metrics.write(json.dumps(rec) + "\n")
                        metrics.flush()
                        bar.set_postfix(loss=f"{mean:.4f}", epoch=epoch)
                        acc.zero_()
                        acc_steps, last_log, last_log_step = 0, now, step
                    signum = stop_requested()
                    if signum is not None:
                        checkpoint(epoch, b + 1)
                        name = signal.Signals(signum).name
                        raise TrainingInterrupted(
                            f"stopped by {name} at step {step}/{total}; checkpoint saved; "
                            f"resume with: deepfusion train --resume {run_dir}", signum)
                    if t.checkpoint_every and step % t.checkpoint_every == 0 and b + 1 < steps_per_epoch:
                        checkpoint(epoch, b + 1)
                epoch, pos = epoch + 1, 0
                checkpoint(epoch, 0)
    except torch.OutOfMemoryError as err:  # a shared GPU can fill up hours into a run
        first = (str(err).strip().splitlines() or ["out of memory"])[0][:120]
        raise RunError(f"out of {device.type} memory at step {step} ({first}); resume with --resume {run_dir} once "
                       "memory is free, or start a new run with a smaller train.batch_size or model") from None
    finally:
        bar.close()
        metrics.close()
        if head is not None and hasattr(head, "check_finite"):
            head.check_finite = True
        ddp_util.set_attend(model, "local")  # evaluation runs in one process

    if not dinfo.main:
        ddp_util.barrier()  # wait for rank 0's evaluation
        return run_dir
    model.eval()
    results = _evaluate(model, augment, train_ds, test_ds, cfg, device)
    results = dict(results, train_steps=step, train_wall_s=time.perf_counter() - start_wall)
    (run_dir / EVAL_FILE).write_text(json.dumps(results, indent=2, default=_json_default) + "\n")
    ddp_util.barrier()
    return run_dir


def _json_default(obj):
    # json calls this only for objects it cannot encode; floats (inf and NaN included) never get here
    if isinstance(obj, (np.generic, torch.Tensor)):
        return obj.item()
    return str(obj)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines logged after the checkpoint being resumed (they will be logged again)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except json.JSONDecodeError:  # a line cut by a crash
            continue
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(l + "\n" for l in keep))
    os.replace(tmp, path)
