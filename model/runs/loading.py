"""Loading a run back: its config, datasets, augmentation and trained model.

The files of a run folder are named in :mod:`deepfusion.model.runs.layout`. A run's data is
prepared (standardised vectors, checked class count) by :mod:`deepfusion.model.runs.prepare`, with
the statistics saved in the run folder's ``data.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import yaml

from deepfusion.errors import CheckpointError, ConfigError, RunError, warn
from deepfusion.model.data import load_dataset
from deepfusion.model.data.augment import build_augment
from deepfusion.model.runs.checkpoint import check_config_matches, latest_checkpoint, load_model_state
from deepfusion.model.runs.config import (
    LEGACY,
    Config,
    apply_override,
    config_from_dict,
    config_to_dict,
    load_config,
    validate,
)
from deepfusion.model.runs.data_source import check, fingerprint, locate
from deepfusion.model.runs.factory import build_model
from deepfusion.model.runs.layout import RunFolder
from deepfusion.model.runs.prepare import DataRecord, prepare, read_record


def load_datasets(cfg: Config, record: DataRecord | None = None, force: bool = False):
    """(train, test, record): the configured dataset as the network sees it (``data.seed`` fixes data
    and split) and how it was prepared; a ``record`` from the run folder supplies the statistics and
    the data's recorded path, and data whose fingerprint changed since is refused unless ``force``
    (:mod:`deepfusion.model.runs.data_source`)."""
    recorded = record.source if record is not None else None
    root = locate(cfg.data.root, recorded)
    current = fingerprint(cfg.data.root, root)
    check(recorded, current, force, known=record is not None)  # before the data is loaded and used
    common = dict(root=root, seed=cfg.data.seed, test_fraction=cfg.data.test_fraction, **cfg.data.options)
    train, test = (
        load_dataset(cfg.data.name, split="train", **common),
        load_dataset(cfg.data.name, split="test", **common),
    )
    train, test, new = prepare(cfg, train, test, record)
    return train, test, replace(new, source=current)


def build_run_augment(cfg: Config, dataset):
    d = cfg.data
    return build_augment(
        d.augment, dataset.kind, tuple(dataset.input_shape), noise=d.aug_noise, mask=d.aug_mask, mix=d.aug_mix
    )


def run_config(run_dir: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """The resolved config saved in a run folder, with optional overrides.

    Keys that the saved config lacks (it was written before they existed) take their
    :data:`~deepfusion.model.runs.config.LEGACY` value, the behaviour the run was trained with.
    """
    path = RunFolder(run_dir).config
    if not Path(run_dir).is_dir():
        raise RunError(f"run folder {run_dir} does not exist; train one with: deepfusion train --config digits")
    if not path.is_file():
        saved = _checkpoint_config(run_dir)
        if saved is None:
            raise RunError(
                f"{run_dir} is not a run folder (no {path.name}); give the folder printed by deepfusion train"
            )
        if str(path) not in _WARNED:  # a command may read the config more than once
            _WARNED.add(str(path))
            warn(f"{path} is missing; using the config saved in the run's checkpoint (a resume writes it again)")
        return _config_of(saved, overrides)
    missing = _missing_keys(path)
    legacy = [f"{s}.{k}={json.dumps(LEGACY[(s, k)])}" for s, k in missing]
    return load_config(path, legacy + list(overrides))


_WARNED: set[str] = set()


def _checkpoint_config(run_dir: str | Path) -> dict | None:
    """The resolved config in the run's newest loadable checkpoint, or None when there is none."""
    folder = RunFolder(run_dir)
    if not folder.checkpoints.is_dir():
        return None
    try:
        return latest_checkpoint(folder.checkpoints, quiet=True, mmap=True)["config"]
    except CheckpointError:
        return None


def _config_of(saved: dict, overrides) -> Config:
    """A checkpoint's config as a :class:`Config` (keys it predates at their LEGACY value), with overrides."""
    data = {s: dict(v) if isinstance(v, dict) else v for s, v in saved.items()}
    for (s, k), value in LEGACY.items():
        if isinstance(data.get(s), dict) and k not in data[s]:
            data[s][k] = value
    cfg = config_from_dict(data, source="the checkpoint's config")
    for text in overrides:
        apply_override(cfg, text)
    return validate(cfg)


def _missing_keys(path: Path) -> list[tuple[str, str]]:
    """The LEGACY keys absent from the config file at ``path``."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError, ValueError):
        return []  # load_config reports the problem
    if not isinstance(data, dict):
        return []
    return [(s, k) for s, k in LEGACY if isinstance(data.get(s), dict) and k not in data[s]]


def with_legacy(saved: dict, cfg: Config) -> dict:
    """A checkpoint's saved config with the keys it predates filled in as ``cfg`` has them."""
    current = config_to_dict(cfg)
    out = {s: dict(v) if isinstance(v, dict) else v for s, v in saved.items()}
    for s, k in LEGACY:
        if isinstance(out.get(s), dict) and k not in out[s] and current[s][k] == LEGACY[(s, k)]:
            out[s][k] = current[s][k]
    return out


@dataclass
class LoadedRun:
    cfg: Config
    model: torch.nn.Module
    augment: torch.nn.Module
    train_ds: object
    test_ds: object
    run_dir: Path
    step: int = 0  # the training step of the checkpoint loaded
    finished: bool = False  # whether that checkpoint ends the run
    record: DataRecord | None = None  # how the data was prepared (data.json)


def load_run(run_dir: str | Path, device: str | torch.device = "cpu", force: bool = False) -> LoadedRun:
    """Config, trained model (eval mode), augmentation and datasets of a finished or partial run.

    Vector data is standardised with the statistics saved in the run's ``data.json``; a run folder
    without one (made before it existed) has them recomputed from the training split. Data that
    changed since the run started is refused unless ``force``.
    """
    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    ckpt = latest_checkpoint(RunFolder(run_dir).checkpoints)  # every field it uses is checked on loading
    check_config_matches(with_legacy(ckpt["config"], cfg), config_to_dict(cfg), source=f"checkpoint in {run_dir}")
    train_ds, test_ds, record = load_datasets(cfg, read_record(RunFolder(run_dir).data), force=force)
    model = build_model(cfg, tuple(train_ds.input_shape))
    load_model_state(model, ckpt["model"], source=f"checkpoint in {run_dir}")
    augment = build_run_augment(cfg, train_ds)
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ConfigError(f"device {device!r} is not valid ({err}); use cpu or cuda") from None
    return LoadedRun(
        cfg, model.to(dev).eval(), augment.to(dev), train_ds, test_ds, run_dir, ckpt["step"], ckpt["finished"], record
    )
