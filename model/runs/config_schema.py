"""The run configuration's schema: one dataclass per section, each key with its type and default.

``Config`` nests the sections (data, model, optim, loss, train, eval) and the ``preset`` label;
``SECTIONS`` and ``SECTION_TYPES`` name them. Presets, YAML files, overrides, validation and the
config hash live in ``model.runs.config``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional, get_type_hints


@dataclass
class DataConfig:
    name: str = "synthetic"  # dataset name passed to model.data.load_dataset
    root: Optional[str] = None  # folder holding the files; None = the loader's default
    augment: str = "default"  # augmentation preset passed to build_augment
    test_fraction: float = 0.2  # held-out share for datasets without an official test split
    seed: int = 0  # data generation and split; fixed apart from train.seed so all seeds share a test set
    options: dict = field(default_factory=dict)  # extra loader keyword arguments
    standardize: bool = True  # vectors: standardise each feature with training-split mean and std
    aug_noise: Optional[float] = None  # Gaussian noise std added to each view; None = the augment preset's
    aug_mask: Optional[float] = None  # vectors: share of features zeroed per view; None = the preset's
    aug_mix: Optional[float] = None  # vectors: share of features taken from a random other sample; None = preset's


@dataclass
class ModelConfig:
    backbone: str = "resnet18"
    head: str = "transformer"  # transformer | mlp | mlp_nobn | ffn
    dim: int = 256  # token width D of the transformer/ffn head
    depth: int = 10  # layers L
    heads: int = 16  # attention heads H
    ffn_dim: int = 1024
    out_dim: int = 512  # projection (loss) dimension
    norm: str = "post"  # post-LN (paper) or pre-LN
    scope: str = "both_views"  # both_views (paper) | per_view | mask_pair
    out_bn: bool = True  # BatchNorm1d without bias on the output (paper)
    mlp_hidden: int = 512  # hidden width of the mlp / mlp_nobn heads
    backbone_from: Optional[str] = None  # a run folder whose trained backbone weights to start from
    backbone_width: Optional[int] = None  # mlp backbone: width of each layer; None = the backbone's default
    backbone_depth: Optional[int] = None  # mlp backbone: number of Linear-BN-ReLU layers; None = its default


@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd (with momentum) | lars | adamw
    lr: float = 0.3  # per 256 samples: the effective lr is lr * batch_size / 256
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 10.0  # linear warm-up, then cosine decay to zero (per step)
    head_lr_scale: float = 1.0  # the head's lr is lr * head_lr_scale (a deep head may need less than the backbone)


@dataclass
class LossConfig:
    temperature: float = 0.5


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 256  # N samples per step; the head sees 2N tokens
    seed: int = 123
    device: str = "auto"  # auto | cpu | cuda | cuda:K
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    compile: bool = False  # torch.compile the model (CUDA only)
    channels_last: bool = True  # memory format for image batches on CUDA
    log_every: int = 50  # steps between metric lines (the only host syncs of the loop)
    checkpoint_every: int = 0  # extra checkpoints every K steps; 0 = only per epoch and at the end
    skip_nonfinite: int = 0  # steps with a NaN/inf loss that may be skipped before the run stops
    deterministic: bool = True  # deterministic algorithms on CPU (bit-exact resume)
    attend: str = "local"  # under torchrun: the head attends to this process's batch (local) or all (global)
    threads: int = 0  # CPU threads for torch; 0 = torch's default (1 is often faster on a busy machine)
    out_dir: str = "runs"
    name: Optional[str] = None  # run folder name; None = <data>-<head>-s<seed>-<key> (model.runs.run_name)
    freeze_backbone: bool = False  # head-only training: the backbone is a fixed feature map
    log: str = "jsonl"  # jsonl: metrics.jsonl only; tensorboard: also event files in <run>/tensorboard/


@dataclass
class EvalConfig:
    knn_k: int = 20
    knn_t: float = 0.1  # temperature of the weighted kNN vote
    linear_epochs: int = 100
    linear_fraction: float = 1.0  # share of the training set used to fit the linear probe
    head_batch: int = 256  # test batch size for the head's leave-one-out 1-NN


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    preset: str = "custom"  # label only: names the run folder, excluded from the hash


SECTIONS = {f.name: f.type for f in dataclasses.fields(Config) if f.name != "preset"}
SECTION_TYPES = get_type_hints(Config)  # section name -> its dataclass
