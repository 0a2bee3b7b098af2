"""Small controls the training loop calls: seeds, determinism, signals, the batch check, epoch order."""

from __future__ import annotations

import random
import signal
import threading
from contextlib import contextmanager

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The order of the ``n`` training samples in ``epoch``: a function of the seed and epoch alone."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


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
