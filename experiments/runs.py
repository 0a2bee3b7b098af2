"""The one way to get a finished run: a spec (preset + overrides) or a config -> the run cache -> training.

A run is identified by the hash of its resolved config (``model.runs.config.config_hash``), so a
changed preset, override or default gives a new key and a new folder, ``<root>/<slug>-<key>``, while
an unchanged config reuses the finished run. A run counts as finished when its newest loadable
checkpoint says so (its ``finished`` flag), was trained with the config its folder is named for, and
its ``eval.json`` describes that checkpoint's step; a run stopped half-way (even one evaluated by
``deepfusion eval``) is resumed, and a start that died before its first checkpoint is begun again.
Each key is trained under its run folder's lock, so two processes on one root never train the same
run at once: the second stops with an error naming the first one's process.

:func:`get_run` returns a :class:`~deepfusion.model.runs.run_record.Run` (folder, config and typed
evaluation); :func:`run_all` does so for a list of specs, in order, and :func:`prefetch` trains the
missing ones first, several processes at a time (:mod:`deepfusion.experiments.pool`).

Run folders are named by :mod:`deepfusion.model.runs.run_name`, the one scheme ``deepfusion train``
uses too: ``train`` without ``--resume`` gets its run here, so the same command run again shows the
finished run's evaluation instead of training it twice, and continues a run that was stopped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from deepfusion.errors import CheckpointError, ConfigError, DataError, Interrupted, RunError
from deepfusion.experiments.pool import interrupted, run_jobs
from deepfusion.model.runs import run_name
from deepfusion.model.runs.checkpoint import STALE, config_diffs, latest_checkpoint
from deepfusion.model.runs.config import OUTPUT_KEYS, SECTIONS, Config, config_hash, config_to_dict, load_config
from deepfusion.model.runs.data_source import fingerprint, locate
from deepfusion.model.runs.eval_result import EvalResult
from deepfusion.model.runs.layout import RunFolder, write_json
from deepfusion.model.runs.loading import with_legacy
from deepfusion.model.runs.lock import folder_lock
from deepfusion.model.runs.loop import train
from deepfusion.model.runs.prepare import read_record
from deepfusion.model.runs.run_folder import (
    BEFORE_FIRST_CHECKPOINT,
    TRAJECTORY_KEYS,
    TRAJECTORY_SECTIONS,
    check_plain,
    make_folder,
    undo_start,
)
from deepfusion.model.runs.run_name import default_run_dir, run_dir_for, run_key
from deepfusion.model.runs.run_record import Run

CACHE_FILE = "cache.json"  # the key, config hash, salt and cache version a cached folder was made for


@dataclass(frozen=True)
class RunSpec:
    """A run named by a preset and ``key=value`` overrides, so captions can print what was trained."""

    preset: str
    overrides: tuple[str, ...] = ()

    def with_overrides(self, *more: str) -> "RunSpec":
        # Later overrides win; drop earlier ones for the same key so the printed command stays clean.
        keys = {m.split("=", 1)[0] for m in more}
        kept = tuple(o for o in self.overrides if o.split("=", 1)[0] not in keys)
        return RunSpec(self.preset, kept + tuple(more))

    def config(self) -> Config:
        return load_config(self.preset, list(self.overrides))

    def describe(self) -> str:
        return " ".join([self.preset, *self.overrides])


def seed_specs(spec: RunSpec, seeds: int | Sequence[int]) -> list[RunSpec]:
    """``spec`` with ``train.seed`` = 0 .. seeds-1, or each seed of a sequence."""
    return [spec.with_overrides(f"train.seed={s}") for s in (range(seeds) if isinstance(seeds, int) else seeds)]


@dataclass(frozen=True)
class RunResult:
    """A spec and the finished run it got."""

    spec: RunSpec
    run: Run

    @property
    def run_dir(self) -> Path:
        return self.run.run_dir

    @property
    def eval(self) -> EvalResult:
        return self.run.eval

    @property
    def config_hash(self) -> str:
        return config_hash(self.run.cfg)

    def describe(self) -> str:
        return f"{self.spec.describe()}  (config {self.config_hash})"


# ---------------------------------------------------------------- what counts as finished
def config_mismatch(saved: dict, cfg: Config) -> list[str]:
    """``section.key`` names where a checkpoint's resolved config differs from ``cfg`` in what the
    cache key covers (output keys such as the folder and log interval aside): a folder's name says
    which config it was made for, its checkpoint what it was trained with (a ``--resume`` to more
    epochs, an edited ``config.yaml``)."""
    diffs = config_diffs(
        with_legacy(saved, cfg), config_to_dict(cfg), tuple(SECTIONS), defaults=config_to_dict(Config())
    )
    return [d for d in diffs if tuple(d.split(".", 1)) not in OUTPUT_KEYS]


def finished_eval(run_dir: str | Path, cfg: Config | None = None) -> EvalResult | None:
    """The evaluation of a finished run in ``run_dir`` (see :func:`is_finished`), None when it is not one."""
    folder = RunFolder(run_dir)
    if not folder.eval.is_file():
        return None
    try:
        ev = EvalResult.load(folder.eval)
        ckpt = latest_checkpoint(folder.checkpoints, quiet=True, mmap=True)  # maps the tensors, reads the flags
    except (OSError, ValueError, CheckpointError):  # RunError, DataError and CheckpointError are ValueErrors
        return None
    if cfg is not None and config_mismatch(ckpt["config"], cfg):
        return None
    return ev if bool(ckpt["finished"]) and ev.step == ckpt["step"] else None


def is_finished(run_dir: str | Path, cfg: Config | None = None) -> bool:
    """Whether the run's newest loadable checkpoint is finished and ``eval.json`` describes its step;
    with ``cfg``, also whether that checkpoint was trained with ``cfg`` (:func:`config_mismatch`)."""
    return finished_eval(run_dir, cfg) is not None


def _check_trained_as_named(run_dir: Path, cfg: Config, cache: bool) -> None:
    """Refuse a run folder whose checkpoint was trained with another config than the one asked for."""
    try:
        saved = latest_checkpoint(RunFolder(run_dir).checkpoints, quiet=True, mmap=True)["config"]
    except CheckpointError:  # none yet, or unreadable: training decides
        return
    diffs = config_mismatch(saved, cfg)
    if not diffs:
        return
    if cache:
        fix = "move the folder away to have it trained again as configured"
    elif any(_alters_trajectory(d) for d in diffs):
        fix = "set train.name (or --out) to a new place, or move the folder away, to train these settings"
    else:  # e.g. more epochs, or other evaluation settings: a resume may change those
        fix = (
            f"continue it with `deepfusion train --resume {run_dir}` and those overrides (more epochs, other "
            "evaluation settings), or set train.name to train these settings apart"
        )
    raise RunError(
        f"{run_dir} holds a run trained with other settings than these ({', '.join(diffs[:4])} differ); {fix}"
    )


def _alters_trajectory(key: str) -> bool:
    section, name = key.split(".", 1)
    return section in TRAJECTORY_SECTIONS or (section, name.split(".")[0]) in TRAJECTORY_KEYS


def _check_same_data(run_dir: Path, cfg: Config) -> None:
    """Refuse a finished run whose data file (``data.root``) changed since it was trained: its
    evaluation would be shown for data it never saw."""
    if cfg.data.root is None:
        return
    record = read_record(RunFolder(run_dir).data)
    recorded = record.source if record is not None else None
    current = fingerprint(cfg.data.root, locate(cfg.data.root, recorded))
    if recorded is None or current is None or recorded.same_content(current):
        return
    raise DataError(
        f"the data at {current.path} is not what the finished run in {run_dir} was trained on: then "
        f"{recorded.describe()}, now {current.describe()}; put the original data back, or set train.name (or "
        "move the folder away) to train on this data"
    )


def _clear_unfinished_start(folder: RunFolder) -> None:
    """Remove what a training start leaves before its first checkpoint, so the key is begun again."""
    for name in (*BEFORE_FIRST_CHECKPOINT, folder.eval.name, CACHE_FILE):
        (folder.root / name).unlink(missing_ok=True)
    if folder.checkpoints.is_dir():
        for pattern in STALE:
            for stale in folder.checkpoints.glob(pattern):
                stale.unlink()
        try:
            folder.checkpoints.rmdir()  # only if empty
        except OSError:
            pass


def _write_cache_record(run_dir: Path, cfg: Config, salt: str) -> None:
    record = {"key": run_key(cfg, salt), "config_hash": config_hash(cfg), "salt": salt}
    write_json(run_dir / CACHE_FILE, {**record, "cache_version": run_name.CACHE_VERSION})


# ---------------------------------------------------------------- getting runs
TrainFn = Callable[..., Run]  # (cfg, run_dir=, resume=, progress=) -> Run: model.runs.loop.train


def _as_config(spec_or_cfg: RunSpec | Config) -> Config:
    return spec_or_cfg.config() if isinstance(spec_or_cfg, RunSpec) else spec_or_cfg


def get_run(
    spec_or_cfg: RunSpec | Config,
    root: str | Path | None = None,
    *,
    salt: str = "",
    train_fn: TrainFn | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> Run:
    """The finished run of a spec or config, trained (or resumed) first when needed: under ``root``
    in its cache folder (:func:`~deepfusion.model.runs.run_name.run_dir_for`), or with no ``root`` in
    the config's own folder (``train.out_dir`` and ``train.name``, as ``deepfusion train`` names it).

    ``train_fn(cfg, run_dir=..., resume=..., progress=...)`` defaults to ``model.runs.loop.train``.
    Raises ``RunError`` if another process works in the run folder, if the folder holds a run trained
    with other settings, or if training returns without a finished checkpoint and its evaluation;
    ``DataError`` if a finished run's own data file changed since it was trained. One process only:
    under torchrun ``deepfusion train`` calls the training loop itself.
    """
    cfg = _as_config(spec_or_cfg)
    run_dir = run_dir_for(cfg, root, salt) if root is not None else default_run_dir(cfg)
    ev = finished_eval(run_dir, cfg)
    if ev is not None:
        _check_same_data(run_dir, cfg)
        if log:
            log(f"cached  {run_dir.name}")
        return Run(run_dir, cfg, ev)
    folder = RunFolder(run_dir)
    check_plain(folder)  # never lock, clear or train through a symbolic link
    made = make_folder(folder)  # the run folder and any parents this call made
    with folder_lock(run_dir, "train in"):  # re-entrant: the training loop takes it again
        ev = finished_eval(run_dir, cfg)
        if ev is not None:  # finished while this process waited to decide
            return Run(run_dir, cfg, ev)
        _check_trained_as_named(run_dir, cfg, cache=root is not None)
        resume = folder.last.is_file() or folder.prev.is_file()
        if root is not None and not resume:  # a cache folder; the loop decides on a folder the user names
            _clear_unfinished_start(folder)
        if log:
            log(f"{'resume' if resume else 'train '}  {run_dir.name}")
        try:
            run = (train_fn or train)(cfg, run_dir=run_dir, resume=resume, progress=progress)
        except (ConfigError, DataError):
            undo_start(folder, made)  # bad input leaves nothing behind
            raise
        if root is not None:
            _write_cache_record(run_dir, cfg, salt)
    if not is_finished(run_dir, cfg):
        raise RunError(f"training ended without a finished checkpoint and its {folder.eval}; see {folder.metrics}")
    return Run(run_dir, cfg, run.eval)


def run_all(
    specs: list[RunSpec], root: str | Path, log: Callable[[str], None] | None = None, train_fn: TrainFn | None = None
) -> list[RunResult]:
    """Train (or load from the cache) every spec, in order; each with the run it got."""
    out = []
    for i, spec in enumerate(specs, 1):
        prefix = f"  run {i}/{len(specs)} {spec.describe()}: "
        # A progress bar per training run when someone is watching (log given), none in tests.
        run = get_run(
            spec, root, train_fn=train_fn, progress=log is not None, log=(lambda m: log(prefix + m)) if log else None
        )
        out.append(RunResult(spec, run))
    return out


def default_workers() -> int:
    """Training processes at once: one per CPU core up to 2 on a CPU, 1 with a GPU (one device)."""
    return 1 if torch.cuda.is_available() else max(1, min(2, os.cpu_count() or 1))


def _train_in_worker(preset: str, overrides: tuple, root: str) -> str:
    """A worker process's job: one run through the cache, with one CPU thread (the cores are shared)."""
    torch.set_num_threads(1)
    return str(get_run(RunSpec(preset, overrides), root).run_dir)


