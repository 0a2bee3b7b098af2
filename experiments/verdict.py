"""The Deep Fusion rule, version 3: a class-specific ratio, training seeds as the unit, a
pre-registered sequential plan, nulls that are exact across seeds.

The thresholds below were fixed in code, with the plan and its calibration tests, before any run
they judge was analysed. Every record stores ``RULE`` and ``VERSION``.

Statistic (``experiments.attention_verdict`` computes it). For token i, drop the attention it puts
on its own views (itself and its positive view) and renormalise the rest of its row; its SHARE is
the part of that rest that falls on other samples of its class. The batch's ratio is the mean share
over the mean share under uniform attention over the same visible, non-own tokens (chance).
Heads are averaged after the renormalisation. A ratio of 1 is chance; attention that only finds a
token's own views, or only avoids them, leaves it at 1. The attention on a token's own views is
reported beside it, never mixed into it.

Seed-level quantities. For training seed s, r_s[l] is the ratio of layer l averaged over that
seed's analysis batches. EFFECT_s = r_s[L-1] (the last layer); TREND_s = the least-squares slope
of r_s[l] on l (ratio units per layer). EFFECT and TREND are their means over seeds; intervals are
t-intervals over seeds (the seed is the unit: batches only enter through each seed's mean).

Sequential plan (pre-registered). Looks at 6, 12 and 24 training seeds. The one-sided level 0.025
is spent in three equal parts, ALPHA_LOOK = 0.025 / 3 per look and per direction (Bonferroni over
the looks: at most 2.5% wrong "observed" over the whole plan when the true effect is on the line,
at most 2.5% wrong "not observed" when it is above). At a look with S seeds the interval is
mean +- t_{1 - ALPHA_LOOK, S-1} * sd / sqrt(S). With S between two looks the earlier look's level
applies to the interval printed for all S seeds, but only the planned counts decide: any other count
is "exploratory" and names the look to analyse (deciding at every count from 6 to 24 would raise the
wrong-"observed" rate on the line from 2.1% to 4.0% in a simulation). Fewer than 6 seeds never decide:
the outcome is "exploratory (k seeds)" with a two-sided 95% t-interval (none with one seed).

Outcome at a look:
- **observed** iff EFFECT's interval lies above LINE, TREND's above 0, the label-permutation p of
  EFFECT and of TREND are each <= NULL_P, and the paired per-seed differences trained - untrained
  of EFFECT and TREND each have an interval above 0 (without the untrained head's attention this
  null is not available and "observed" cannot be reached);
- **not observed** iff EFFECT's interval lies below LINE;
- **inconclusive** otherwise: the next look's seed count is named; at the last look the plan stops.
On the training split the rule's outcome is kept beside the verdict, but the verdict is
"exploratory": structure on the data the head was trained on is not evidence of generalising
structure (a nuisance feature correlated with the labels there passes everything).

Label permutation (``experiments.nulls``): one permutation of the per-sample labels of the
analysed samples per draw, the same for every seed and batch, chance recomputed in each batch,
the pooled EFFECT and TREND recomputed; p = (1 + #{draws >= measured}) / (P + 1), exact for the
pooled seeds even when seeds analyse the same samples.

Why LINE = 1.25: at 10 classes it is the ratio at which each other sample of the token's class
gets about 1.3 times the weight of a sample of another class; below it a label-sorted attention map
shows no block a reader would see. Why 6 seeds: with fewer, no distribution-free test of the seed
mean reaches 2.5% (the smallest sign-test p with 3 seeds is 1/8), and two groups of seeds with
their mean on the line were called observed in 12.5% of draws at 3 seeds under rule v2.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import t as student_t

VERSION = 3
LINE = 1.25  # the effect-size line: the last layer's ratio to chance
LOOKS = (6, 12, 24)  # the plan's seed counts
ALPHA = 0.025  # one-sided, spent over the looks
ALPHA_LOOK = ALPHA / len(LOOKS)  # per look and per direction
NULL_P = 0.025  # the permutation p-value EFFECT and TREND must each reach
EXPLORATORY_LEVEL = 0.025  # one-sided level of the exploratory (two-sided 95%) interval
MIN_PERMUTATIONS = 200
OBSERVED, NOT_OBSERVED, INCONCLUSIVE, EXPLORATORY = "observed", "not observed", "inconclusive", "exploratory"
OUTCOMES = (OBSERVED, NOT_OBSERVED, INCONCLUSIVE, EXPLORATORY)
TRAIN_SPLIT_LABEL = "training split: not evidence of generalising structure"

RULE = (
    f"Deep Fusion verdict v{VERSION}. SHARE = attention a token puts on other samples of its class as a part of the "
    "attention it puts outside its own views (self and positive view removed, row renormalised, heads averaged); "
    "ratio = mean SHARE over its value under uniform attention. Per training seed: layer ratios averaged over its "
    "batches; EFFECT = last layer's ratio, TREND = least-squares slope of the ratio over layers; both averaged over "
    f"seeds with t-intervals over seeds. Plan: looks at {'/'.join(map(str, LOOKS))} seeds, one-sided alpha "
    f"{ALPHA} spent as {ALPHA_LOOK:.4f} per look and direction; decisions only at those counts; "
    f"fewer than {LOOKS[0]} seeds or "
    "another count: exploratory. OBSERVED "
    f"iff EFFECT's interval > {LINE}, TREND's interval > 0, permutation p of EFFECT and TREND <= {NULL_P} (one "
    "permutation of per-sample labels per draw, shared by all seeds and batches, >= "
    f"{MIN_PERMUTATIONS} draws), and the paired trained - untrained differences of EFFECT and TREND with "
    f"intervals > 0. NOT OBSERVED iff EFFECT's interval < {LINE}. INCONCLUSIVE otherwise (next look named). "
    "Training split: exploratory whatever the rule says."
)


def look(seeds: int) -> tuple[int, float, int | None]:
    """(look number, one-sided level per direction, seeds the next look needs) for ``seeds`` seeds.

    Look 0 is the exploratory stage (fewer than ``LOOKS[0]`` seeds, never a decision); its level is
    that of a two-sided 95% interval. The next look is None after the last."""
    if seeds < LOOKS[0]:
        return 0, EXPLORATORY_LEVEL, LOOKS[0]
    k = sum(seeds >= n for n in LOOKS)
    return k, ALPHA_LOOK, (LOOKS[k] if k < len(LOOKS) else None)


def slopes(layers) -> np.ndarray:
    """Least-squares slope over the layer index of each row of ``layers`` (..., L): ratio per layer."""
    v = np.asarray(layers, dtype=np.float64)
    x = np.arange(v.shape[-1]) - (v.shape[-1] - 1) / 2.0
    return (v * x).sum(-1) / (x**2).sum()


def t_interval(values, level: float) -> list[float] | None:
    """mean +- t_{1-level, S-1} sd / sqrt(S) over the per-seed ``values``; None with one seed."""
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        return None
    half = float(student_t.ppf(1 - level, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return [float(v.mean() - half), float(v.mean() + half)]


def seeds_to_decide(values, level_look: float = ALPHA_LOOK, line: float = LINE, cap: int = 1000) -> int | None:
    """The smallest seed count at which an interval of this mean and seed spread would clear
    ``line`` (at the per-look level); None when the mean is on the line or no count up to ``cap`` does."""
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        return None
    gap, sd = abs(float(v.mean()) - line), float(v.std(ddof=1))
    if gap == 0:
        return None
    if sd == 0:
        return max(2, v.size)
    for n in range(max(2, LOOKS[0]), cap + 1):
        if student_t.ppf(1 - level_look, n - 1) * sd / np.sqrt(n) < gap:
            return n
    return None


def _fmt(ci) -> str:
    return "n/a" if ci is None else f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def _outcome(e, k, next_seeds, effect, trend, e_ci, t_ci, d_e, d_t, effect_p, trend_p, conditions, have_untrained):
    """The rule's outcome at look ``k`` (of :func:`look`), what decided it and what would change it (words)."""
    S = int(e.size)
    need = seeds_to_decide(e)
    more = (
        "no seed count would decide it at this spread"
        if need is None
        else f"at this seed spread about {max(need - S, 0)} more seeds would decide it"
    )
    if k == 0:
        rule_outcome = EXPLORATORY
        why = (
            f"{S} seed{'s' if S != 1 else ''} cannot decide (the plan's first look needs {LOOKS[0]}); last-layer "
            f"ratio {effect:.2f}, 95% interval {_fmt(e_ci)}"
        )
        change = f"train {LOOKS[0] - S} more seed(s) for the first look"
    elif S not in LOOKS:  # deciding at every count would spend alpha at unplanned looks (4% instead of 2.5%)
        rule_outcome = EXPLORATORY
        why = (
            f"{S} seeds are not a look of the plan ({'/'.join(map(str, LOOKS))} seeds), which decides only at "
            f"those counts; last-layer ratio {effect:.2f}, interval {_fmt(e_ci)} at look {k}'s level"
        )
        change = f"analyse the first {LOOKS[k - 1]} seeds (look {k})" + (
            f" or train {next_seeds - S} more for look {k + 1}" if next_seeds else ""
        )
    elif all(conditions.values()):
        rule_outcome = OBSERVED
        why = (
            f"last-layer ratio {effect:.2f}, interval {_fmt(e_ci)} above {LINE}; trend {trend:+.3f}/layer "
            f"{_fmt(t_ci)} above 0; permutation p {effect_p:.3f} and {trend_p:.3f}; above the untrained head "
            f"(differences {_fmt(d_e)}, {_fmt(d_t)})"
        )
        change = "an interval reaching the line, a null reaching the measurement"
    elif e_ci[1] < LINE:
        rule_outcome = NOT_OBSERVED
        why = f"last-layer ratio {effect:.2f}, interval {_fmt(e_ci)} below {LINE}"
        change = f"an interval reaching {LINE}"
    else:
        rule_outcome = INCONCLUSIVE
        failed = [name.replace("_", " ") for name, ok in conditions.items() if not ok]
        if not have_untrained:
            failed = [f for f in failed if "untrained" not in f] + ["untrained-head null not available"]
        straddle = (
            f"interval {_fmt(e_ci)} straddles {LINE}" if e_ci[0] <= LINE else f"interval {_fmt(e_ci)} above {LINE}"
        )
        why = f"last-layer ratio {effect:.2f}, {straddle}: inconclusive (failed: {', '.join(failed)})"
        nxt = (
            f"the plan's next look needs {next_seeds} seeds"
            if next_seeds
            else "this was the plan's last look: it stops inconclusive"
        )
        change = f"{more}; {nxt}" if e_ci[0] <= LINE else nxt
    return rule_outcome, why, change


