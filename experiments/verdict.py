"""The Deep Fusion verdict, version 2: an effect size, training seeds as the unit, two nulls.

The rule below was fixed in code before any run it judges was analysed, is tested on attention
whose answer is known both ways (``experiments.calibration``), and is stored verbatim, with its
version, in every analysis record.

Measurement. For training seed s, disjoint analysis batch b and layer l, the head-averaged
same-class mass m[s, b, l] (attention on *other* samples of the token's class: itself and its
positive view excluded) over its chance level c (the same mass under uniform attention over the
visible tokens) gives the ratio R = m / c; R = 1 is chance. Batches are averaged within a seed,
seeds averaged with equal weight, giving the pooled per-layer ratio P_l. Three statistics:

- EFFECT = P_{L-1}, the last layer's ratio to chance;
- RISE = P_{L-1} - P_0, how much deeper attention concentrates than the first layer's;
- SPEARMAN = the rank correlation between P_l and l.

Intervals: 95% percentile intervals of a hierarchical bootstrap that resamples training seeds and,
inside each drawn seed, its analysis batches, widened to the t-interval over seeds where that is
wider. Each training seed's batches are its own draw (``experiments.analyze.batch_seed``), so
batches are nested in seeds as the bootstrap assumes; shared batches would make a batch's quirk
common to every seed and the intervals too narrow (a reviewer measured 73% coverage of a nominal
95% interval that way, 96% nested). A percentile bootstrap over 3 seeds has only 10 distinct resamples and is too narrow: in
calibration (``experiments.calibration``, case ``untrained``) it let a head that learned nothing
pass the untrained-head check in 14% of draws. The t-interval (point estimate +- t_{S-1} times the
standard error of the per-seed values, each a mean over that seed's own batches, so batch noise is
in it) is the honest small-sample interval; the union keeps the bootstrap's shape when it is wider.
SPEARMAN's interval takes its width from the spread of the per-seed rank correlations and is
clipped to [-1, 1].
With one seed only the batches are resampled; the interval then says nothing about another
training run, and the verdict is labelled "1 seed".

Nulls, computed on every analysis:
- label permutation: the same attention with class labels permuted across the samples of each
  batch (both views keep one label), >= 200 times; EFFECT and RISE of each permutation, and their
  permutation p-values (1 + #{permutations >= measured}) / (P + 1);
- the untrained head: the same architecture at initialisation, on the same batches and backbone
  features. Its EFFECT and RISE are compared with the trained head's *paired*: the same bootstrap
  draws of seeds and batches for both, and the same t-widening of the per-seed differences, so
  the trained-minus-untrained difference carries the sampling error of both heads.

Outcome:
- **observed** iff all of: EFFECT >= LINE and the lower end of its interval > LINE; RISE > 0 and
  SPEARMAN > 0, each with an interval above 0; EFFECT and RISE each with a permutation p-value
  <= 0.025, and each above the untrained head's: the lower end of the 95% interval of the paired
  difference is above 0;
- **not observed** iff the upper end of EFFECT's interval < LINE;
- **inconclusive** otherwise (the verdict line names the conditions that failed).

Why LINE = 1.25. For C classes of equal size the odds ratio behind a ratio R is
(m / (1 - m)) / (c / (1 - c)); at 10 classes (c ~ 0.09) R = 1.25 means each same-class sample gets
at least ~1.3 times the weight of a sample of another class. Below that a label-sorted attention
map shows no block a reader would see, so a smaller effect is not the paper's "Deep Fusion", however
significant. 1.25 is also the issue's floor; a larger line would make a planted rise to 1.5x chance,
the calibration's positive case, undetectable with 3 seeds of 5 batches.
Why 0.025 and 95%: the conventional two-sided 5% level; each null is a separate one-sided check at
2.5%. The p-value form is exact: a statistic exchangeable with the permutations passes with
probability at most 0.025 (comparing with an interpolated 97.5% quantile of 200 permutations let it
pass 3.2% of the time).
Why paired for the untrained head: its statistic has sampling error of its own; comparing the
trained point estimate with the untrained head's bootstrap quantile alone called a head that
learned nothing "observed" in 25% of calibration draws (case ``untrained``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.stats import rankdata
from scipy.stats import t as student_t

from deepfusion.errors import DataError

VERSION = 2
LINE = 1.25  # the effect-size line: last-layer same-class mass as a multiple of chance
NULL_QUANTILE = 0.975  # reported beside the measurement
NULL_P = 0.025  # the permutation p-value a statistic must reach
CI = (0.025, 0.975)
MIN_PERMUTATIONS = 200
OBSERVED, NOT_OBSERVED, INCONCLUSIVE = "observed", "not observed", "inconclusive"

RULE = (
    f"Deep Fusion verdict v{VERSION}. R = same-class attention mass (self and positive view excluded), "
    "head-averaged, over its chance level under uniform attention; averaged over analysis batches "
    "within a training seed, then over seeds. EFFECT = last layer's R, RISE = last minus first "
    "layer's R, SPEARMAN = rank correlation of R with depth. 95% intervals: hierarchical bootstrap "
    "over seeds and the batches within each seed (each seed draws its own batches), widened to the "
    "t-interval over seeds where wider (batches only with one seed). Nulls: class labels "
    f"permuted within each batch (>= {MIN_PERMUTATIONS} permutations) and the untrained head on the "
    f"same batches. OBSERVED iff EFFECT >= {LINE} with interval lower end > {LINE}; RISE > 0 and "
    "SPEARMAN > 0 with interval lower ends > 0; EFFECT and RISE each with a permutation p-value "
    "(1 + #{perm >= measured}) / (P + 1) <= 0.025 and each above the untrained head's (the paired "
    f"difference's interval lower end > 0). NOT OBSERVED iff EFFECT's interval upper end < {LINE}. "
    "INCONCLUSIVE otherwise."
)


def spearman_with_depth(layer_values) -> np.ndarray:
    """Spearman correlation of each row of ``layer_values`` (..., L) with the layer index 0..L-1.

    Ties get average ranks; a row with no variation gives 0 (no rise), not NaN."""
    v = np.asarray(layer_values, dtype=np.float64)
    L = v.shape[-1]
    rv = rankdata(v, axis=-1)
    rv = rv - rv.mean(-1, keepdims=True)
    ri = np.arange(L) - (L - 1) / 2.0
    den = np.sqrt((rv**2).sum(-1) * (ri**2).sum())
    num = (rv * ri).sum(-1)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def pooled_layers(ratio) -> np.ndarray:
    """(..., S, B, L) ratios -> (..., L): batches averaged within each seed, then seeds averaged."""
    return np.asarray(ratio, dtype=np.float64).mean(-2).mean(-2)


def statistics(layers) -> dict[str, np.ndarray]:
    """EFFECT, RISE and SPEARMAN of pooled per-layer ratios (..., L)."""
    layers = np.asarray(layers, dtype=np.float64)
    return {"effect": layers[..., -1], "rise": layers[..., -1] - layers[..., 0],
            "spearman": spearman_with_depth(layers)}


def bootstrap_layers(ratio, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, L) pooled per-layer ratios of a hierarchical bootstrap of ``ratio`` (S, B, L):
    seeds drawn with replacement, then batches drawn with replacement inside each drawn seed."""
    ratio = np.asarray(ratio, dtype=np.float64)
    S, B, _ = ratio.shape
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, S, size=(n_boot, S)) if S > 1 else np.zeros((n_boot, 1), dtype=int)
    batches = rng.integers(0, B, size=(n_boot, S, B))
    drawn = ratio[seeds[:, :, None], batches]  # (n_boot, S, B, L)
    return pooled_layers(drawn)


