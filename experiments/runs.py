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

When the training or evaluation code changes in a way that changes results, bump ``CACHE_VERSION``
(every run is redone) or pass a ``salt`` for the experiments affected.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from deepfusion.errors import CheckpointError, Interrupted, RunError
from deepfusion.experiments.pool import interrupted, run_jobs
from deepfusion.model.runs.checkpoint import STALE, config_diffs, latest_checkpoint
from deepfusion.model.runs.config import OUTPUT_KEYS, SECTIONS, Config, config_hash, config_to_dict, load_config
from deepfusion.model.runs.eval_result import EvalResult
from deepfusion.model.runs.layout import RunFolder, write_json
from deepfusion.model.runs.loading import with_legacy
from deepfusion.model.runs.lock import folder_lock
from deepfusion.model.runs.loop import train
from deepfusion.model.runs.run_folder import BEFORE_FIRST_CHECKPOINT, check_plain
from deepfusion.model.runs.run_record import Run

CACHE_VERSION = 1
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


def seed_specs(spec: RunSpec, seeds: int) -> list[RunSpec]:
    """``spec`` with ``train.seed`` = 0 .. seeds-1."""
    return [spec.with_overrides(f"train.seed={s}") for s in range(seeds)]


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


# ---------------------------------------------------------------- keys and folders
def run_key(cfg: Config, salt: str = "") -> str:
    """The cache key of ``cfg``: its config hash, the cache version and the salt, hashed again."""
    text = f"v{CACHE_VERSION}|{salt}|{config_hash(cfg)}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _slug(cfg: Config) -> str:
    # Readable prefix only; the key alone decides identity.
    parts = [str(cfg.data.name), str(cfg.model.head), f"s{cfg.train.seed}"]
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(parts))


def run_dir_for(cfg: Config, root: str | Path, salt: str = "") -> Path:
    """Where the run of ``cfg`` lives under ``root`` (whether or not it exists yet)."""
    return Path(root) / f"{_slug(cfg)}-{run_key(cfg, salt)}"


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


def _check_trained_as_named(run_dir: Path, cfg: Config) -> None:
    """Refuse a run folder whose checkpoint was trained with another config than its key names."""
    try:
        saved = latest_checkpoint(RunFolder(run_dir).checkpoints, quiet=True, mmap=True)["config"]
    except CheckpointError:  # none yet, or unreadable: training decides
        return
    diffs = config_mismatch(saved, cfg)
    if diffs:
        raise RunError(
            f"cached run {run_dir} was trained with other settings than its name stands for "
            f"({', '.join(diffs[:4])} differ: resumed or edited after the cache made it); move the folder "
            "away to have it trained again as configured"
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


# ---------------------------------------------------------------- getting runs
TrainFn = Callable[..., Run]  # (cfg, run_dir=, resume=, progress=) -> Run: model.runs.loop.train


def _as_config(spec_or_cfg: RunSpec | Config) -> Config:
    return spec_or_cfg.config() if isinstance(spec_or_cfg, RunSpec) else spec_or_cfg


def get_run(
    spec_or_cfg: RunSpec | Config,
    root: str | Path,
    *,
    salt: str = "",
    train_fn: TrainFn | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> Run:
    """The finished run of a spec or config under ``root``, trained (or resumed) first when needed.

    ``train_fn(cfg, run_dir=..., resume=..., progress=...)`` defaults to ``model.runs.loop.train``.
    Raises ``RunError`` if another process works in the run folder, if the folder holds a run trained
    with other settings, or if training returns without a finished checkpoint and its evaluation.
    """
    cfg = _as_config(spec_or_cfg)
    run_dir = run_dir_for(cfg, root, salt)
    ev = finished_eval(run_dir, cfg)
    if ev is not None:
        if log:
            log(f"cached  {run_dir.name}")
        return Run(run_dir, cfg, ev)
    check_plain(RunFolder(run_dir))  # never lock, clear or train through a symbolic link
    run_dir.mkdir(parents=True, exist_ok=True)
    with folder_lock(run_dir, "train in") as folder:  # the training loop takes it again (re-entrant)
        ev = finished_eval(run_dir, cfg)
        if ev is not None:  # finished while this process waited to decide
            return Run(run_dir, cfg, ev)
        _check_trained_as_named(run_dir, cfg)
        resume = folder.last.is_file() or folder.prev.is_file()
        if not resume:
            _clear_unfinished_start(folder)
        if log:
            log(f"{'resume' if resume else 'train '}  {run_dir.name}")
        run = (train_fn or train)(cfg, run_dir=run_dir, resume=resume, progress=progress)
        write_json(
            run_dir / CACHE_FILE,
            {"key": run_key(cfg, salt), "config_hash": config_hash(cfg), "salt": salt, "cache_version": CACHE_VERSION},
        )
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
