"""Analyse trained runs' attention layer by layer against the theory and judge Deep Fusion.

For disjoint, class-balanced analysis batches (``experiments.capture``), every statistic of
``experiments.metrics`` is measured per layer and head, the S4 prediction of the masses is made
from each layer's measured spread r, class-mean cosine rho and each head's beta_eff
(``experiments.prediction``), and the verdict's two nulls are computed on the same batches
(``experiments.nulls``): label permutations and the untrained head. ``analyze_run`` writes one run
folder's ``analysis.json`` (``experiments.record.RunAnalysis``) and ``attention.npz`` (every batch's
attention, trained and untrained, in the format of ``deepfusion analyze --attention``);
``experiments.pooling.pool`` judges several training seeds of one config together from those files
through ``experiments.attention_verdict`` (rule v3), the seed being the unit.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from deepfusion.errors import DataError, RunError
from deepfusion.experiments import metrics as mt
from deepfusion.experiments import prediction
from deepfusion.experiments.attention_verdict import analyze_attention
from deepfusion.experiments.capture import batch_features, disjoint_batches, fit_per_class, trace_head
from deepfusion.experiments.head_predictions import layer_predictions
from deepfusion.experiments.nulls import untrained_head
from deepfusion.experiments.record import HEAD_STATS, TOKEN_STATS, LayerRecord, RunAnalysis, Settings
from deepfusion.experiments.verdict import MIN_PERMUTATIONS
from deepfusion.model.runs.config import config_hash
from deepfusion.model.runs.layout import RunFolder, write_bytes_atomic, write_json
from deepfusion.model.runs.loading import load_run
from deepfusion.model.runs.lock import folder_lock


def batch_statistics(cap: dict) -> dict:
    """Every statistic of one captured batch: attention ones (L, H), token ones (L+1,), chance levels."""
    A = np.asarray(cap["attention"], dtype=np.float64)  # (L, H, M, M)
    T = np.asarray(cap["tokens"], dtype=np.float64)  # (L+1, M, D)
    y, inst, vis = cap["labels"], cap["inst"], cap["visible"]
    L = A.shape[0]
    chance = mt.same_class_chance(y, inst, vis)
    s = {
        "same_class_mass": mt.same_class_mass(A, y, inst, vis),
        "self_mass": mt.self_mass(A),
        "positive_mass": mt.positive_mass(A, y, inst, vis),
        "block_mass": mt.block_mass(A, y, inst, vis),
        "block_distance": mt.block_distance(A, y, vis),
        "effective_rank": mt.effective_rank(A),
    }
    s["ratio"] = s["same_class_mass"] / chance
    fits = [_beta_fit(A[l], T[l], vis) for l in range(L)]
    s["beta_eff"] = np.stack([f[0] for f in fits])
    s["beta_r2"] = np.stack([f[1] for f in fits])
    s["relative_spread"] = np.array([mt.relative_spread(t, y) for t in T])
    s["class_mean_cosine"] = np.array([mt.class_mean_cosine(t, y) for t in T])
    s["nc1"] = np.array([mt.nc1(t, y) for t in T])
    s["cdnv"] = np.array([mt.cdnv(t, y) for t in T])
    s["residual_ratio"] = np.array([mt.residual_ratio(t, T[0]) for t in T])
    pred = prediction.predict_masses(
        s["relative_spread"][:L, None], s["beta_eff"], s["class_mean_cosine"][:L, None], y, inst, vis
    )
    for key in ("same_class_mass", "block_mass", "self_mass"):
        s[f"predicted_{key}"] = pred[key]
    s["chance"] = chance
    s["positive_chance"] = mt.positive_chance(y, inst, vis)
    s["block_chance"] = float(mt.block_mass(vis / vis.sum(1, keepdims=True), y, inst, vis))
    return s


def _beta_fit(A, T, vis):
    """beta_eff and R^2 of one layer; undefined (NaN) when the tokens' cosines do not vary, as in a
    collapsed or untrained layer, instead of stopping the analysis."""
    try:
        return mt.fit_beta_eff(A, T, visible=vis)
    except DataError:
        nan = np.full(A.shape[:-2], np.nan)
        return nan, nan


def _layers(stats: list[dict], chance: float) -> tuple[list[LayerRecord], dict]:
    head = {k: np.stack([s[k] for s in stats]) for k in HEAD_STATS}  # each (B, L, H)
    tok = {k: np.stack([s[k] for s in stats]) for k in TOKEN_STATS}  # each (B, L+1)
    L = head["same_class_mass"].shape[1]
    layers = [
        LayerRecord(
            l,
            chance,
            {k: head[k][:, l].mean(0).tolist() for k in HEAD_STATS},
            {k: head[k][:, l].std(0).tolist() for k in HEAD_STATS},
            {k: float(tok[k][:, l].mean()) for k in TOKEN_STATS},
        )
        for l in range(L)
    ]
    return layers, {k: float(tok[k][:, L].mean()) for k in TOKEN_STATS}


def capture_arrays(caps: list[dict], untrained_attention: list) -> dict:
    """One seed's captured batches as the arrays ``analyze_attention`` (and ``--attention`` files)
    take: attention and untrained (B, L, H, M, M) float32, labels and instance (B, M), visible (M, M).

    Instance ids are the samples' indices in the analysed split (``indices`` of the capture), so a
    sample has one id in every batch and seed; a capture without indices numbers its samples
    batch after batch."""
    inst, offset = [], 0
    for cap in caps:
        local = np.asarray(cap["inst"])
        if cap.get("indices") is not None:
            inst.append(np.asarray(cap["indices"])[local])
        else:
            inst.append(local + offset)
            offset += int(local.max()) + 1
    visible = [np.asarray(c["visible"], dtype=bool) for c in caps]
    same = all(np.array_equal(v, visible[0]) for v in visible)
    return {
        "attention": np.stack([np.asarray(c["attention"], dtype=np.float32) for c in caps]),
        "labels": np.stack([np.asarray(c["labels"], dtype=np.int64) for c in caps]),
        "instance": np.stack(inst).astype(np.int64),
        "untrained": np.stack([np.asarray(a, dtype=np.float32) for a in untrained_attention]),
        "visible": visible[0] if same else np.stack(visible),
    }


def verdict_of(arrays: list[dict], split: str = "test", n_perm: int = MIN_PERMUTATIONS, seed: int = 0):
    """Rule v3 on the arrays of one or more seeds (``capture_arrays`` or ``--attention`` files)."""

    def get(key):  # one entry per seed, or None when a seed lacks the optional array
        return [a[key] for a in arrays] if all(a.get(key) is not None for a in arrays) else None

    return analyze_attention(
        get("attention"),
        get("labels"),
        get("instance"),
        get("untrained"),
        get("visible"),
        split=split,
        n_perm=n_perm,
        seed=seed,
    )


def record_from_batches(
    caps: list[dict],
    untrained_attention: list,
    n_perm: int = MIN_PERMUTATIONS,
    seed: int = 0,
    settings: dict | None = None,
    identity: dict | None = None,
    layer_prediction: dict | None = None,
) -> RunAnalysis:
    """The analysis record of captured batches (``experiments.capture``: attention, tokens, labels,
    inst, visible) and the untrained head's attention (L, H, M, M) on each; pure numpy. Its one-seed
    verdict comes from ``capture_arrays`` of the same batches, as a pooled verdict does."""
    stats, mass, untrained_mass = [], [], []
    for cap, A0 in zip(caps, untrained_attention):
        if np.asarray(cap["attention"]).shape[0] == 0:
            raise RunError(
                "this run's head has no attention to analyse (only transformer heads attend); "
                "analyse a run trained with model.head=transformer"
            )
        s = batch_statistics(cap)
        stats.append(s)
        mass.append(s["same_class_mass"])
        untrained_mass.append(mt.same_class_mass(A0, cap["labels"], cap["inst"], cap["visible"]))
    chance = float(np.mean([s["chance"] for s in stats]))
    layers, output_tokens = _layers(stats, chance)
    mass, untrained_mass = np.stack(mass), np.stack(untrained_mass)
    base = dict(
        batches=len(caps), per_class=0, seed=seed, batch_seed=seed, views="two_views", split="test", scope="both_views"
    )
    base.update(settings or {})
    arrays = capture_arrays(caps, untrained_attention)
    verdict = verdict_of([arrays], split=base["split"], n_perm=n_perm, seed=base["seed"])
    first = caps[0]
    ident = {**dict(run="", config_hash="", train_seed=0, step=0, finished=False), **(identity or {})}
    return RunAnalysis(
        **ident,
        settings=Settings(n_perm=n_perm, tokens_per_batch=int(len(first["labels"])), **base),
        num_classes=int(len(np.unique(first["labels"]))),
        num_layers=len(layers),
        num_heads=int(mass.shape[-1]),
        chance={
            "same_class_mass": chance,
            "positive_mass": float(np.mean([s["positive_chance"] for s in stats])),
            "block_mass": float(np.mean([s["block_chance"] for s in stats])),
        },
        layers=layers,
        output_tokens=output_tokens,
        mass=mass.tolist(),
        untrained_mass=untrained_mass.tolist(),
        verdict=verdict,
        layer_prediction=layer_prediction or {},
    )


def analyze_model(
    model,
    augment,
    dataset,
    untrained,
    batches: int = 5,
    per_class: int | None = None,
    seed: int = 0,
    device="cpu",
    views: str = "two_views",
    n_perm: int = MIN_PERMUTATIONS,
    split: str = "test",
    identity: dict | None = None,
    analysis_seed: int | None = None,
    max_per_class: int | None = None,
) -> tuple[RunAnalysis, dict]:
    """Analyse ``batches`` disjoint batches (drawn with ``seed``) with the trained head and
    ``untrained`` (a head at initialisation); returns the record and the arrays of every batch
    (``capture_arrays``).
    ``analysis_seed``: the seed the user asked for, recorded when ``seed`` was derived from it."""
    if batches < 2:
        raise DataError(f"--batches {batches}: the verdict needs at least 2 analysis batches")
    labels = np.asarray(dataset.y)
    if per_class is None:
        per_class = fit_per_class(labels, batches)
        if per_class < 2:
            raise DataError(
                f"the split has too few samples for {batches} disjoint batches of at least 2 per class "
                f"(smallest class: {min(np.unique(labels, return_counts=True)[1])}); lower --batches"
            )
    caps, untrained_attention = [], []
    for b, idx in enumerate(disjoint_batches(labels, batches, per_class, seed)):
        batch = batch_features(model, augment, dataset, idx, seed + b, device, views)
        caps.append({**batch, **trace_head(model.head, batch["features"])})
        untrained_attention.append(trace_head(untrained, batch["features"])["attention"])
    settings = dict(
        per_class=per_class,
        views=views,
        split=split,
        scope=str(getattr(model.head, "scope", "both_views")),
        seed=seed if analysis_seed is None else analysis_seed,
        batch_seed=seed,
        max_per_class=max_per_class,
    )
    predictions = (
        layer_predictions(model.head, caps) if hasattr(model.head, "blocks") and len(caps[0]["attention"]) else {}
    )
    record = record_from_batches(caps, untrained_attention, n_perm, seed, settings, identity, predictions)
    return record, capture_arrays(caps, untrained_attention)


def read_analysis(run_dir) -> RunAnalysis | None:
    """The run folder's ``analysis.json`` as a record, None when there is none."""
    path = RunFolder(run_dir).analysis
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"cannot read {path} ({err}); redo it with deepfusion analyze --force") from None
    return RunAnalysis.from_json(data, str(path))