def interval(values) -> list[float]:
    lo, hi = np.quantile(np.asarray(values, dtype=np.float64), CI)
    return [float(lo), float(hi)]


def seed_interval(point: float, per_seed, boot) -> list[float]:
    """The bootstrap percentile interval, widened to point +- t_{S-1} SE over the per-seed values."""
    lo, hi = interval(boot)
    per_seed = np.asarray(per_seed, dtype=np.float64)
    S = per_seed.size
    if S < 2:
        return [lo, hi]
    half = float(student_t.ppf(CI[1], S - 1) * per_seed.std(ddof=1) / np.sqrt(S))
    return [min(lo, point - half), max(hi, point + half)]


@dataclass
class Verdict:
    """The outcome of the rule on one analysis and every number it was decided by."""

    outcome: str  # observed | not observed | inconclusive
    decided_by: str  # which condition(s) decided it, in words
    seeds: int
    batches: int
    permutations: int
    line: float
    layers: list[float]  # pooled ratio to chance per layer
    layers_ci: list[list[float]]
    effect: float
    effect_ci: list[float]
    rise: float
    rise_ci: list[float]
    spearman: float
    spearman_ci: list[float]
    permutation_null: dict  # p-values, q975 and mean of EFFECT and RISE; per-layer q975 of the ratio
    untrained_null: dict  # the untrained head's EFFECT, RISE, per-layer ratio, paired difference intervals
    conditions: dict[str, bool]
    version: int = VERSION
    rule: str = RULE
    n_boot: int = 0
    seed: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        scope = "1 seed" if self.seeds == 1 else f"{self.seeds} seeds"
        return f"Deep Fusion {self.outcome} ({scope}; rule v{self.version})"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Verdict":
        if not isinstance(data, dict) or data.get("version") != VERSION:
            got = data.get("version") if isinstance(data, dict) else None
            raise DataError(f"verdict record has rule version {got!r}, this code reads v{VERSION}; "
                            "rerun deepfusion analyze --force")
        return cls(**data)


