"""``build_head``: a projection head from its name and the model config's options."""

from __future__ import annotations

from torch import nn

from deepfusion.errors import ConfigError
from deepfusion.model.network.attention import check_scope
from deepfusion.model.network.mlp_heads import FFNHead, MLPHead
from deepfusion.model.network.transformer_head import NORMS, TransformerHead, check_positive_ints

HEADS = ("transformer", "mlp", "mlp_nobn", "ffn")

# Options a head may receive (the model config's keys); each head takes the ones that apply.
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
    if "norm" in opts and opts["norm"] not in NORMS:
        raise ConfigError(f"model.norm={opts['norm']!r} is not valid; choose from {', '.join(NORMS)}")
    if "scope" in opts:
        check_scope(opts["scope"])
    if "out_bn" in opts and not isinstance(opts["out_bn"], bool):
        raise ConfigError(f"model.out_bn={opts['out_bn']!r} must be true or false")
    dim, heads = opts.get("dim", 256), opts.get("heads", 16)
    if ("dim" in opts or "heads" in opts) and dim % heads:
        raise ConfigError(f"model.heads={heads} does not divide model.dim={dim}; pick heads that divide dim")
    return opts


def build_head(name: str, in_dim: int, **options) -> nn.Module:
    """The head ``name`` (transformer, mlp, mlp_nobn, ffn) on ``in_dim`` backbone features.

    ``options`` are the model config keys (dim, depth, heads, ffn_dim, out_dim, norm, scope, out_bn,
    mlp_hidden, views; dropout for the transformer); None means the head's default.
    """
    if name not in HEADS:
        raise ConfigError(f"unknown head {name!r}; choose from {', '.join(HEADS)}")
    opts = _validate(options)
    pick = lambda *keys: {k: opts[k] for k in keys if k in opts}  # noqa: E731
    if name == "transformer":
        return TransformerHead(in_dim, **pick("dim", "depth", "heads", "ffn_dim", "out_dim", "norm", "scope",
                                              "views", "out_bn", "dropout"))
    if name == "ffn":
        return FFNHead(in_dim, **pick("dim", "depth", "out_dim", "out_bn"))
    mlp = {("hidden_dim" if k == "mlp_hidden" else k): v for k, v in pick("mlp_hidden", "out_dim").items()}
    return MLPHead(in_dim, batchnorm=(name == "mlp"), **mlp)
