"""Switches of a forward pass that belong to the caller, not to the model: a context, not attributes.

The training loop runs the forward pass inside ``with forward_options(attend="global",
check_inputs=False):``; evaluation and analysis use the defaults. Nothing is flipped on the model
and restored afterwards, so an exception cannot leave a model in a training-only state.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace

from deepfusion.errors import ConfigError

ATTEND = ("local", "global")


@dataclass(frozen=True)
class ForwardOptions:
    # "global": under torchrun, queries attend to the keys and values of every process's batch
    attend: str = "local"
    # heads check their input for NaN/inf; the check makes the host wait for the device, so the
    # training loop (which tracks non-finite losses itself) turns it off
    check_inputs: bool = True


_CURRENT: ContextVar[ForwardOptions] = ContextVar("deepfusion_forward_options", default=ForwardOptions())


def current() -> ForwardOptions:
    """The options of the forward passes running now."""
    return _CURRENT.get()


@contextmanager
def forward_options(**changes):
    """Forward passes inside the ``with`` block use ``changes`` (``attend``, ``check_inputs``)."""
    options = replace(current(), **changes)
    if options.attend not in ATTEND:
        raise ConfigError(f"train.attend={options.attend!r} is not valid; choose from {', '.join(ATTEND)}")
    token = _CURRENT.set(options)
    try:
        yield options
    finally:
        _CURRENT.reset(token)
