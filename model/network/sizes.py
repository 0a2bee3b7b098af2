"""Size checks shared by the heads and the config: the one place that says which sizes a head accepts.

torch-free, so the config validation can use them without loading the network.
"""

from __future__ import annotations

from deepfusion.errors import ConfigError


def check_positive_ints(**values) -> None:
    """Raise ``ConfigError`` naming the first of the model options ``values`` that is not a positive integer."""
    for key, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"model.{key}={value!r} must be a positive integer")


def check_heads_divide(dim: int, heads: int) -> None:
    """Raise ``ConfigError`` unless ``heads`` divides ``dim`` (each head gets dim / heads features)."""
    if dim % heads:
        raise ConfigError(f"model.heads={heads} does not divide model.dim={dim}; pick heads that divide dim")
