"""deepfusion: a theory-to-code verification suite for transformer projection heads.

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
        return importlib.util.spec_from_file_location(fullname, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])


_checkout = Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and all((_checkout / n / "__init__.py").is_file() for n in _SUBPACKAGES):
    if not any(isinstance(f, _CheckoutFinder) for f in sys.meta_path):
        sys.meta_path.append(_CheckoutFinder(_checkout))