def _check_shapes(mass, chance, perm_mass, untrained_mass):
    mass = np.asarray(mass, dtype=np.float64)
    if mass.ndim != 3:
        raise DataError(f"masses have shape {mass.shape}; expected (seeds, batches, layers)")
    S, B, L = mass.shape
    if L < 2:
        raise DataError("the Deep Fusion verdict compares layers, and this head has one attention layer; "
                        "train with model.depth >= 2")
    if S < 1 or B < 2:
        raise DataError(f"the verdict needs at least 2 analysis batches per seed, got {B}; use --batches 2 or more")
    chance = np.broadcast_to(np.asarray(chance, dtype=np.float64), mass.shape)
    perm = np.asarray(perm_mass, dtype=np.float64)
    untrained = np.asarray(untrained_mass, dtype=np.float64)
    if perm.ndim != 4 or perm.shape[1:] != mass.shape:
        raise DataError(f"permutation masses have shape {perm.shape}; expected (permutations, {S}, {B}, {L})")
    if untrained.shape != mass.shape:
        raise DataError(f"untrained-head masses have shape {untrained.shape}; expected {mass.shape}")
    for name, a in (("masses", mass), ("chance levels", chance), ("permutation masses", perm),
                    ("untrained-head masses", untrained)):
        if not np.all(np.isfinite(a)):
            raise DataError(f"{name} have non-finite entries; check the captured attention")
    if np.any(chance <= 0):
        raise DataError("a chance level is 0: every token needs another visible sample of its class; "
                        "use --per-class 2 or more")
    return mass, chance, perm, untrained


