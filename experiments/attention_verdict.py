"""The Deep Fusion verdict (rule v3, ``experiments.verdict``) for attention from any model.

``analyze_attention(attention, labels, instance, untrained=None, visible=None)`` takes one entry per
training seed:

- ``attention`` (B, L, H, M, M) float: B analysis batches, L layers, H heads, query and key token;
  each row sums to 1 over its visible keys;
- ``labels`` (B, M) int: the class of each token's sample;
- ``instance`` (B, M) int: tokens with one id are views of one sample. An id names a sample of the
  analysed split: the same id in two batches or seeds is the same sample and must carry one label;
- ``untrained`` like ``attention``: the head at initialisation on the same batches (optional; without
  it the untrained-head null is "not available" and the verdict cannot be "observed");
- ``visible`` (M, M) or (B, M, M) bool: which keys each query may see (optional; default all).

It returns an ``AttentionVerdict``. ``deepfusion analyze --attention FILE.npz`` (one file per seed)
and ``deepfusion analyze --run`` (after capturing the same tensors from the run) both end here.
"""

from __future__ import annotations

import zipfile
from dataclasses import asdict, dataclass, field

import numpy as np

from deepfusion.errors import DataError
from deepfusion.experiments import verdict as rule
from deepfusion.experiments.nulls import permuted_ratios, sample_matrices, shared_permutations

ROW_TOL = 1e-3  # float32 softmax rows sum to 1 within ~1e-6; half precision needs more slack


@dataclass(frozen=True)
class PermutationNull:
    """The label-permutation null of a verdict: one permutation of per-sample labels per draw,
    shared by every seed and batch (``experiments.nulls``)."""

    effect_p: float  # (1 + #draws >= measured EFFECT) / (draws + 1)
    trend_p: float
    effect_q975: float  # 97.5% quantiles of EFFECT and TREND over the draws
    trend_q975: float
    layers_q975: list[float]  # per layer, the 97.5% quantile of the seed-averaged ratio
    n_perm: int
    samples: int  # distinct samples whose labels are permuted


@dataclass(frozen=True)
class UntrainedNull:
    """The untrained head on the same batches: its EFFECT, TREND and layer ratios, and the paired
    per-seed differences trained - untrained (None throughout when it was not given)."""

    available: bool
    effect: float | None = None
    trend: float | None = None
    layers: list[float] | None = None
    effect_difference_ci: list[float] | None = None
    trend_difference_ci: list[float] | None = None


@dataclass
class AttentionVerdict:
    """Rule v3 applied to attention of one or more training seeds, with every number it used."""

    outcome: str  # observed | not observed | inconclusive | exploratory
    rule_outcome: str  # what the rule alone says (differs from outcome on the training split)
    decided_by: str  # the numbers that decided it, in words
    would_change: str  # what would change it
    seeds: int
    batches: list[int]  # analysis batches of each seed
    tokens: int  # tokens per batch (first seed's)
    classes: int
    split: str
    look: int  # 0: exploratory stage; 1..3: the plan's looks
    level: float  # one-sided level of the intervals at this look
    next_look_seeds: int | None
    line: float
    layers: list[float]  # ratio to chance per layer, seeds averaged
    layers_ci: list  # per layer, the t-interval over seeds at this look's level (None with one seed)
    per_seed_layers: list[list[float]]
    share: list[float]  # mean share per layer (own views removed, row renormalised)
    chance: list[float]  # its value under uniform attention
    own_view: list[float]  # attention on the token's own views (self and positive), per layer
    last_layer_ratio: float
    effect_ci: list | None
    trend: float  # mean per-seed slope of the ratio over layers
    trend_ci: list | None
    per_seed_effect: list[float]
    per_seed_trend: list[float]
    permutation_null: PermutationNull
    untrained_null: UntrainedNull
    conditions: dict
    warnings: list[str] = field(default_factory=list)
    seed: int = 0
    version: int = rule.VERSION
    rule: str = rule.RULE

    @property
    def effect(self) -> float:
        return self.last_layer_ratio

    @property
    def label(self) -> str:
        if self.outcome == rule.EXPLORATORY:
            why = f"; {rule.TRAIN_SPLIT_LABEL}" if self.split == "train" else ""
            return f"exploratory ({self.seeds} seed{'s' if self.seeds != 1 else ''}{why}; rule v{self.version})"
        return (
            f"Deep Fusion {self.outcome} ({self.seeds} seeds, look {self.look} of {len(rule.LOOKS)}; "
            f"rule v{self.version})"
        )

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "AttentionVerdict":
        if not isinstance(data, dict) or data.get("version") != rule.VERSION:
            got = data.get("version") if isinstance(data, dict) else None
            raise DataError(
                f"verdict record has rule version {got!r}, this code reads v{rule.VERSION}; "
                "rerun deepfusion analyze --force"
            )
        try:
            nulls = dict(
                permutation_null=PermutationNull(**data["permutation_null"]),
                untrained_null=UntrainedNull(**data["untrained_null"]),
            )
            return cls(**{**data, **nulls})
        except (KeyError, TypeError) as err:
            raise DataError(f"verdict record has malformed fields ({err}); rerun deepfusion analyze --force") from None


