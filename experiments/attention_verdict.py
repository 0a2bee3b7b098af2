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

from dataclasses import asdict, dataclass, field

import numpy as np

from deepfusion.errors import DataError
from deepfusion.experiments import verdict as rule
from deepfusion.experiments.attention_inputs import checked_inputs
from deepfusion.experiments.nulls import permuted_ratios, sample_matrices, shared_permutations


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


def _untrained_layers(seeds) -> np.ndarray | None:
    """(S, L) ratio per layer of the untrained head on each seed's batches; None when it was not given."""
    if seeds[0][3] is None:
        return None
    return np.array([seed_layers(A0, y, inst, vis)[0] for _, y, inst, A0, vis in seeds])


def _decide(effect_s, trend_s, perm_null: PermutationNull, u_layers: np.ndarray | None, split: str) -> dict:
    """Rule v3's decision on the per-seed EFFECT and TREND against the permutation and untrained nulls."""
    u_effect = None if u_layers is None else u_layers[:, -1]
    u_trend = None if u_layers is None else rule.slopes(u_layers)
    return rule.decide(effect_s, trend_s, perm_null.effect_p, perm_null.trend_p, u_effect, u_trend, split)


def _untrained_null(u_layers: np.ndarray | None, d: dict) -> UntrainedNull:
    """The untrained head's EFFECT, TREND and layer ratios, with the rule's paired differences."""
    if u_layers is None:
        return UntrainedNull(available=False)
    return UntrainedNull(
        True,
        float(u_layers[:, -1].mean()),
        float(rule.slopes(u_layers).mean()),
        u_layers.mean(0).tolist(),
        d["untrained_effect_difference_ci"],
        d["untrained_trend_difference_ci"],
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
    seeds, sample_label = checked_inputs(attention, labels, instance, untrained, visible, split, n_perm)
    S, L = len(seeds), seeds[0][0].shape[1]
    per_seed, stats = zip(*[seed_layers(A, y, inst, vis) for A, y, inst, _, vis in seeds])
    per_seed = np.array(per_seed)  # (S, L)
    effect_s, trend_s = per_seed[:, -1], rule.slopes(per_seed)
    perm_null = _permutation_null(stats, sample_label, effect_s.mean(), trend_s.mean(), n_perm, seed)
    u_layers = _untrained_layers(seeds)
    d = _decide(effect_s, trend_s, perm_null, u_layers, split)
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
        untrained_null=_untrained_null(u_layers, d),
        conditions=d["conditions"],
        warnings=warnings,
        seed=int(seed),
    )
