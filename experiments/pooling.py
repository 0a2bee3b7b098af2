"""Several training seeds of one config, judged together: the seed is the verdict's unit.

``expand_runs`` turns ``--run`` values (folders or globs) into folders; ``check_runs`` makes sure
the run folders are distinct and differ in nothing but ``train.seed`` (and where their outputs
went); ``pool`` judges their ``attention.npz`` files together with rule v3
(``experiments.attention_verdict``) and pools the per-layer statistics; ``pool_files`` does the same
for ``--attention`` files of any model.
"""

from __future__ import annotations

import copy
import dataclasses
import glob
from pathlib import Path

import numpy as np

from deepfusion.errors import DataError
from deepfusion.experiments.analyze import verdict_of
from deepfusion.experiments.attention_inputs import load_attention_file
from deepfusion.experiments.record import PooledAnalysis, RunAnalysis, Settings
from deepfusion.model.runs.config import OUTPUT_KEYS, config_to_dict
from deepfusion.model.runs.config import config_hash as hash_of_config  # `pool` takes a config_hash argument
from deepfusion.model.runs.layout import RunFolder
from deepfusion.model.runs.loading import run_config

SEED_KEY = ("train", "seed")
# analysis settings the pooled runs must share; batch_seed differs by design (each training seed
# draws its own batches)
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
    skip = {".".join(k) for k in OUTPUT_KEYS | {SEED_KEY}}
    return {k: v for k, v in _flat(config_to_dict(cfg)).items() if k not in skip}


def differing_keys(a: dict, b: dict) -> list[str]:
    """The flat keys whose values differ between two flat configs (a key missing on one side differs)."""
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def seedless_hash(cfg) -> str:
    c = copy.deepcopy(cfg)
    c.train.seed = 0
    return hash_of_config(c)


def expand_runs(patterns: list[str], flag: str = "--run") -> list[Path]:
    """Run folders from the values of ``flag``: each a folder as given, or the folders a glob matches
    (sorted; files it matches, such as logs beside the runs, are skipped)."""
    out = []
    for pattern in patterns:
        if any(ch in pattern for ch in "*?["):
            matches = [Path(m) for m in sorted(glob.glob(pattern)) if Path(m).is_dir()]
            if not matches:
                raise DataError(f"{flag} {pattern!r} matches no folder; check the pattern")
            out += matches
        else:
            out.append(Path(pattern))
    return out


def check_runs(run_dirs) -> list:
    """The configs of ``run_dirs``; a one-line error if a folder is given twice or the configs
    differ in anything but ``train.seed``."""
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
        diff = differing_keys(first, seedless(cfg))
        if diff:
            raise DataError(
                f"{p} and {paths[0]} differ in {', '.join(diff)}, not only in train.seed; pool only runs "
                "of one config that differ in their seed"
            )
    seeds = [cfg.train.seed for cfg in cfgs]
    if len(set(seeds)) < len(seeds):
        raise DataError(f"two runs share train.seed ({seeds}); the seeds are the verdict's units, give distinct ones")
    return cfgs


def _check_poolable(records: list[RunAnalysis], run_dirs) -> None:
    """One folder per record; the same analysis options, model shape and checkpoint step in every record."""
    first = records[0]
    if len(run_dirs) != len(records):
        raise DataError(f"{len(records)} analyses and {len(run_dirs)} run folders; give one folder per analysis")
    for r in records[1:]:
        diff = [k for k in POOLED_SETTINGS if getattr(r.settings, k) != getattr(first.settings, k)]
        diff += [k for k in ("num_layers", "num_heads", "num_classes") if getattr(r, k) != getattr(first, k)]
        if diff:
            raise DataError(
                f"analyses of {r.run} and {first.run} differ in {', '.join(diff)}; redo them with the "
                "same analysis options (deepfusion analyze --force)"
            )
    if len({r.step for r in records}) > 1:
        raise DataError(
            "the runs' checkpoints are at different steps "
            f"({', '.join(f'{r.run}: {r.step}' for r in records)}); finish them with --resume first"
        )


def quiet_nanmean(values) -> float:
    """The mean of the values that are not NaN; NaN, without numpy's "Mean of empty slice" warning,
    when none is (a fit that no seed or head has)."""
    v = np.asarray(values, dtype=float)
    return float(v[~np.isnan(v)].mean()) if (~np.isnan(v)).any() else float("nan")