def deep_fusion_verdict(mass, chance, perm_mass, untrained_mass, n_boot: int = 2000, seed: int = 0,
                        min_permutations: int = MIN_PERMUTATIONS) -> Verdict:
    """Apply the v2 rule (module docstring) to head-averaged same-class masses.

    ``mass`` (S, B, L): seeds x disjoint batches x layers; ``chance`` broadcastable to it;
    ``perm_mass`` (P, S, B, L): the same with labels permuted; ``untrained_mass`` (S, B, L): the
    untrained head on the same batches.
    """
    mass, chance, perm, untrained = _check_shapes(mass, chance, perm_mass, untrained_mass)
    if perm.shape[0] < min_permutations:
        raise DataError(f"{perm.shape[0]} label permutations are too few for the null; use at least "
                        f"{min_permutations}")
    if n_boot < 200:
        raise DataError(f"n_boot={n_boot} is too few for a 95% interval; use at least 200")
    S, B, L = mass.shape
    ratio, untrained_ratio, perm_ratio = mass / chance, untrained / chance, perm / chance
    layers = pooled_layers(ratio)
    point = statistics(layers)
    boot_layers = bootstrap_layers(ratio, n_boot, seed)
    boot = statistics(boot_layers)
    # the untrained head's statistics under the same resampling (same seed: the same draws)
    untrained_layers = pooled_layers(untrained_ratio)
    untrained_boot = statistics(bootstrap_layers(untrained_ratio, n_boot, seed))
    diff = {k: boot[k] - untrained_boot[k] for k in ("effect", "rise")}  # paired: the same draws
    per_seed_untrained = statistics(untrained_ratio.mean(1))
    untrained_point = statistics(untrained_layers)
    perm_layers = pooled_layers(perm_ratio)  # (P, L)
    perm_stats = statistics(perm_layers)

    def q(a):
        return float(np.quantile(a, NULL_QUANTILE))

    per_seed = statistics(ratio.mean(1))  # each seed's statistics from its batch-averaged layers
    ci = {k: seed_interval(float(point[k]), per_seed[k], boot[k]) for k in ("effect", "rise", "spearman")}
    ci["spearman"] = [max(ci["spearman"][0], -1.0), min(ci["spearman"][1], 1.0)]  # a correlation's range
    def p_value(null, measured):  # exact for exchangeable statistics: the measurement counts as one draw
        return float((1 + np.sum(null >= measured)) / (null.size + 1))

    perm_null = {"effect_q975": q(perm_stats["effect"]), "rise_q975": q(perm_stats["rise"]),
                 "effect_p": p_value(perm_stats["effect"], float(point["effect"])),
                 "rise_p": p_value(perm_stats["rise"], float(point["rise"])),
                 "effect_mean": float(perm_stats["effect"].mean()), "rise_mean": float(perm_stats["rise"].mean()),
                 "layers_q975": np.quantile(perm_layers, NULL_QUANTILE, axis=0).tolist()}
    diff_ci = {k: seed_interval(float(point[k] - untrained_point[k]), per_seed[k] - per_seed_untrained[k], diff[k])
               for k in ("effect", "rise")}
    untrained_null = {"effect": float(untrained_point["effect"]), "rise": float(untrained_point["rise"]),
                      "effect_difference_ci": diff_ci["effect"], "rise_difference_ci": diff_ci["rise"],
                      "layers": untrained_layers.tolist()}
    effect, rise, rho = float(point["effect"]), float(point["rise"]), float(point["spearman"])
    conditions = {
        "effect_at_least_line": effect >= LINE,
        "effect_interval_above_line": ci["effect"][0] > LINE,
        "rise_positive_with_interval_above_0": rise > 0 and ci["rise"][0] > 0,
        "spearman_positive_with_interval_above_0": rho > 0 and ci["spearman"][0] > 0,
        "effect_above_permutation_null": perm_null["effect_p"] <= NULL_P,
        "rise_above_permutation_null": perm_null["rise_p"] <= NULL_P,
        "effect_above_untrained_head": untrained_null["effect_difference_ci"][0] > 0,
        "rise_above_untrained_head": untrained_null["rise_difference_ci"][0] > 0,
    }
    if all(conditions.values()):
        outcome, why = OBSERVED, "every condition holds"
    elif ci["effect"][1] < LINE:
        outcome = NOT_OBSERVED
        why = (f"the last layer's ratio to chance, {effect:.2f} [{ci['effect'][0]:.2f}, {ci['effect'][1]:.2f}], "
               f"lies below the {LINE}x line")
    else:
        outcome = INCONCLUSIVE
        why = "failed: " + ", ".join(k.replace("_", " ") for k, ok in conditions.items() if not ok)
    return Verdict(outcome, why, S, B, int(perm.shape[0]), LINE, layers.tolist(),
                   [seed_interval(float(layers[l]), ratio.mean(1)[:, l], boot_layers[:, l]) for l in range(L)], effect, ci["effect"], rise, ci["rise"],
                   rho, ci["spearman"], perm_null, untrained_null, conditions, n_boot=int(n_boot), seed=int(seed))
