"""deepfusion: a theory-to-code verification suite for transformer projection heads.

The public Python API, for use in one's own training loop (README, "Use it in your own training
loop"):

- :class:`TransformerHead`: the projection head whose tokens are the samples of the batch;
  ``head(x, return_attention=True)`` returns the output and one (H, M, M) map per layer;
  ``TransformerHead.paper(in_dim)`` has the authors' sizes.
- :class:`MLPHead` (SimCLR's head, with or without BatchNorm) and :class:`FFNHead` (the paper's
  feed-forward baseline): the heads to compare against.
- :func:`nt_xent`: the contrastive loss as a pure function (instance ids give SimCLR, class labels
  SupCon).
- :func:`capture_attention`: (B, L, H, M, M) attention of the head inside any ``nn.Module`` on
  given batches.
- :func:`analyze_attention`: the Deep Fusion verdict (rule v3, as ``deepfusion analyze
  --attention``) on such attention, one entry per training seed; returns an ``AttentionVerdict``
  (``outcome``, ``last_layer_ratio``, per-layer ``layers``, ``to_json()``).

These names are loaded on first use (PEP 562 ``__getattr__``), not at ``import deepfusion``: they
need torch, whose import takes about 2 s, and the command line (``deepfusion --help``) must not
pay for it.

The command line lives in :mod:`deepfusion.cli`; the error types every part raises
for bad input live in :mod:`deepfusion.errors`. The repository's top-level folders ``model/``,
``theory/``, ``experiments/`` and ``paper_figures/`` are this package's sub-packages: the wheel
installs them under ``deepfusion/``, and a source checkout used without installing
(``PYTHONPATH=<checkout>``, as on a machine that cannot pip-install) finds them beside it.
"""

import importlib.abc
import importlib.util
import sys
from pathlib import Path

__version__ = "0.1.0"

_SUBPACKAGES = ("model", "theory", "experiments", "paper_figures")

# public name -> module that defines it (relative to this package)
_API = {
    "TransformerHead": "model.network.transformer_head",
    "MLPHead": "model.network.mlp_heads",
    "FFNHead": "model.network.mlp_heads",
    "nt_xent": "model.network.losses",
    "capture_attention": "model.network.capture",
    "analyze_attention": "experiments.attention_verdict",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    """The public API names, imported on first use (see the module docstring)."""
    if name not in _API:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_API[name]}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_API))


class _CheckoutFinder(importlib.abc.MetaPathFinder):
    """``deepfusion.<folder>`` from the folder beside this package in a source checkout; tried
    after every installed finder, so an installed copy always wins."""

    def __init__(self, root: Path):
        self.root = root

    def find_spec(self, fullname, path=None, target=None):
        prefix, _, name = fullname.partition(".")
        if prefix != __name__ or name not in _SUBPACKAGES:
            return None
        folder = self.root / name
        return importlib.util.spec_from_file_location(
            fullname, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )


_checkout = Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and all((_checkout / n / "__init__.py").is_file() for n in _SUBPACKAGES):
    if not any(isinstance(f, _CheckoutFinder) for f in sys.meta_path):
        sys.meta_path.append(_CheckoutFinder(_checkout))