def decide(
    effect_per_seed,
    trend_per_seed,
    effect_p: float,
    trend_p: float,
    untrained_effect=None,
    untrained_trend=None,
    split: str = "test",
) -> dict:
    """The v3 outcome from per-seed EFFECT and TREND, their permutation p-values and (optionally)
    the untrained head's per-seed EFFECT and TREND: outcome, conditions, intervals and the words
    that say what decided it and what would change it."""
    e = np.asarray(effect_per_seed, dtype=np.float64)
    tr = np.asarray(trend_per_seed, dtype=np.float64)
    S = int(e.size)
    k, level, next_seeds = look(S)
    effect, trend = float(e.mean()), float(tr.mean())
    e_ci, t_ci = t_interval(e, level), t_interval(tr, level)
    have_untrained = untrained_effect is not None
    d_e = d_t = None
    if have_untrained:
        d_e = t_interval(e - np.asarray(untrained_effect, dtype=np.float64), level)
        d_t = t_interval(tr - np.asarray(untrained_trend, dtype=np.float64), level)
    conditions = {
        "effect_interval_above_line": e_ci is not None and e_ci[0] > LINE,
        "trend_interval_above_0": t_ci is not None and t_ci[0] > 0,
        "effect_above_permutation_null": effect_p <= NULL_P,
        "trend_above_permutation_null": trend_p <= NULL_P,
        "effect_above_untrained_head": d_e is not None and d_e[0] > 0,
        "trend_above_untrained_head": d_t is not None and d_t[0] > 0,
    }
    rule_outcome, why, change = _outcome(
        e, k, next_seeds, effect, trend, e_ci, t_ci, d_e, d_t, effect_p, trend_p, conditions, have_untrained
    )
    outcome = rule_outcome
    if split == "train":
        outcome = EXPLORATORY
        why = f"{TRAIN_SPLIT_LABEL}; the rule alone says {rule_outcome}: {why}"
    return {
        "outcome": outcome,
        "rule_outcome": rule_outcome,
        "look": k,
        "level": level,
        "next_look_seeds": next_seeds,
        "effect": effect,
        "effect_ci": e_ci,
        "trend": trend,
        "trend_ci": t_ci,
        "untrained_effect_difference_ci": d_e,
        "untrained_trend_difference_ci": d_t,
        "conditions": conditions,
        "decided_by": why,
        "would_change": change,
    }
