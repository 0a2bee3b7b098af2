"""Where a run computes: the device from its name, and how many CPU threads it uses.

On a busy small machine, multi-threaded small matrix products can be tens of times slower than
one thread (OpenMP and BLAS threads spin-wait for each other), so commands that do many small
products default to one thread through :func:`limit_threads`.
"""

from __future__ import annotations

import contextlib
import re

import torch
from threadpoolctl import threadpool_limits

from deepfusion.errors import ConfigError, RunError


def resolve_device(name: str, option: str = "train.device") -> torch.device:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:K`` as a device; ``option`` names the setting in errors."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(name)):
        raise ConfigError(f"{option}={name!r} is not a device; use auto, cpu, cuda or cuda:K")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RunError(f"{option}={name} but no CUDA device is available; use {option}=cpu or auto")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise RunError(f"{option}={name} but only {torch.cuda.device_count()} CUDA device(s) exist")
    return torch.device(name)


@contextlib.contextmanager
def limit_threads(n: int):
    """Run the body with ``n`` torch and BLAS threads (0: unchanged), restoring them afterwards.

    Busy CPUs make multi-threaded small matrix products tens of times slower (threads spin-wait
    for each other), and the analysis is made of small matrices."""
    if n < 0:
        raise ConfigError(f"threads={n} must be >= 0 (0 keeps the default)")
    if n == 0:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(n):
            yield
    finally:
        torch.set_num_threads(before)