def batch_seed(seed: int, train_seed: int) -> int:
    """The seed a run's analysis batches are drawn with: each training seed draws its own batches,
    so batches are nested in seeds, as the verdict's intervals assume (shared batches would make
    them too narrow: a batch's quirk would be the same in every seed)."""
    return int(np.random.SeedSequence([int(seed), int(train_seed)]).generate_state(1)[0])


def analyze_run(
    run_dir,
    batches: int = 5,
    per_class: int | None = None,
    seed: int = 0,
    device="cpu",
    split: str = "test",
    views: str = "two_views",
    n_perm: int = MIN_PERMUTATIONS,
    force: bool = False,
) -> RunAnalysis:
    """Analyse a run folder's trained head on ``split`` data; write ``analysis.json`` and
    ``attention.npz`` there and return the record.

    An analysis already in the folder is reused when it was made with the same settings of the same
    checkpoint; one made otherwise is replaced only with ``force``.
    """
    _check_options(split, seed, n_perm)
    with folder_lock(run_dir, "analyse") as folder:  # one analysis writes both files, or none does
        run = load_run(run_dir, device)  # under the lock: never a checkpoint a training process is replacing
        old = None if force else _existing(run_dir)
        dataset = run.test_ds if split == "test" else run.train_ds
        per = per_class if per_class is not None else fit_per_class(dataset.y, batches)
        drawn = batch_seed(seed, run.cfg.train.seed)
        disjoint_batches(dataset.y, batches, per, drawn)  # a split too small fails before anything else
        wanted = dict(
            batches=batches, per_class=per, seed=seed, batch_seed=drawn, views=views, split=split, n_perm=n_perm
        )
        if old is not None:
            return _reused(old, wanted, run, folder)
        head = untrained_head(run.cfg, run.train_ds.input_shape).to(device)
        identity = dict(
            run=Path(run_dir).name,
            config_hash=config_hash(run.cfg),
            train_seed=run.cfg.train.seed,
            step=run.step,
            finished=run.finished,
        )
        largest = min(np.unique(dataset.y, return_counts=True)[1]) // batches
        record, arrays = analyze_model(
            run.model,
            run.augment,
            dataset,
            head,
            batches,
            per,
            drawn,
            device,
            views,
            n_perm,
            split,
            identity,
            analysis_seed=seed,
            max_per_class=int(largest),
        )
        _write(folder, record, arrays)
    return record


