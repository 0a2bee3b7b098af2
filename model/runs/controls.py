"""Small controls the training loop calls: seeds, determinism, signals, the batch check, epoch order."""

from __future__ import annotations

import random
import signal
import threading
from contextlib import contextmanager

import numpy as np
import torch

from deepfusion.errors import ConfigError
from deepfusion.model.runs.config import Config


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


SEED_STRIDE = 1_000_003  # a prime above any epoch or step count, so (seed, index) pairs never share a seed


def stream_seed(seed: int, index: int) -> int:
    """The seed of draw stream ``index`` (an epoch, a step) of a run seeded ``seed``; the one mixing rule."""
    return seed * SEED_STRIDE + index


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The order of the ``n`` training samples in ``epoch``: a function of the seed and epoch alone."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(stream_seed(seed, epoch)))


def check_batch(cfg: Config, n_train: int, world: int = 1) -> None:
    """The batch must give every token someone to attend to (per process under ``attend=local``)
    and fit in the training set."""
    from deepfusion.model.network.attention import min_instances
    from deepfusion.model.network.heads import attends

    need = max(2, min_instances(cfg.model.scope) if attends(cfg.model.head) else 2)
    if cfg.train.batch_size < need:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} is too small for model.scope={cfg.model.scope}; "
                          f"use at least {need}")
    seen = cfg.train.batch_size // world  # with train.attend=local the head sees one process's share
    if world > 1 and cfg.train.attend == "local" and seen < need:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} gives each of {world} processes {seen} samples, "
                          f"too few for model.scope={cfg.model.scope} with train.attend=local; use at least "
                          f"{need * world} or train.attend=global")
    if cfg.train.batch_size > n_train:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} exceeds the {n_train} training samples; lower it")


ABORTED = threading.Event()  # a second Ctrl-C aborted the run (read where torch hid the KeyboardInterrupt)


@contextmanager
def stop_on_signals():
    """Record SIGTERM/SIGINT/SIGHUP (a closed terminal) in a flag checked at step boundaries; a second
    SIGINT aborts at once."""
    flag = {"signum": None}
    ABORTED.clear()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag["signum"] is not None and signum == signal.SIGINT:
            ABORTED.set()  # torch swallows an exception raised inside its writer: say what happened
            raise KeyboardInterrupt
        flag["signum"] = signum

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextmanager
def deterministic(on: bool):
    """Deterministic algorithms inside the block (bit-exact resume on CPU), the caller's setting after."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(on)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)
