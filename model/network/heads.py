"""``build_head``: a registered projection head from its name and the model config's options."""

from __future__ import annotations

from torch import nn

from deepfusion.errors import ConfigError
from deepfusion.model.network.attention import check_scope
from deepfusion.model.network.registry import HEADS, NORMS
from deepfusion.model.network.sizes import check_heads_divide, check_positive_ints

# Options a head may receive (the model config's keys); each registered head reads the ones it lists.
OPTIONS = ("dim", "depth", "heads", "ffn_dim", "out_dim", "norm", "scope", "out_bn", "mlp_hidden", "views", "dropout")
# Model config keys that are not head options; passed through harmlessly when a caller forwards the whole section.
IGNORED = ("backbone", "head")
_INTS = ("dim", "depth", "heads", "ffn_dim", "out_dim", "mlp_hidden", "views")


def _validate(options: dict) -> dict:
    """Check every given option (used or not: a bad config value is an error whichever head it reaches)."""
    unknown = sorted(set(options) - set(OPTIONS) - set(IGNORED))
    if unknown:
        raise ConfigError(f"unknown head option(s) {', '.join(unknown)}; valid options: {', '.join(OPTIONS)}")
    opts = {k: v for k, v in options.items() if k in OPTIONS and v is not None}
    check_positive_ints(**{key: opts[key] for key in _INTS if key in opts})
    if "norm" in opts:
        NORMS.check(opts["norm"])
    if "scope" in opts:
        check_scope(opts["scope"])
    if "out_bn" in opts and not isinstance(opts["out_bn"], bool):
        raise ConfigError(f"model.out_bn={opts['out_bn']!r} must be true or false")
    dim, heads = opts.get("dim", 256), opts.get("heads", 16)
    if "dim" in opts or "heads" in opts:
        check_heads_divide(dim, heads)
    return opts


def build_head(name: str, in_dim: int, **options) -> nn.Module:
    """The registered head ``name`` on ``in_dim`` backbone features.

    ``options`` are the model config keys (dim, depth, heads, ffn_dim, out_dim, norm, scope, out_bn,
    mlp_hidden, views; dropout for the transformer); None means the head's default. Each head takes
    the keys its registry entry lists.
    """
    entry = HEADS.get(name)
    opts = _validate(options)
    kwargs = {kw: opts[key] for key, kw in entry.options.items() if key in opts}
    return entry.build(in_dim, **entry.fixed, **kwargs)


def attends(name: str) -> bool:
    """Whether the registered head ``name`` attends across the batch."""
    return bool(HEADS.get(name).extra.get("attends", False))
