"""Analyse a trained run's attention layer by layer against the theory.

For several fixed, class-balanced analysis batches (``experiments.capture``), every statistic of
``experiments.metrics`` is measured per layer and head, the S4 prediction of the masses is made from
each layer's measured spread r, class-mean cosine rho and each head's beta_eff
(``experiments.prediction``), and the pre-registered verdict (``experiments.verdict``) is applied.
``analysis.json`` (statistics, prediction, rule and verdict) and ``attention.npz`` (the first batch's
attention, labels and instance ids, for the attention-map figure) are written into the run folder.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from deepfusion.errors import DataError, RunError
from deepfusion.experiments import metrics as mt
from deepfusion.experiments import prediction
from deepfusion.experiments.capture import capture
from deepfusion.experiments.verdict import RULE, bootstrap_mean_ci, deep_fusion_verdict
from deepfusion.model.runs.layout import write_bytes_atomic, write_json
from deepfusion.model.runs.run_folder import folder_lock

HEAD_STATS = ("same_class_mass", "excess", "self_mass", "positive_mass", "block_mass", "block_distance",
              "effective_rank", "beta_eff", "beta_r2", "predicted_same_class_mass", "predicted_block_mass",
              "predicted_self_mass")
TOKEN_STATS = ("relative_spread", "class_mean_cosine", "nc1", "cdnv", "residual_ratio")


def batch_statistics(cap: dict) -> dict:
    """Every statistic of one captured batch: attention ones (L, H), token ones (L+1,), chance levels."""
    A = np.asarray(cap["attention"], dtype=np.float64)  # (L, H, M, M)
    T = np.asarray(cap["tokens"], dtype=np.float64)  # (L+1, M, D)
    y, inst, vis = cap["labels"], cap["inst"], cap["visible"]
    L = A.shape[0]
    s = {
        "same_class_mass": mt.same_class_mass(A, y, inst, vis),
        "self_mass": mt.self_mass(A),
        "positive_mass": mt.positive_mass(A, y, inst, vis),
        "block_mass": mt.block_mass(A, y, inst, vis),
        "block_distance": mt.block_distance(A, y, vis),
        "effective_rank": mt.effective_rank(A),
    }
    chance = mt.same_class_chance(y, inst, vis)
    s["excess"] = s["same_class_mass"] - chance
    fits = [mt.fit_beta_eff(A[l], T[l], visible=vis) for l in range(L)]
    s["beta_eff"] = np.stack([f[0] for f in fits])
    s["beta_r2"] = np.stack([f[1] for f in fits])
    s["relative_spread"] = np.array([mt.relative_spread(t, y) for t in T])
    s["class_mean_cosine"] = np.array([mt.class_mean_cosine(t, y) for t in T])
    s["nc1"] = np.array([mt.nc1(t, y) for t in T])
    s["cdnv"] = np.array([mt.cdnv(t, y) for t in T])
    s["residual_ratio"] = np.array([mt.residual_ratio(t, T[0]) for t in T])
    pred = prediction.predict_masses(s["relative_spread"][:L, None], s["beta_eff"],
                                     s["class_mean_cosine"][:L, None], y, inst, vis)
    for key in ("same_class_mass", "block_mass", "self_mass"):
        s[f"predicted_{key}"] = pred[key]
    s["chance"] = chance
    s["positive_chance"] = mt.positive_chance(y, inst, vis)
    s["block_chance"] = float(mt.block_mass(vis / vis.sum(1, keepdims=True), y, inst, vis))
    return s


def _finite(x):
    """Plain floats or lists of them; writing the JSON turns non-finite ones into null."""
    a = np.asarray(x, dtype=np.float64)
    return a.tolist() if a.ndim else float(a)


def summarise(stats: list[dict], n_boot: int = 2000, seed: int = 0) -> dict:
    """Combine per-batch statistics into the analysis record (per layer: head values averaged over
    batches, their spread, the bootstrap interval of the head-averaged excess) and the verdict."""
    B = len(stats)
    L, H = stats[0]["same_class_mass"].shape
    head = {k: np.stack([s[k] for s in stats]) for k in HEAD_STATS}  # each (B, L, H)
    tok = {k: np.stack([s[k] for s in stats]) for k in TOKEN_STATS}  # each (B, L+1)
    chance = float(np.mean([s["chance"] for s in stats]))
    if B >= 2:  # units: batches, head-averaged, paired across layers
        units, paired = head["excess"].mean(2), True  # (B, L)
    else:  # units: heads of the single batch, independent per layer
        units, paired = head["excess"][0].T, False  # (H, L)
    measured = head["same_class_mass"].mean((0, 2))
    predicted = head["predicted_same_class_mass"].mean((0, 2))
    verdict = deep_fusion_verdict(units, paired=paired, n_boot=n_boot, seed=seed,
                                  measured=measured, predicted=predicted)
    layers = []
    for l in range(L):
        entry = {"layer": l, "chance": chance}
        for k in HEAD_STATS:
            entry[k] = _finite(head[k][:, l].mean(0))  # (H,)
            entry[f"{k}_std"] = _finite(head[k][:, l].std(0))  # spread over batches
        entry["excess_mean"] = float(units[:, l].mean())
        entry["excess_ci"] = bootstrap_mean_ci(units[:, l], n_boot, seed + l)
        entry["tokens"] = {k: _finite(tok[k][:, l].mean()) for k in TOKEN_STATS}
        layers.append(entry)
    return {
        "layers": layers,
        "output_tokens": {k: _finite(tok[k][:, L].mean()) for k in TOKEN_STATS},
        "chance": {"same_class_mass": chance,
                   "positive_mass": float(np.mean([s["positive_chance"] for s in stats])),
                   "block_mass": float(np.mean([s["block_chance"] for s in stats]))},
        "measured_same_class_mass": measured.tolist(),
        "predicted_same_class_mass": predicted.tolist(),
        "rule": RULE,
        "verdict": verdict["verdict"],
        "verdict_record": verdict,
        "s4_backend": prediction.BACKEND,
        "num_layers": L,
        "num_heads": H,
    }


def analyze_model(model, augment, dataset, batches: int = 5, per_class: int = 16, seed: int = 0,
                  device="cpu", views: str = "two_views", n_boot: int = 2000) -> tuple[dict, dict]:
    """Analyse ``batches`` analysis batches (seeds ``seed, seed+1, ...``); returns (record, first capture)."""
    if batches < 1:
        raise DataError(f"batches={batches} must be at least 1")
    caps, stats = None, []
    for b in range(batches):
        cap = capture(model, augment, dataset, per_class, seed + b, device, views=views)
        if cap["attention"].shape[0] == 0:
            raise RunError("this run's head has no attention to analyse (only transformer heads attend); "
                           "analyse a run trained with model.head=transformer")
        caps = cap if caps is None else caps
        stats.append(batch_statistics(cap))
    record = summarise(stats, n_boot=n_boot, seed=seed)
    record["num_classes"] = int(len(np.unique(caps["labels"])))
    record["settings"] = {"batches": batches, "per_class": per_class, "seed": seed, "views": views,
                          "tokens_per_batch": int(len(caps["labels"])), "n_boot": n_boot,
                          "scope": str(getattr(model.head, "scope", "both_views"))}
    return record, caps


def analyze_run(run_dir, batches: int = 5, per_class: int = 16, seed: int = 0, device="cpu",
                split: str = "test", views: str = "two_views", n_boot: int = 2000) -> dict:
    """Analyse a run folder's trained head on ``split`` data; write ``analysis.json`` and
    ``attention.npz`` there and return the analysis record."""
    from deepfusion.model.runs.loading import load_run

    if split not in ("train", "test"):
        raise DataError(f"split={split!r} is not valid; choose train or test")
    run = load_run(run_dir, device)
    dataset = run.test_ds if split == "test" else run.train_ds
    with folder_lock(run_dir, "analyse") as folder:  # one analysis writes both files, or none does
        record, cap = analyze_model(run.model, run.augment, dataset, batches, per_class, seed, device, views, n_boot)
        record["settings"]["split"] = split
        record["run_dir"] = Path(run_dir).name
        write_json(folder.analysis, record, indent=1)
        buf = io.BytesIO()  # a file object keeps numpy from appending ".npz" to the name
        np.savez_compressed(buf, attention=cap["attention"], labels=cap["labels"], inst=cap["inst"])
        write_bytes_atomic(folder.attention, buf.getvalue())
    return record
