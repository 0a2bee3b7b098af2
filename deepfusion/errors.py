"""Error types for bad input and failed runs.

Every failure a user can cause (a wrong path, a typo in a config, a corrupt
checkpoint) raises a subclass of :class:`DeepFusionError`. The command line
prints its message on one line and exits non-zero; a traceback appears only
with ``--debug``. Subclasses of ``ValueError`` so that library callers that
already catch ``ValueError`` keep working.
"""

import sys


class DeepFusionError(ValueError):
    """Base class: a problem with the user's input or environment, not a bug."""

    exit_code = 2


class ConfigError(DeepFusionError):
    """A config file or ``key=value`` override is malformed or names an unknown key."""


class DataError(DeepFusionError):
    """A dataset is missing, malformed, or its labels are out of range."""


class CheckpointError(DeepFusionError):
    """A checkpoint is truncated, corrupt, foreign, or does not match the config."""


class RunError(DeepFusionError):
    """A run cannot start or must stop: unwritable folder, missing device, non-finite loss."""

    exit_code = 3


class Interrupted(RunError):
    """A signal stopped the work after what could be saved was saved; exit code 128 + signal.

    Picklable with its signal, so one raised in a worker process reaches its parent intact.
    """

    def __init__(self, message: str, signum: int = 2):
        super().__init__(message)
        self.signum = int(signum)
        self.exit_code = 128 + self.signum

    def __reduce__(self):
        return type(self), (str(self), self.signum)


class CheckFailed(DeepFusionError):
    """A verification (theory check, sanity experiment) did not pass."""

    exit_code = 1


def first_line(err: BaseException, limit: int = 120, default: str | None = None) -> str:
    """The first line of ``err``'s message, at most ``limit`` characters, for a one-line report of a
    failure that came from below (torch, the file system, YAML); ``default`` (else the error's type
    name) when the message is empty."""
    lines = str(err).strip().splitlines()
    return (lines[0].strip() if lines else default or type(err).__name__)[:limit]


def warn(message: str) -> None:
    """One line ``deepfusion: warning: MESSAGE`` on stderr: something was worked around, nothing stopped."""
    print(f"deepfusion: warning: {message}", file=sys.stderr, flush=True)


class DataWarning(UserWarning):
    """Data that trains, but probably not as meant (the command line prints it on one line)."""
