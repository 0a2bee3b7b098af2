"""The batch size: the one place that checks it against the head, the processes and the training
split, and that fits it to a small split.

``train.batch_size`` is the global batch. It must give every token someone to attend to (per
process under ``train.attend=local``), split evenly over the processes, and fit in the training
set. :data:`~deepfusion.model.runs.config_limits.MIN_BATCH` is the floor ``validate`` applies to
any config before data is read.
"""

from __future__ import annotations

import math

from deepfusion.errors import ConfigError
from deepfusion.model.network.attention import min_instances
from deepfusion.model.network.heads import attends
from deepfusion.model.runs.config_limits import MIN_BATCH


def check_batch(cfg, n_train: int, world: int = 1) -> None:
    """A ``ConfigError`` naming the fix when ``cfg.train.batch_size`` does not suit the head's scope, the
    ``world`` processes or the ``n_train`` training samples."""
    batch = cfg.train.batch_size
    if batch % world:
        raise ConfigError(
            f"train.batch_size={batch} (the global batch) does not split evenly over {world} "
            f"processes; use a multiple of {world}"
        )
    need = max(MIN_BATCH, min_instances(cfg.model.scope) if attends(cfg.model.head) else MIN_BATCH)
    if batch < need:
        raise ConfigError(
            f"train.batch_size={batch} is too small for model.scope={cfg.model.scope}; use at least {need}"
        )
    seen = batch // world  # with train.attend=local the head sees one process's share
    if world > 1 and cfg.train.attend == "local" and seen < need:
        raise ConfigError(
            f"train.batch_size={batch} gives each of {world} processes {seen} samples, "
            f"too few for model.scope={cfg.model.scope} with train.attend=local; use at least "
            f"{need * world} or train.attend=global"
        )
    if batch > n_train:
        raise ConfigError(f"train.batch_size={batch} exceeds the {n_train} training samples; lower it")


def fitted_batch(batch: int, n_train: int, world: int = 1, drop_share: float = 0.1) -> int | None:
    """A batch for a small training split, or None when ``batch`` suits it already.

    Every step takes a full batch and an epoch's remainder is dropped; a batch larger than the
    split, or one that would leave more than ``drop_share`` of it unused, becomes the size of
    ``ceil(n_train / batch)`` equal batches (a multiple of ``world``). None also when that would
    fall below :data:`MIN_BATCH`.
    """
    if batch <= n_train and (n_train % batch) <= drop_share * n_train:
        return None
    fitted = n_train // math.ceil(n_train / batch) // world * world
    return fitted if fitted >= MIN_BATCH else None
