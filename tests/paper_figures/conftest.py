"""Tiny result fixtures: finished-looking run folders (a finished checkpoint stub, eval.json, analysis
files), no training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from deepfusion.experiments.runs import run_dir_for
from deepfusion.model.runs.config import save_config
from deepfusion.model.runs.layout import RunFolder
from tests.experiments.run_fixtures import write_finished


def no_train(cfg, run_dir=None, resume=False, progress=False):
    raise AssertionError(f"the figure tried to train {run_dir}; every run should come from the fixture")


def fake_eval(rng: np.random.Generator) -> dict:
    return {
        k: float(rng.uniform(0.3, 0.95))
        for k in (
            "knn",
            "linear",
            "head_loo1nn",
            "random_knn",
            "random_linear",
            "head_knn",
            "untrained_head_knn",
            "untrained_head_loo1nn",
        )
    }


def populate(specs, results_root: Path, seed: int = 0) -> dict[str, dict]:
    """Write a finished run's config.yaml and eval.json for each spec where the cache will look;
    returns {run folder name: eval}."""
    rng = np.random.default_rng(seed)
    written = {}
    for spec in specs:
        cfg = spec.config()
        run_dir = run_dir_for(cfg, results_root)
        if run_dir.name in written:
            continue
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, RunFolder(run_dir).config)
        ev = fake_eval(rng)
        write_finished(run_dir, ev, cfg=cfg)
        written[run_dir.name] = ev
    return written


def fake_analysis(run_dir: Path, L: int = 3, H: int = 2, C: int = 4, n: int = 6, seed: int = 0) -> None:
    """analysis.json + attention.npz of batches whose attention gathers in class blocks with depth
    (head 1 more than head 0), made by the real record builder."""
    from deepfusion.experiments.analyze import capture_arrays, record_from_batches
    from deepfusion.model.runs.config import load_config

    rng = np.random.default_rng(seed)
    N = C * n
    caps, untrained = [], []
    for _ in range(3):  # each seed's own samples (ids unique across seeds: one label per id)
        labels_half = rng.permutation(np.repeat(np.arange(C), n))
        labels = np.concatenate([labels_half, labels_half])  # view-major: both views of N samples
        inst = np.concatenate([np.arange(N), np.arange(N)])
        M = 2 * N
        same = labels[:, None] == labels[None, :]
        attn = np.empty((L, H, M, M))
        for l in range(L):
            for h in range(H):
                logits = rng.normal(0, 0.3, (M, M)) + (0.3 + 0.6 * l + 0.5 * h) * same + 2.0 * np.eye(M)
                A = np.exp(logits)
                attn[l, h] = A / A.sum(1, keepdims=True)
        caps.append(
            {
                "attention": attn,
                "tokens": rng.standard_normal((L + 1, M, 8)),
                "labels": labels,
                "inst": inst,
                "visible": np.ones((M, M), bool),
                "indices": np.arange(N) + N * len(caps) + 10_000 * seed,
            }
        )
        U = np.exp(rng.normal(0, 0.3, (L, H, M, M)))
        untrained.append(U / U.sum(-1, keepdims=True))
    cfg = load_config(RunFolder(run_dir).config) if RunFolder(run_dir).config.is_file() else None
    identity = {"run": Path(run_dir).name, "step": 10, "finished": True, "train_seed": cfg.train.seed if cfg else 0}
    record = record_from_batches(
        caps, untrained, seed=seed, identity=identity, settings={"per_class": n, "seed": 0, "batch_seed": seed}
    )
    RunFolder(run_dir).analysis.write_text(json.dumps(record.to_json()))
    np.savez(RunFolder(run_dir).attention, **capture_arrays(caps, untrained))


@pytest.fixture
def results_root(tmp_path) -> Path:
    return tmp_path / "results"


def assert_figure_files(paths) -> None:
    suffixes = {Path(p).suffix for p in paths}
    assert {".png", ".pdf"} <= suffixes, paths
    for p in paths:
        # images of real content are kilobytes; tables only need to be non-empty
        assert Path(p).is_file() and Path(p).stat().st_size > (1000 if Path(p).suffix in (".png", ".pdf") else 0), p