def _pooled_layer(records: list[RunAnalysis], l: int, chance: float) -> dict:
    """Layer ``l``'s statistics averaged over the records (heads averaged first; NaN fits left out)."""
    entry = {"layer": l, "chance": chance}
    for stat in (
        "same_class_mass",
        "self_mass",
        "positive_mass",
        "predicted_same_class_mass",
        "beta_eff",
        "beta_r2",
        "effective_rank",
        "block_distance",
    ):
        entry[stat] = quiet_nanmean([np.mean(r.layers[l].heads[stat]) for r in records])
    for stat in ("relative_spread", "class_mean_cosine"):
        entry[stat] = quiet_nanmean([r.layers[l].tokens[stat] for r in records])
    for key in ("predicted_mass", "predicted_r_ratio", "measured_r_ratio"):
        values = [r.layer_prediction.get(key, [None] * records[0].num_layers)[l] for r in records]
        entry[key] = float(np.mean(values)) if all(v is not None for v in values) else None
    return entry


def pool(records: list[RunAnalysis], run_dirs, config_hash: str = "") -> PooledAnalysis:
    """The verdict over the records' seeds (rule v3 on each run's ``attention.npz``, through
    ``analyze_attention`` as for ``--attention`` files) and the per-layer statistics averaged over them."""
    first = records[0]
    _check_poolable(records, run_dirs)
    arrays = [load_attention_file(RunFolder(d).attention) for d in run_dirs]
    s = first.settings
    verdict = verdict_of(arrays, split=s.split, n_perm=s.n_perm, seed=s.seed)
    chance = float(np.mean([r.chance["same_class_mass"] for r in records]))
    layers = [_pooled_layer(records, l, chance) for l in range(first.num_layers)]
    settings = dataclasses.replace(first.settings, batch_seed=None)  # each run drew its own batches
    per_run = [
        {"run": r.run, "train_seed": r.train_seed, "step": r.step, "last_ratio": e, "outcome": r.verdict.outcome}
        for r, e in zip(records, verdict.per_seed_effect)
    ]
    return PooledAnalysis(
        [r.run for r in records],
        [r.train_seed for r in records],
        [r.step for r in records],
        config_hash,
        settings,
        first.num_classes,
        first.num_layers,
        first.num_heads,
        chance,
        verdict,
        layers,
        per_run,
    )


def pool_files(paths, split: str = "test", n_perm: int = 200, seed: int = 0) -> PooledAnalysis:
    """The verdict over ``--attention`` files (one per training seed) as a pooled record: the same
    rule and table as run folders; statistics that need tokens or weights are None."""
    arrays = [load_attention_file(p) for p in paths]
    v = verdict_of(arrays, split=split, n_perm=n_perm, seed=seed)
    A = arrays[0]["attention"]
    B, L, H, M, _ = A.shape
    chance = v.chance[0]
    layers = [
        {
            "layer": l,
            "chance": chance,
            "same_class_mass": v.share[l],
            "self_mass": None,
            "own_view": v.own_view[l],
            "positive_mass": None,
            "predicted_same_class_mass": None,
            "beta_eff": None,
            "beta_r2": None,
            "effective_rank": None,
            "block_distance": None,
            "relative_spread": None,
            "class_mean_cosine": None,
            "predicted_mass": None,
            "predicted_r_ratio": None,
            "measured_r_ratio": None,
        }
        for l in range(L)
    ]
    settings = Settings(
        batches=B,
        per_class=0,
        seed=seed,
        batch_seed=None,
        views="file",
        split=split,
        n_perm=n_perm,
        tokens_per_batch=M,
        scope="file",
    )
    names = [Path(p).name for p in paths]
    per_run = [
        {"run": n, "train_seed": i + 1, "step": 0, "last_ratio": e, "outcome": ""}
        for i, (n, e) in enumerate(zip(names, v.per_seed_effect))
    ]
    return PooledAnalysis(
        names,
        list(range(1, len(paths) + 1)),
        [0] * len(paths),
        "",
        settings,
        v.classes,
        L,
        H,
        chance,
        v,
        layers,
        per_run,
    )