# ----------------------------------------------------------------------------- input checks


def _as_list(x, name: str, n: int | None) -> list:
    if x is None:
        return None
    if not isinstance(x, (list, tuple)):
        raise DataError(f"{name} must be a list with one array per training seed")
    if n is not None and len(x) != n:
        raise DataError(f"{name} has {len(x)} entries and attention {n}; give one per training seed")
    return list(x)


def _check_seed(s: int, A, y, inst, A0, vis) -> tuple:
    where = f"seed {s + 1}"
    A = np.asarray(A, dtype=np.float64)
    if A.ndim != 5 or A.shape[-1] != A.shape[-2]:
        raise DataError(f"{where}: attention has shape {A.shape}; expected (batches, layers, heads, M, M)")
    B, L, H, M, _ = A.shape
    if B < 1 or L < 2 or H < 1 or M < 2:
        raise DataError(
            f"{where}: attention {A.shape} needs at least 1 batch, 2 layers (the rule compares layers), "
            "1 head and 2 tokens"
        )
    y, inst = np.asarray(y), np.asarray(inst)
    for name, a in (("labels", y), ("instance", inst)):
        if a.shape != (B, M):
            raise DataError(f"{where}: {name} has shape {a.shape}; expected ({B}, {M}) to match attention {A.shape}")
        if not np.issubdtype(a.dtype, np.integer):
            raise DataError(f"{where}: {name} has dtype {a.dtype}; expected integers")
    if vis is None:
        vis = np.ones((B, M, M), dtype=bool)
    else:
        vis = np.asarray(vis)
        if vis.dtype != bool or vis.shape not in ((M, M), (B, M, M)):
            raise DataError(
                f"{where}: visible has shape {vis.shape} and dtype {vis.dtype}; expected bool ({M}, {M}) "
                f"or ({B}, {M}, {M})"
            )
        vis = np.broadcast_to(vis, (B, M, M))
        if not vis.any(-1).all():
            raise DataError(f"{where}: visible has a row with no visible key; every token must see something")
    arrays = [("attention", A)]
    if A0 is not None:
        A0 = np.asarray(A0, dtype=np.float64)
        if A0.shape != A.shape:
            raise DataError(f"{where}: untrained has shape {A0.shape}; expected {A.shape}, like attention")
        arrays.append(("untrained", A0))
    for name, a in arrays:
        if not np.all(np.isfinite(a)):
            raise DataError(f"{where}: {name} has NaN or infinite entries; pass finite softmax weights")
        if np.any(a < 0):
            raise DataError(f"{where}: {name} has negative entries; pass softmax weights, not logits")
        if np.any(a[np.broadcast_to(~vis[:, None, None], a.shape)] > ROW_TOL):
            raise DataError(f"{where}: {name} puts weight on keys that visible hides; check the visible mask")
        dev = np.abs(a.sum(-1) - 1.0).max()
        if dev > ROW_TOL:
            raise DataError(
                f"{where}: {name} rows do not sum to 1 (off by up to {dev:.3g}); pass row-normalised "
                "weights (softmax over the visible keys)"
            )
    for b in range(B):
        classes, counts = np.unique(y[b], return_counts=True)
        if classes.size < 2:
            raise DataError(f"{where}, batch {b + 1}: the labels hold {classes.size} class; the rule needs at least 2")
        per_sample = {}
        for i, c in zip(inst[b], y[b]):
            if per_sample.setdefault(int(i), int(c)) != int(c):
                raise DataError(
                    f"{where}, batch {b + 1}: instance {int(i)} carries labels {per_sample[int(i)]} and "
                    f"{int(c)}; the views of one sample must share its label"
                )
        samples = np.unique(inst[b], return_index=True)[1]
        sc, sn = np.unique(y[b][samples], return_counts=True)
        if sn.min() < 2:
            raise DataError(
                f"{where}, batch {b + 1}: class {int(sc[sn.argmin()])} has one sample; every class needs "
                "at least 2 samples in a batch (a token needs another sample of its class)"
            )
    return A, y, inst, A0, vis


FILE_KEYS = ("attention", "labels", "instance")  # required; "untrained" and "visible" are optional


