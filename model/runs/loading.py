"""Loading a run back: its config, datasets, augmentation and trained model.

The files of a run folder are named in :mod:`deepfusion.model.runs.layout`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from deepfusion.errors import ConfigError, RunError
from deepfusion.model.runs.checkpoint import check_config_matches, latest_checkpoint, load_model_state
from deepfusion.model.runs.config import Config, config_to_dict, load_config
from deepfusion.model.runs.layout import RunFolder



def load_datasets(cfg: Config):
    """(train, test) ``ArrayDataset`` of the configured dataset; ``data.seed`` fixes data and split."""
    from deepfusion.model.data import load_dataset

    common = dict(root=cfg.data.root, seed=cfg.data.seed, test_fraction=cfg.data.test_fraction, **cfg.data.options)
    return load_dataset(cfg.data.name, split="train", **common), load_dataset(cfg.data.name, split="test", **common)


def build_run_augment(cfg: Config, dataset):
    from deepfusion.model.data.augment import build_augment

    return build_augment(cfg.data.augment, dataset.kind, tuple(dataset.input_shape))


def run_config(run_dir: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """The resolved config saved in a run folder, with optional overrides."""
    path = RunFolder(run_dir).config
    if not Path(run_dir).is_dir():
        raise RunError(f"run folder {run_dir} does not exist; train one with: deepfusion train --config digits")
    if not path.is_file():
        raise RunError(f"{run_dir} is not a run folder (no {path.name}); give the folder printed by deepfusion train")
    return load_config(path, list(overrides))


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


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """Config, trained model (eval mode), augmentation and datasets of a finished or partial run."""
    from deepfusion.model.runs.factory import build_model

    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    ckpt = latest_checkpoint(RunFolder(run_dir).checkpoints)  # every field it uses is checked on loading
    check_config_matches(ckpt["config"], config_to_dict(cfg), source=f"checkpoint in {run_dir}")
    train_ds, test_ds = load_datasets(cfg)
    model = build_model(cfg, tuple(train_ds.input_shape))
    load_model_state(model, ckpt["model"], source=f"checkpoint in {run_dir}")
    augment = build_run_augment(cfg, train_ds)
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ConfigError(f"device {device!r} is not valid ({err}); use cpu or cuda") from None
    return LoadedRun(cfg, model.to(dev).eval(), augment.to(dev), train_ds, test_ds, run_dir, ckpt["step"],
                     ckpt["finished"])
