"""Where a run lives: the one run-folder naming scheme, for ``deepfusion train`` and the run cache alike.

A run's folder is ``<root>/<data>-<head>-s<seed>-<key>`` (``<data>`` is the file's stem for one's own
``.npz``): a readable prefix, then a key hashed from
the resolved config (``config.config_hash``, which leaves out output keys such as the folder and the
log interval), the cache version and an optional salt. So an unchanged config finds its finished run
again, and a changed preset, override or default gives a new folder. ``train.name`` replaces the
whole name with one the user picks.

When the training or evaluation code changes in a way that changes results, bump ``CACHE_VERSION``
(every run gets a new folder) or pass a ``salt`` for the experiments affected.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from deepfusion.model.runs.config import Config, config_hash

CACHE_VERSION = 1


def run_key(cfg: Config, salt: str = "") -> str:
    """The key of ``cfg``: its config hash, the cache version and the salt, hashed again."""
    text = f"v{CACHE_VERSION}|{salt}|{config_hash(cfg)}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


LABEL_CHARS = 160  # a data file's stem in a folder name: with "-<head>-s<seed>-<key>" well within 255 bytes


def run_label(path) -> str:
    """The run-folder prefix for a data file: its stem with anything unusual replaced by '-', cut to
    ``LABEL_CHARS`` (ASCII by then, so as many bytes)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(str(path)).stem)[:LABEL_CHARS].strip("-.") or "npz"


def _slug(cfg: Config) -> str:
    # Readable prefix only; the key alone decides identity. Own data is named after its file.
    data = run_label(cfg.data.root) if cfg.data.name == "npz" and cfg.data.root else str(cfg.data.name)
    parts = [data, str(cfg.model.head), f"s{cfg.train.seed}"]
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(parts))


def run_dir_for(cfg: Config, root: str | Path, salt: str = "") -> Path:
    """Where the run of ``cfg`` lives under ``root`` (whether or not it exists yet)."""
    return Path(root).expanduser() / f"{_slug(cfg)}-{run_key(cfg, salt)}"


def default_run_dir(cfg: Config) -> Path:
    """``<train.out_dir>/<train.name>``, or :func:`run_dir_for` under ``train.out_dir`` when no name is set."""
    root = Path(cfg.train.out_dir).expanduser()
    return root / cfg.train.name if cfg.train.name else run_dir_for(cfg, root)