def load_attention_file(path) -> dict:
    """One seed's arrays from an ``--attention`` file (.npz): attention, labels, instance, and
    untrained and visible when present (None otherwise). Shapes are checked by ``analyze_attention``."""
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise DataError(f"--attention {path}: no such file; give an .npz written with numpy.savez") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise DataError(
            f"--attention {path}: not a readable .npz ({type(err).__name__}); write it with "
            "numpy.savez(path, attention=..., labels=..., instance=...)"
        ) from None
    missing = [k for k in FILE_KEYS if k not in data]
    if missing:
        raise DataError(
            f"--attention {path}: missing array(s) {', '.join(missing)}; the file needs attention "
            "(B, L, H, M, M), labels (B, M) and instance (B, M) (older run folders: rerun deepfusion "
            "analyze --force)"
        )
    unknown = sorted(set(data) - set(FILE_KEYS) - {"untrained", "visible"})
    if unknown:
        raise DataError(
            f"--attention {path}: unknown array(s) {', '.join(unknown)}; allowed: attention, labels, "
            "instance, untrained, visible"
        )
    return {k: data.get(k) for k in FILE_KEYS + ("untrained", "visible")}


# ----------------------------------------------------------------------------- the statistic


def renormalised(A, inst, vis) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Head-averaged attention outside each token's own views, rows renormalised: (L, M, M); the
    uniform matrix over the same keys (M, M); attention on the own views per layer (L,). A row with
    no weight outside its own views counts as uniform over them (it carries no class information)."""
    own = inst[:, None] == inst[None, :]
    keys = vis & ~own
    n_keys = keys.sum(1, keepdims=True)
    U = np.where(n_keys > 0, keys / np.maximum(n_keys, 1), 0.0)
    off = A * keys  # (L, H, M, M)
    D = off.sum(-1, keepdims=True)
    R = np.where(D > 0, off / np.where(D > 0, D, 1.0), U).mean(1)
    own_mass = (A * own).sum(-1).mean((-2, -1))
    return R, U, own_mass


def batch_statistics(A, y, inst, vis) -> dict:
    """One batch (L, H, M, M): sample-level matrices, sample ids and labels, per-layer share,
    chance, ratio and own-view mass."""
    R, U, own_mass = renormalised(A, inst, vis)
    S, ids = sample_matrices(R, inst)
    Ub, _ = sample_matrices(U, inst)
    first = np.unique(inst, return_index=True)[1]
    ys = y[first]
    same = (ys[:, None] == ys[None, :]).astype(np.float64)
    M = A.shape[-1]
    share, chance = (S * same).sum((-2, -1)) / M, float((Ub * same).sum()) / M
    return {
        "S": S,
        "U": Ub,
        "ids": ids,
        "labels": ys,
        "share": share,
        "chance": chance,
        "ratio": share / chance,
        "own": own_mass,
    }


def seed_layers(A, y, inst, vis) -> tuple[np.ndarray, list[dict]]:
    """(L,) ratio per layer averaged over the seed's batches, and each batch's statistics."""
    stats = [batch_statistics(A[b], y[b], inst[b], vis[b]) for b in range(A.shape[0])]
    return np.mean([s["ratio"] for s in stats], axis=0), stats


def _p(null, measured: float) -> float:
    return float((1 + np.sum(null >= measured - 1e-12)) / (null.size + 1))


def _checked_inputs(attention, labels, instance, untrained, visible, split: str, n_perm: int):
    """Every seed's checked arrays (``_check_seed``) and the label of every sample id across seeds."""
    if split not in ("train", "test"):
        raise DataError(f"split={split!r} is not valid; choose test or train")
    if n_perm < rule.MIN_PERMUTATIONS:
        raise DataError(f"n_perm={n_perm}: the permutation null needs at least {rule.MIN_PERMUTATIONS}")
    attention = _as_list(attention, "attention", None)
    if not attention:
        raise DataError("attention is empty; give one array per training seed")
    S = len(attention)
    labels, instance = _as_list(labels, "labels", S), _as_list(instance, "instance", S)
    untrained, visible = _as_list(untrained, "untrained", S), _as_list(visible, "visible", S)
    seeds = [
        _check_seed(
            s,
            attention[s],
            labels[s],
            instance[s],
            untrained[s] if untrained else None,
            visible[s] if visible else None,
        )
        for s in range(S)
    ]
    L = seeds[0][0].shape[1]
    if any(a[0].shape[1] != L for a in seeds):
        raise DataError(f"seeds have different layer counts ({[a[0].shape[1] for a in seeds]}); give one model's seeds")
    sample_label: dict[int, int] = {}
    for s, (_, y, inst, _, _) in enumerate(seeds):
        for i, c in zip(inst.ravel(), y.ravel()):
            if sample_label.setdefault(int(i), int(c)) != int(c):
                raise DataError(
                    f"instance {int(i)} carries label {sample_label[int(i)]} in one batch and {int(c)} in "
                    f"another (seed {s + 1}); ids name samples of the split, one label each"
                )
    return seeds, sample_label


