"""Tiny result fixtures: finished-looking run folders (a finished checkpoint stub, eval.json, analysis
files), no training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from deepfusion.model.runs import checkpoint as ck
from deepfusion.model.runs.layout import RunFolder
from deepfusion.paper_figures import cache


def no_train(cfg, run_dir=None, resume=False, progress=False):
    raise AssertionError(f"the figure tried to train {run_dir}; every run should come from the fixture")


def write_finished(run_dir: Path, ev: dict, step: int = 7, finished: bool = True) -> None:
    """What a finished run leaves for the cache: a checkpoint (no weights) flagged finished, and an
    eval.json that records its step."""
    folder = RunFolder(run_dir)
    folder.checkpoints.mkdir(parents=True, exist_ok=True)
    torch.save({"format": ck.FORMAT, "version": ck.VERSION, "model": {}, "config": {}, "step": step,
                "finished": finished}, folder.last)
    folder.eval.write_text(json.dumps(dict(ev, step=step)))


def fake_eval(rng: np.random.Generator) -> dict:
    return {k: float(rng.uniform(0.3, 0.95)) for k in ("knn", "linear", "head_loo1nn", "random_knn", "random_linear")}


def populate(specs, results_root: Path, seed: int = 0) -> dict[str, dict]:
    """Write a finished-run eval.json for each spec where the cache will look; returns {config_hash-free run dir: eval}."""
    rng = np.random.default_rng(seed)
    written = {}
    for spec in specs:
        run_dir = cache.run_dir_for(spec.config(), results_root)
        if run_dir.name in written:
            continue
        run_dir.mkdir(parents=True, exist_ok=True)
        ev = fake_eval(rng)
        write_finished(run_dir, ev)
        written[run_dir.name] = ev
    return written


def fake_analysis(run_dir: Path, L: int = 3, H: int = 2, C: int = 4, n: int = 6, seed: int = 0) -> None:
    """analysis.json + attention.npz of a batch whose attention gathers in class blocks with depth."""
    rng = np.random.default_rng(seed)
    N = C * n
    labels_half = rng.permutation(np.repeat(np.arange(C), n))
    labels = np.concatenate([labels_half, labels_half])  # view-major: both views of N samples
    inst = np.concatenate([np.arange(N), np.arange(N)])
    M = 2 * N
    same = labels[:, None] == labels[None, :]
    attn = np.empty((L, H, M, M))
    layers = []
    chance = (same.sum(1) - 2).mean() / (M - 1)
    for l in range(L):
        for h in range(H):
            logits = rng.normal(0, 0.3, (M, M)) + (1.0 + l + 0.5 * h) * same + 2.0 * np.eye(M)
            A = np.exp(logits)
            attn[l, h] = A / A.sum(1, keepdims=True)
        pos = (inst[:, None] == inst[None, :]) & ~np.eye(M, dtype=bool)
        mask = same & ~np.eye(M, dtype=bool) & ~pos
        mass = [(attn[l, h] * mask).sum(1).mean() for h in range(H)]
        ex = float(np.mean(mass) - chance)
        layers.append({"layer": l, "same_class_mass": mass, "chance": chance, "excess_mean": ex,
                       "excess_ci": [ex - 0.02, ex + 0.02], "predicted_same_class_mass": [m * 0.9 for m in mass]})
    RunFolder(run_dir).analysis.write_text(
        json.dumps({"num_classes": C, "layers": layers, "verdict": "Deep Fusion observed"}))
    np.savez(RunFolder(run_dir).attention, attention=attn, labels=labels, inst=inst)


@pytest.fixture
def results_root(tmp_path) -> Path:
    return tmp_path / "results"


def assert_figure_files(paths) -> None:
    suffixes = {Path(p).suffix for p in paths}
    assert {".png", ".pdf"} <= suffixes, paths
    for p in paths:
        # images of real content are kilobytes; tables only need to be non-empty
        assert Path(p).is_file() and Path(p).stat().st_size > (1000 if Path(p).suffix in (".png", ".pdf") else 0), p