def prefetch(
    specs: list[RunSpec],
    root: str | Path,
    workers: int = 1,
    log: Callable[[str], None] | None = None,
    train_fn: TrainFn | None = None,
    what: str = "figures",
) -> int:
    """Train every spec that is not yet in the cache, ``workers`` processes at a time; returns how many
    were trained. Specs with the same config are trained once; afterwards every run is cached.
    ``what`` names the job in the line a Ctrl-C ends with."""
    todo, seen = [], set()
    for spec in specs:
        cfg = spec.config()
        run_dir = run_dir_for(cfg, root)
        if run_dir.name not in seen and not is_finished(run_dir, cfg):
            seen.add(run_dir.name)
            todo.append(spec)
    if not todo:
        return 0
    if log:
        log(f"  training {len(todo)} run(s) the {what} need, {min(workers, len(todo))} at a time")
    if workers <= 1 or len(todo) == 1 or train_fn is not None:
        try:
            run_all(todo, root, log=log, train_fn=train_fn)
        except Interrupted as err:  # the run in training saved its checkpoint
            raise interrupted(what, err.signum, "the run in training saved a checkpoint") from None
        return len(todo)
    run_jobs(
        _train_in_worker,
        [(s.preset, s.overrides, str(root)) for s in todo],
        workers,
        describe=lambda job: RunSpec(job[0], job[1]).describe(),
        log=log,
        what=what,
    )
    return len(todo)