def _permutation_null(
    stats, sample_label: dict, effect: float, trend: float, n_perm: int, seed: int
) -> PermutationNull:
    """The pooled EFFECT and TREND under ``n_perm`` label permutations shared by every seed and batch."""
    universe = np.array(sorted(sample_label))
    perms = shared_permutations(np.array([sample_label[i] for i in universe]), n_perm, seed)  # (P, U)
    perm_seed = np.stack(
        [
            np.mean(
                [permuted_ratios(b["S"], b["U"], perms[:, np.searchsorted(universe, b["ids"])]) for b in st], axis=0
            )
            for st in stats
        ],
        axis=1,
    )  # (P, S, L)
    perm_layers = perm_seed.mean(1)
    perm_effect, perm_trend = perm_layers[:, -1], rule.slopes(perm_seed).mean(1)
    return PermutationNull(
        _p(perm_effect, effect),
        _p(perm_trend, trend),
        float(np.quantile(perm_effect, 0.975)),
        float(np.quantile(perm_trend, 0.975)),
        np.quantile(perm_layers, 0.975, axis=0).tolist(),
        int(n_perm),
        int(universe.size),
    )


def analyze_attention(
    attention,
    labels,
    instance,
    untrained=None,
    visible=None,
    *,
    split: str = "test",
    n_perm: int = rule.MIN_PERMUTATIONS,
    seed: int = 0,
) -> AttentionVerdict:
    """Rule v3 on attention of one or more training seeds (one list entry per seed; module docstring).

    ``split``: the split the batches come from ("train" makes the verdict exploratory); ``n_perm``:
    label permutations (at least 200); ``seed``: draws the permutations."""
    seeds, sample_label = _checked_inputs(attention, labels, instance, untrained, visible, split, n_perm)
    S, L = len(seeds), seeds[0][0].shape[1]
    per_seed, stats = zip(*[seed_layers(A, y, inst, vis) for A, y, inst, _, vis in seeds])
    per_seed = np.array(per_seed)  # (S, L)
    effect_s, trend_s = per_seed[:, -1], rule.slopes(per_seed)
    perm_null = _permutation_null(stats, sample_label, effect_s.mean(), trend_s.mean(), n_perm, seed)
    u_layers = None
    if seeds[0][3] is not None:
        u_layers = np.array([seed_layers(A0, y, inst, vis)[0] for _, y, inst, A0, vis in seeds])
    d = rule.decide(
        effect_s,
        trend_s,
        perm_null.effect_p,
        perm_null.trend_p,
        None if u_layers is None else u_layers[:, -1],
        None if u_layers is None else rule.slopes(u_layers),
        split,
    )
    untrained_null = UntrainedNull(available=False)
    if u_layers is not None:
        untrained_null = UntrainedNull(
            True,
            float(u_layers[:, -1].mean()),
            float(rule.slopes(u_layers).mean()),
            u_layers.mean(0).tolist(),
            d["untrained_effect_difference_ci"],
            d["untrained_trend_difference_ci"],
        )
    flat = [b for st in stats for b in st]
    warnings = [f"--split train: {rule.TRAIN_SPLIT_LABEL}"] if split == "train" else []
    return AttentionVerdict(
        outcome=d["outcome"],
        rule_outcome=d["rule_outcome"],
        decided_by=d["decided_by"],
        would_change=d["would_change"],
        seeds=S,
        batches=[int(a[0].shape[0]) for a in seeds],
        tokens=int(seeds[0][0].shape[-1]),
        classes=len(set(sample_label.values())),
        split=split,
        look=d["look"],
        level=d["level"],
        next_look_seeds=d["next_look_seeds"],
        line=rule.LINE,
        layers=per_seed.mean(0).tolist(),
        layers_ci=[rule.t_interval(per_seed[:, l], d["level"]) for l in range(L)],
        per_seed_layers=per_seed.tolist(),
        share=np.mean([b["share"] for b in flat], axis=0).tolist(),
        chance=[float(np.mean([b["chance"] for b in flat]))] * L,
        own_view=np.mean([b["own"] for b in flat], axis=0).tolist(),
        last_layer_ratio=float(effect_s.mean()),
        effect_ci=d["effect_ci"],
        trend=float(trend_s.mean()),
        trend_ci=d["trend_ci"],
        per_seed_effect=effect_s.tolist(),
        per_seed_trend=trend_s.tolist(),
        permutation_null=perm_null,
        untrained_null=untrained_null,
        conditions=d["conditions"],
        warnings=warnings,
        seed=int(seed),
    )
