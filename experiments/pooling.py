"""Several training seeds of one config, judged together: the seed is the verdict's unit.

``check_runs`` makes sure the run folders are distinct and differ in nothing but ``train.seed``
(and where their outputs went); ``pool`` stacks their per-batch masses into the (seeds, batches,
layers) arrays of ``experiments.verdict`` and pools the per-layer statistics.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from deepfusion.errors import DataError
from deepfusion.experiments.record import PooledAnalysis, RunAnalysis
from deepfusion.experiments.verdict import deep_fusion_verdict

SEED_KEY = ("train", "seed")
# analysis settings the pooled runs must share; batch_seed differs by design (each training seed
# draws its own batches) and n_boot only sized each run's own interval
POOLED_SETTINGS = ("batches", "per_class", "seed", "views", "split", "n_perm", "tokens_per_batch", "scope")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key != "data.options":
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def seedless(cfg) -> dict:
    """The config as flat ``section.key`` items, without the seed and the output-only keys."""
    from deepfusion.model.runs.config import OUTPUT_KEYS, config_to_dict

    skip = {".".join(k) for k in OUTPUT_KEYS | {SEED_KEY}}
    return {k: v for k, v in _flat(config_to_dict(cfg)).items() if k not in skip}


def seedless_hash(cfg) -> str:
    import copy

    from deepfusion.model.runs.config import config_hash

    c = copy.deepcopy(cfg)
    c.train.seed = 0
    return config_hash(c)


def check_runs(run_dirs) -> list:
    """The configs of ``run_dirs``; a one-line error if a folder is given twice or the configs
    differ in anything but ``train.seed``."""
    from deepfusion.model.runs.loading import run_config

    paths = [Path(p) for p in run_dirs]
    if not paths:
        raise DataError("no run folder given; pass --run DIR (repeat it, or give a glob, for several seeds)")
    seen = {}
    for p in paths:
        key = p.resolve()
        if key in seen:
            raise DataError(f"run folder {p} is given twice (also as {seen[key]}); give each seed's run once")
        seen[key] = p
    cfgs = [run_config(p) for p in paths]
    first = seedless(cfgs[0])
    for p, cfg in zip(paths[1:], cfgs[1:]):
        other = seedless(cfg)
        diff = sorted(k for k in set(first) | set(other) if first.get(k) != other.get(k))
        if diff:
            raise DataError(f"{p} and {paths[0]} differ in {', '.join(diff)}, not only in train.seed; pool only runs "
                            "of one config that differ in their seed")
    seeds = [cfg.train.seed for cfg in cfgs]
    if len(set(seeds)) < len(seeds):
        raise DataError(f"two runs share train.seed ({seeds}); the seeds are the verdict's units, give distinct ones")
    return cfgs


def pool(records: list[RunAnalysis], config_hash: str = "", n_boot: int = 2000, seed: int = 0) -> PooledAnalysis:
    """The verdict over the records' seeds and the per-layer statistics averaged over them."""
    first = records[0]
    for r in records[1:]:
        diff = [k for k in POOLED_SETTINGS if getattr(r.settings, k) != getattr(first.settings, k)]
        diff += [k for k in ("num_layers", "num_heads", "num_classes") if getattr(r, k) != getattr(first, k)]
        if diff:
            raise DataError(f"analyses of {r.run} and {first.run} differ in {', '.join(diff)}; redo them with the "
                            "same analysis options (deepfusion analyze --force)")
    if len({r.step for r in records}) > 1:
        raise DataError("the runs' checkpoints are at different steps "
                        f"({', '.join(f'{r.run}: {r.step}' for r in records)}); finish them with --resume first")
    mass = np.stack([r.head_mean("mass") for r in records])  # (S, B, L)
    untrained = np.stack([r.head_mean("untrained_mass") for r in records])
    perm = np.stack([np.asarray(r.perm_mass, dtype=np.float64) for r in records], axis=1)  # (P, S, B, L)
    chance = float(np.mean([r.chance["same_class_mass"] for r in records]))
    verdict = deep_fusion_verdict(mass, chance, perm, untrained, n_boot=n_boot, seed=seed)
    layers = []
    for l in range(first.num_layers):
        entry = {"layer": l, "chance": chance}
        for stat in ("same_class_mass", "self_mass", "positive_mass", "predicted_same_class_mass", "beta_eff",
                     "beta_r2", "effective_rank", "block_distance"):
            entry[stat] = float(np.nanmean([np.mean(r.layers[l].heads[stat]) for r in records]))
        for stat in ("relative_spread", "class_mean_cosine"):
            entry[stat] = float(np.nanmean([r.layers[l].tokens[stat] for r in records]))
        for key in ("predicted_mass", "predicted_r_ratio", "measured_r_ratio"):
            values = [r.layer_prediction.get(key, [None] * first.num_layers)[l] for r in records]
            entry[key] = float(np.mean(values)) if all(v is not None for v in values) else None
        layers.append(entry)
    # the runs' shared options; each drew its own batches, and n_boot is the pooled bootstrap's
    settings = dataclasses.replace(first.settings, batch_seed=None, n_boot=int(n_boot))
    per_run = [{"run": r.run, "train_seed": r.train_seed, "step": r.step, "last_ratio": r.verdict.effect,
                "outcome": r.verdict.outcome} for r in records]
    return PooledAnalysis([r.run for r in records], [r.train_seed for r in records], [r.step for r in records],
                          config_hash, settings, first.num_classes, first.num_layers, first.num_heads, chance,
                          verdict, layers, per_run)
