"""A run's state in a checkpoint: where it stands (:class:`~deepfusion.model.runs.run_setup.Progress`),
its weights, optimiser, schedule and every RNG state, written by :func:`save` and read back on resume
by :func:`restore`."""

from __future__ import annotations

import time

from deepfusion.errors import CheckpointError, RunError
from deepfusion.model.runs import distributed as ddp_util
from deepfusion.model.runs.checkpoint import capture_rng, load_model_state, restore_rng, save_checkpoint
from deepfusion.model.runs.config import config_to_dict
from deepfusion.model.runs.controls import ABORTED
from deepfusion.model.runs.divergence import check_weights
from deepfusion.model.runs.lock import holds_lock
from deepfusion.model.runs.run_setup import Progress, Setup
from deepfusion.model.runs.step import LossMeter, check_finite


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
        ckpt["position"] > spe or ckpt["step"] != ckpt["epoch"] * spe + ckpt["position"]
    ):
        raise CheckpointError(
            f"{source} holds an impossible position (step {ckpt['step']}, epoch {ckpt['epoch']}, "
            f"batch {ckpt['position']} of {spe}); the file is damaged: use prev.pt or retrain"
        )
    if ckpt["step"] > setup.total:  # evaluating it would call a run finished that its checkpoint is not
        raise RunError(
            f"{source} is at step {ckpt['step']} (epoch {ckpt['epoch']}), past the {setup.total} steps of "
            f"train.epochs={setup.cfg.train.epochs}; resume with train.epochs >= {-(-ckpt['step'] // spe)}, or "
            f"evaluate it as it stands: deepfusion eval --run {setup.folder.root}"
        )
    ranks = ckpt.get("rng_ranks")
    world = setup.dinfo.world
    for name, apply in (
        ("optimizer", setup.opt.load_state_dict),
        ("scheduler", setup.sched.load_state_dict),
        ("rng", lambda _: restore_rng(ranks[setup.dinfo.rank] if ranks and len(ranks) == world else ckpt["rng"])),
    ):
        try:
            apply(ckpt[name])
        except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:120]
            raise CheckpointError(
                f"{source}: its {name} state does not fit this run ({first}); use the run's own "
                "config.yaml, prev.pt, or retrain"
            ) from None
    return Progress(ckpt["epoch"], min(ckpt["position"], spe), ckpt["step"], ckpt["skipped"], float(ckpt["elapsed"]))


def save(setup: Setup, state: Progress, start_wall: float, meter: LossMeter) -> None:
    """Write a checkpoint of the current state (rank 0), after making sure no loss went non-finite."""
    check_finite(setup, meter)  # never overwrite a good checkpoint with poisoned weights
    check_weights(setup.model, setup.device, state.step, setup.steps_per_epoch, setup.folder)
    rng = ddp_util.gather_objects(capture_rng())  # every rank's, so a resume continues each exactly
    extra = dict(rng_ranks=rng) if setup.dinfo.active else {}
    payload = dict(
        model=setup.model.state_dict(),
        optimizer=setup.opt.state_dict(),
        scheduler=setup.sched.state_dict(),
        rng=rng[0],
        **extra,
        epoch=state.epoch,
        position=state.position,
        step=state.step,
        skipped=state.skipped,
        elapsed=time.perf_counter() - start_wall,
        config=config_to_dict(setup.cfg),
        finished=state.step >= setup.total,
    )
    if setup.dinfo.main:
        try:
            save_checkpoint(payload, setup.folder.checkpoints, clear_stale=holds_lock(setup.folder.root))
        except OSError as err:  # disk full (torch's RuntimeError arrives as OSError), folder gone
            if ABORTED.is_set():  # a second Ctrl-C inside torch's writer, not a full disk
                raise KeyboardInterrupt from None
            raise RunError(
                f"cannot write a checkpoint to {setup.folder.checkpoints} ({err.strerror or err}); any "
                f"earlier checkpoint there is intact: free space, then resume with --resume "
                f"{setup.folder}"
            ) from None
    ddp_util.barrier()  # a resume never reads a half-written checkpoint
