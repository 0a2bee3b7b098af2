"""Hand-built run folders of the head comparison: a saved config and an eval.json, no training."""

from __future__ import annotations

import json
from pathlib import Path

from deepfusion.model.runs.config import load_config, save_config
from deepfusion.model.runs.layout import RunFolder

HEADS = ("transformer", "ffn", "mlp", "mlp_nobn")
KEYS = ("knn", "linear", "head_knn", "head_loo1nn", "random_knn", "random_linear")


def write_run(root: Path, head: str, seed: int, values: dict, *overrides: str, finished: bool = True) -> Path:
    """``root/<head>_s<seed>``: config.yaml of the synthetic preset with that head and seed, and an
    eval.json holding ``values`` (accuracies in [0, 1]) for every key of ``KEYS``."""
    run = root / f"{head}_s{seed}"
    folder = RunFolder(run)
    run.mkdir(parents=True)
    cfg = load_config(
        "synthetic", [f"model.head={head}", f"train.seed={seed}", f"train.name={head}_s{seed}", *overrides]
    )
    save_config(cfg, folder.config)
    folder.eval.write_text(json.dumps(dict(values, step=10, finished=finished)))
    return run


def accuracies(head: str, seed: int) -> dict:
    """Known values: the transformer beats head h by (index of h) + seed/10 points on every metric."""
    lead = {h: i for i, h in enumerate(HEADS)}[head]
    return {
        k: (60.0 + j - (lead * (1.0 + seed / 10.0) if head != "transformer" else 0.0)) / 100.0
        for j, k in enumerate(KEYS)
    }


def write_grid(root: Path, seeds=(1, 2, 3), heads=HEADS) -> list[Path]:
    return [write_run(root, h, s, accuracies(h, s)) for s in seeds for h in heads]