def _check_options(split: str, seed: int, n_perm: int) -> None:
    if split not in ("train", "test"):
        raise DataError(f"split={split!r} is not valid; choose train or test")
    if seed < 0:
        raise DataError(f"--seed {seed}: the analysis seed must be 0 or more")
    if n_perm < MIN_PERMUTATIONS:
        raise DataError(f"--n-perm {n_perm}: the permutation null needs at least {MIN_PERMUTATIONS}")


def _reused(old: RunAnalysis, wanted: dict, run, folder) -> RunAnalysis:
    """The analysis already in the folder when it has the wanted settings of this checkpoint; else RunError."""
    same = all(getattr(old.settings, k) == v for k, v in wanted.items()) and old.step == run.step
    if same and old.config_hash == config_hash(run.cfg):
        return old
    raise RunError(
        f"{folder.analysis} holds an analysis with other settings or of another checkpoint "
        f"(step {old.step}); pass --force to replace it"
    )


def _write(folder, record: RunAnalysis, arrays: dict) -> None:
    """``analysis.json`` and ``attention.npz``, each written atomically (the caller holds the lock)."""
    write_json(folder.analysis, record.to_json(), indent=1)
    buf = io.BytesIO()  # a file object keeps numpy from appending ".npz" to the name
    np.savez_compressed(buf, **arrays)  # the --attention file format: every batch, both heads
    write_bytes_atomic(folder.attention, buf.getvalue())


def _existing(run_dir) -> RunAnalysis | None:
    """The analysis in the folder, or None; an unreadable or older one counts as another analysis."""
    try:
        return read_analysis(run_dir)
    except DataError:
        raise RunError(
            f"{RunFolder(run_dir).analysis} is from another version or unreadable; pass --force to replace it"
        ) from None
