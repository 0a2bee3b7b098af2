"""deepfusion: a theory-to-code verification suite for transformer projection heads.

The command line lives in :mod:`deepfusion.cli`; the error types every part raises
for bad input live in :mod:`deepfusion.errors`.
"""

__version__ = "0.1.0"
