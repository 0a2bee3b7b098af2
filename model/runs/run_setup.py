"""What a training run is made of, built once: data resident on the device, augmentation, model,
optimiser, schedule and loss (:class:`Setup`), with the backbone started from another run or fitted
when the config asks for it; and where the run stands (:class:`Progress`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from deepfusion.errors import ConfigError
from deepfusion.model.network.collectives import GatheredNTXent
from deepfusion.model.network.losses import nt_xent
from deepfusion.model.runs import distributed as ddp_util
from deepfusion.model.runs.checkpoint import latest_checkpoint, load_model_state
from deepfusion.model.runs.config import Config
from deepfusion.model.runs.factory import build_model
from deepfusion.model.runs.layout import RunFolder
from deepfusion.model.runs.loading import build_run_augment
from deepfusion.model.runs.optim import build_optimizer


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


def build(cfg: Config, folder: RunFolder, dinfo, device: torch.device, train_ds) -> Setup:
    """Data on the device, augmentation, model, optimiser and loss of one run."""
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
    return Setup(
        cfg,
        folder,
        dinfo,
        device,
        model,
        fwd,
        opt,
        sched,
        augment,
        x_all,
        channels_last,
        loss_fn,
        steps_per_epoch,
        t.epochs * steps_per_epoch,
    )


def prepare_backbone(cfg: Config, model, augment, x_all: torch.Tensor) -> None:
    """Start the backbone from another run's weights (``model.backbone_from``), and fit a fixed
    feature map (the ``pca`` backbone) on the unaugmented training inputs."""
    if cfg.model.backbone_from:
        load_backbone(model, cfg.model.backbone_from)
    fit = getattr(model.backbone, "fit", None)
    if fit is not None:
        with torch.no_grad():
            fit(torch.cat([augment.eval_view(x_all[i : i + 4096]) for i in range(0, len(x_all), 4096)]))


def load_backbone(model, run_dir: str) -> None:
    """The backbone weights of a trained run (its newest loadable checkpoint) into ``model.backbone``."""
    folder = RunFolder(run_dir)
    if not folder.checkpoints.is_dir():
        raise ConfigError(
            f"model.backbone_from={run_dir}: no run folder with checkpoints there; give a folder "
            "written by deepfusion train"
        )
    state = {
        k[len("backbone.") :]: v
        for k, v in latest_checkpoint(folder.checkpoints)["model"].items()
        if k.startswith("backbone.")
    }
    load_model_state(model.backbone, state, source=f"the backbone of {run_dir} (model.backbone_from)")
