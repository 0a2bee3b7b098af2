"""The result cache: one run folder per resolved config, trained only when missing.

A run is identified by the hash of its resolved config (``model.runs.config.config_hash``), so a
changed preset, override or default gives a new key and a new run, while an unchanged config
reuses the finished run. A run counts as finished when its newest loadable checkpoint says so
(its ``finished`` flag) and its ``eval.json`` describes that checkpoint's step; a run stopped
half-way (even one evaluated by ``deepfusion eval``) is resumed, and a start that died before its
first checkpoint is begun again. Each key is trained under its run folder's lock, so two
``figures``/``reproduce`` on one results folder never train the same run at once: the second
stops with an error naming the first one's process.

When the training or evaluation code changes in a way that changes results, bump
``CACHE_VERSION`` (every run is redone) or pass a ``salt`` for the experiments affected.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Callable

from deepfusion.errors import RunError

CACHE_VERSION = 1


def _config_hash(cfg) -> str:
    from deepfusion.model.runs.config import config_hash

    return config_hash(cfg)


def _train(cfg, run_dir=None, resume=False, progress=True) -> Path:
    from deepfusion.model.runs.loop import train

    return train(cfg, run_dir=run_dir, resume=resume, progress=progress)


def run_key(cfg, salt: str = "") -> str:
    """The cache key of ``cfg``: its config hash, the cache version and the salt, hashed again."""
    text = f"v{CACHE_VERSION}|{salt}|{_config_hash(cfg)}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _slug(cfg) -> str:
    # Readable prefix only; the key alone decides identity.
    parts = [str(cfg.data.name), str(cfg.model.head), f"s{cfg.train.seed}"]
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(parts))


def run_dir_for(cfg, results_root: str | Path, salt: str = "") -> Path:
    """Where the run of ``cfg`` lives (whether or not it exists yet)."""
    return Path(results_root) / f"{_slug(cfg)}-{run_key(cfg, salt)}"


def is_finished(run_dir: str | Path, cfg=None) -> bool:
    """Whether the run's newest loadable checkpoint is finished and ``eval.json`` describes its step;
    with ``cfg``, also whether that checkpoint was trained with ``cfg`` (:func:`config_mismatch`)."""
    from deepfusion.errors import CheckpointError
    from deepfusion.model.runs.checkpoint import latest_checkpoint
    from deepfusion.model.runs.layout import RunFolder

    folder = RunFolder(run_dir)
    if not folder.eval.is_file():
        return False
    try:
        ev = json.loads(folder.eval.read_text())
        ckpt = latest_checkpoint(folder.checkpoints, quiet=True, mmap=True)  # maps the tensors, reads the flags
    except (OSError, ValueError, CheckpointError):  # JSONDecodeError and CheckpointError are ValueErrors
        return False
    step = ev.get("step", ev.get("train_steps")) if isinstance(ev, dict) else None
    if cfg is not None and config_mismatch(ckpt["config"], cfg):
        return False
    return bool(ckpt["finished"]) and step == ckpt["step"]


def config_mismatch(saved: dict, cfg) -> list[str]:
    """``section.key`` names where a checkpoint's resolved config differs from ``cfg`` in what the
    cache key covers (output keys such as the folder and log interval aside): a folder's name says
    which config it was made for, its checkpoint what it was trained with (a ``--resume`` to more
    epochs, an edited ``config.yaml``)."""
    from deepfusion.model.runs.checkpoint import config_diffs
    from deepfusion.model.runs.config import OUTPUT_KEYS, SECTIONS, Config, config_to_dict
    from deepfusion.model.runs.loading import with_legacy

    diffs = config_diffs(with_legacy(saved, cfg), config_to_dict(cfg), tuple(SECTIONS), defaults=config_to_dict(Config()))
    return [d for d in diffs if tuple(d.split(".", 1)) not in OUTPUT_KEYS]


def _check_trained_as_named(run_dir: Path, cfg) -> None:
    """Refuse a run folder whose checkpoint was trained with another config than its key names."""
    from deepfusion.errors import CheckpointError
    from deepfusion.model.runs.checkpoint import latest_checkpoint
    from deepfusion.model.runs.layout import RunFolder

    folder = RunFolder(run_dir)
    try:
        saved = latest_checkpoint(folder.checkpoints, quiet=True, mmap=True)["config"]
    except CheckpointError:  # none yet, or unreadable: training decides
        return
    diffs = config_mismatch(saved, cfg)
    if diffs:
        raise RunError(f"cached run {run_dir} was trained with other settings than its name stands for "
                       f"({', '.join(diffs[:4])} differ: resumed or edited after the cache made it); move the folder "
                       "away to have it trained again as configured")


# What a training start leaves before its first checkpoint; cleared before the key is trained again.
_UNFINISHED_START = ("config.yaml", "metrics.jsonl", "data.json", "eval.json", "cache.json")


def _clear_unfinished_start(folder) -> None:
    from deepfusion.model.runs.checkpoint import STALE

    for name in _UNFINISHED_START:
        (folder.root / name).unlink(missing_ok=True)
    if folder.checkpoints.is_dir():
        for pattern in STALE:
            for stale in folder.checkpoints.glob(pattern):
                stale.unlink()
        try:
            folder.checkpoints.rmdir()  # only if empty
        except OSError:
            pass


def run_or_load(
    cfg,
    results_root: str | Path,
    *,
    salt: str = "",
    train_fn: Callable[..., Path] | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Return the finished run folder of ``cfg`` under ``results_root``, training it first if needed.

    ``train_fn(cfg, run_dir=..., resume=..., progress=...)`` defaults to ``model.runs.loop.train``.
    Raises ``RunError`` if another process works in the run folder, or if training returns without
    a finished checkpoint and its ``eval.json``.
    """
    run_dir = run_dir_for(cfg, results_root, salt)
    if is_finished(run_dir, cfg):
        if log:
            log(f"cached  {run_dir.name}")
        return run_dir
    from deepfusion.model.runs.layout import RunFolder, write_json
    from deepfusion.model.runs.lock import folder_lock
    from deepfusion.model.runs.run_folder import check_plain

    check_plain(RunFolder(run_dir))  # never lock, clear or train through a symbolic link
    run_dir.mkdir(parents=True, exist_ok=True)
    with folder_lock(run_dir, "train in") as folder:  # the training loop takes it again (re-entrant)
        if is_finished(run_dir, cfg):  # finished while this process waited to decide
            return run_dir
        _check_trained_as_named(run_dir, cfg)
        resume = folder.last.is_file() or folder.prev.is_file()
        if not resume:
            _clear_unfinished_start(folder)
        if log:
            log(f"{'resume' if resume else 'train '}  {run_dir.name}")
        train_fn = train_fn or _train
        result = Path(train_fn(cfg, run_dir=run_dir, resume=resume, progress=progress) or run_dir)
        write_json(run_dir / "cache.json", {"key": run_key(cfg, salt), "config_hash": _config_hash(cfg),
                                            "salt": salt, "cache_version": CACHE_VERSION})
    if not is_finished(result, cfg):
        raise RunError(f"training ended without a finished checkpoint and its {RunFolder(result).eval}; see "
                       f"{RunFolder(result).metrics}")
    return result


def load_eval(run_dir: str | Path) -> dict:
    """The parsed ``eval.json`` of a finished run."""
    from deepfusion.model.runs.layout import RunFolder

    path = RunFolder(run_dir).eval
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise RunError(f"cannot read {path}: {err}; delete the run folder to redo the run") from err
