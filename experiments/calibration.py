"""Rule v3 on synthetic attention whose answer is known (``deepfusion analyze --calibrate``).

Every case goes through ``analyze_attention``, the code path of real runs, at the geometry of a
real analysis: the digits preset's (10 classes x 7 samples x 2 views = 140 tokens, 4 layers, 5
disjoint batches per seed, drawn from a split of 36 samples per class, so seeds share nearly all
their samples) or the theory data's (4 classes x 16 x 2 = 128 tokens, 4 layers, 5 batches). Each
token's logits are ``g_l [same class, not own view] + own_l [own view] + hub[key sample] +
SIGMA * noise``, softmax over the row; ``g_l`` is solved so that layer l's ratio is the case's
target for that seed. Seeds differ: a seed's last-layer ratio is the case's plus SPREAD x a normal
draw (in ratio units; real digits runs spread 0.10 to 0.32), the earlier layers scaled alike. A
sample's ``hub`` offset (how much every token attends to it) is fixed across seeds, as a test
image is the same image in every seed. The untrained head has no class structure unless the case
says otherwise.

Sequential cases follow the pre-registered plan: 6 seeds, then 12 and 24 while inconclusive.
"""

from __future__ import annotations

import numpy as np

from deepfusion.experiments.attention_verdict import analyze_attention
from deepfusion.experiments.metrics import pair_masks
from deepfusion.experiments.verdict import EXPLORATORY, INCONCLUSIVE, LOOKS, NOT_OBSERVED, NULL_P, OBSERVED

SIGMA = 0.3  # logit noise
HUB = 0.3  # spread of the per-sample logit offsets, fixed across seeds
GEOMETRIES = {
    "digits": dict(classes=10, per_class=7, layers=4, batches=5, split_per_class=36),
    "theory": dict(classes=4, per_class=16, layers=4, batches=5, split_per_class=100),
}
RISE = (0.0, 1 / 3, 2 / 3, 1.0)  # the planted profile: fraction of the last layer's excess per layer


def gain_for_ratio(ratio: float, C: int, n: int) -> float:
    """The same-class logit gain that puts ``ratio`` x chance on other samples of the class, own
    views removed (noise-free rows of a two-view batch)."""
    same, other = 2 * (n - 1), 2 * n * (C - 1)
    target = ratio * same / (same + other)
    if not 0 < target < 1:
        raise ValueError(f"ratio {ratio} is not reachable with {C} classes of {n}")
    return float(np.log(target * other / (same * (1 - target))))


class World:
    """The analysed split of one draw: sample ids, labels and per-sample offsets, shared by its seeds."""

    def __init__(self, rng, geometry: str = "digits", class_probs=None, hub: float = HUB):
        g = GEOMETRIES[geometry]
        self.g, self.rng = g, rng
        C, U = g["classes"], g["classes"] * g["split_per_class"]
        floor = 2 * g["batches"]  # every class can give each batch two samples
        self.labels = (
            np.repeat(np.arange(C), g["split_per_class"])
            if class_probs is None
            else np.concatenate([np.repeat(np.arange(C), floor), rng.choice(C, size=U - C * floor, p=class_probs)])
        )
        self.hub = hub * rng.standard_normal(U)
        self.balanced = class_probs is None

    def batches(self) -> list[np.ndarray]:
        """One seed's disjoint analysis batches (sample ids)."""
        g, rng = self.g, self.rng
        if self.balanced:
            per = {c: rng.permutation(np.flatnonzero(self.labels == c)) for c in range(g["classes"])}
            return [
                np.concatenate([per[c][b * g["per_class"] : (b + 1) * g["per_class"]] for c in range(g["classes"])])
                for b in range(g["batches"])
            ]
        # unbalanced: two samples of every class in each batch, the rest drawn at random, disjoint
        per = {c: rng.permutation(np.flatnonzero(self.labels == c)) for c in range(g["classes"])}
        fixed = [np.concatenate([per[c][2 * b : 2 * b + 2] for c in range(g["classes"])]) for b in range(g["batches"])]
        rest = rng.permutation(np.setdiff1d(np.arange(self.labels.size), np.concatenate(fixed)))
        k = g["classes"] * (g["per_class"] - 2)
        return [np.concatenate([fixed[b], rest[b * k : (b + 1) * k]]) for b in range(g["batches"])]


def seed_attention(world: World, ratios, own=None, nuisance=None) -> tuple:
    """(B, L, 1, M, M) attention, labels and instance ids of one seed at per-layer ``ratios``.

    ``own``: logit offset on a token's own views per layer; ``nuisance``: per-sample group ids that
    the class term follows instead of the labels."""
    g, rng = world.g, world.rng
    C, n = g["classes"], g["per_class"]
    group = world.labels if nuisance is None else nuisance
    A, Y, I = [], [], []
    for ids in world.batches():
        inst = np.concatenate([ids, ids])
        y, grp = world.labels[inst], group[inst]
        pairs = pair_masks(grp, inst)  # the class term follows the groups
        same, own_m = pairs["same_other"], pairs["self"] | pairs["positive"]
        gains = np.array([gain_for_ratio(r, C, n) for r in ratios])
        offsets = np.zeros(len(ratios)) if own is None else np.asarray(own, dtype=float)
        logits = (
            gains[:, None, None] * same
            + offsets[:, None, None] * own_m
            + world.hub[inst][None, None, :]
            + SIGMA * rng.standard_normal((len(ratios), inst.size, inst.size))
        )
        logits -= logits.max(-1, keepdims=True)
        a = np.exp(logits)
        A.append((a / a.sum(-1, keepdims=True))[:, None])
        Y.append(y)
        I.append(inst)
    return np.array(A), np.array(Y), np.array(I)


def seed_ratios(last: float, spread: float, rng, profile=RISE) -> list[float]:
    """One seed's per-layer ratios: the case's last-layer ratio plus its seed effect, scaled by ``profile``."""
    top = last + spread * rng.standard_normal()
    return [1.0 + (top - 1.0) * f for f in profile]


class Case:
    """A calibration case: how to make one seed, how many seeds, the split, and the answer expected."""

    def __init__(
        self, what, expected, seed_fn, seeds=None, geometry="digits", split="test", world=None, untrained_fn=None
    ):
        self.what, self.expected, self.seed_fn, self.seeds = what, expected, seed_fn, seeds
        self.geometry, self.split, self.world, self.untrained_fn = geometry, split, world or {}, untrained_fn

    def run(self, rng, n_perm: int, seed: int):
        """The verdict of one draw: at ``seeds`` seeds, or by the plan's looks when ``seeds`` is None."""
        world = World(rng, self.geometry, **self.world)
        data, counts = [], ([self.seeds] if self.seeds else list(LOOKS))
        for count in counts:
            while len(data) < count:
                i = len(data)
                A, y, inst = self.seed_fn(world, rng, i)
                A0 = (self.untrained_fn or _flat_untrained)(world, rng, i)
                data.append((A, y, inst, A0))
            att, lab, ins, un = (list(x) for x in zip(*data))
            v = analyze_attention(att, lab, ins, un, split=self.split, n_perm=n_perm, seed=seed)
            if v.outcome != INCONCLUSIVE:
                break
        return v


def _flat_untrained(world, rng, i):
    return seed_attention(world, [1.0] * world.g["layers"])[0]


def _rise(last, spread):
    return lambda world, rng, i: seed_attention(world, seed_ratios(last, spread, rng))


def _two_group(world, rng, i):  # half the seeds fuse to 1.5x, the rest stay at chance: mean 1.25
    return seed_attention(world, seed_ratios(1.5 if rng.random() < 0.5 else 1.0, 0.10, rng))


def _instance_only(world, rng, i):  # attention grows on the token's own views only
    return seed_attention(world, [1.0] * 4, own=(0.0, 1.5, 3.0, 4.5))


def _avoid_own(world, rng, i):  # attention avoids the token's own views, uniform otherwise
    return seed_attention(world, [1.0] * 4, own=(-4.0,) * 4)


def _nuisance(world, rng, i):  # a feature that matches the label on 90% of training samples
    if not hasattr(world, "nuisance"):
        flip = rng.random(world.labels.size) < 0.1
        world.nuisance = np.where(flip, rng.integers(0, world.g["classes"], world.labels.size), world.labels)
    return seed_attention(world, seed_ratios(1.5, 0.15, rng), nuisance=world.nuisance)


CASES = {
    "none": Case("no class structure, plan", "not observed", _rise(1.0, 0.0)),
    "planted": Case("rise to 1.5x, spread 0.15, plan", "observed", _rise(1.5, 0.15)),
    "planted_6": Case("rise to 1.5x, spread 0.15, 6 seeds", "observed (power)", _rise(1.5, 0.15), seeds=6),
    "planted_s32": Case("rise to 1.5x, spread 0.32, plan", "observed (power)", _rise(1.5, 0.32)),
    "planted_1": Case("rise to 1.5x, 1 seed", "exploratory", _rise(1.5, 0.15), seeds=1),
    "two_group_3": Case("two groups (1.5x / 1.0x), mean on line, 3", "exploratory", _two_group, seeds=3),
    "two_group_6": Case("two groups, mean on the line, 6 seeds", "<= 5% observed", _two_group, seeds=6),
    "two_group_12": Case("two groups, mean on the line, 12 seeds", "<= 5% observed", _two_group, seeds=12),
    "shared": Case(
        "shared samples, unbalanced labels, hubs, 6",
        "<= 5% observed",
        lambda world, rng, i: seed_attention(world, [1.0] * 4),
        seeds=6,
        world=dict(class_probs=[0.4, 0.2, 0.1, 0.06, 0.06, 0.06, 0.03, 0.03, 0.03, 0.03], hub=1.0),
    ),
    "instance_only": Case("own-view attention rising, 6 seeds", "never observed", _instance_only, seeds=6),
    "avoid_own": Case("own views avoided, 6 seeds", "never observed", _avoid_own, seeds=6),
    "untrained": Case(
        "rise to 1.5x, untrained head alike, 6",
        "<= 5% observed",
        _rise(1.5, 0.15),
        seeds=6,
        untrained_fn=lambda world, rng, i: seed_attention(world, seed_ratios(1.5, 0.15, rng))[0],
    ),
    "train_nuisance": Case("train split, nuisance ~ labels, 6", "exploratory", _nuisance, seeds=6, split="train"),
    "theory_none": Case("theory data: no structure, plan", "not observed", _rise(1.0, 0.0), geometry="theory"),
    "theory_planted": Case("theory data: rise to 1.5x, 0.15, plan", "observed", _rise(1.5, 0.15), geometry="theory"),
}
NULL_CASES = (
    "none",
    "two_group_6",
    "two_group_12",
    "shared",
    "instance_only",
    "avoid_own",
    "untrained",
    "train_nuisance",
    "theory_none",
)


def calibrate(draws: int = 100, seed: int = 0, cases=tuple(CASES), n_perm: int = 200) -> list[dict]:
    """For each case, the share of ``draws`` with each outcome, how often the permutation p of
    EFFECT reached NULL_P, and the mean seed count the verdict used."""
    rows = []
    for name in cases:
        case = CASES[name]
        rng = np.random.default_rng([seed, list(CASES).index(name)])
        counts = {OBSERVED: 0, NOT_OBSERVED: 0, INCONCLUSIVE: 0, EXPLORATORY: 0}
        perm_pass, used = 0, 0
        for d in range(draws):
            v = case.run(rng, n_perm, seed=d)
            counts[v.outcome] += 1
            perm_pass += v.permutation_null.effect_p <= NULL_P
            used += v.seeds
        rows.append(
            {
                "case": name,
                "what": case.what,
                "expected": case.expected,
                "draws": draws,
                **{k: c / draws for k, c in counts.items()},
                "perm_pass": perm_pass / draws,
                "seeds": used / draws,
            }
        )
    return rows


def format_calibration(rows: list[dict]) -> str:
    head = (
        f"{'case':<15} {'what':<44} {'expected':<17} {'draws':>5} {'observed':>8} {'not obs.':>8} "
        f"{'inconcl.':>8} {'explor.':>8} {'perm<=.025':>10} {'seeds':>5}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['case']:<15} {r['what']:<44} {r['expected']:<17} {r['draws']:>5} {r[OBSERVED]:>8.1%} "
            f"{r[NOT_OBSERVED]:>8.1%} {r[INCONCLUSIVE]:>8.1%} {r[EXPLORATORY]:>8.1%} {r['perm_pass']:>10.1%} "
            f"{r['seeds']:>5.1f}"
        )
    d, t = GEOMETRIES["digits"], GEOMETRIES["theory"]
    lines.append(
        f"geometry: digits {d['classes']} classes x {d['per_class']} samples x 2 views = "
        f"{2 * d['classes'] * d['per_class']} tokens, {d['layers']} layers, {d['batches']} batches per seed "
        f"from a split of {d['split_per_class']} per class; theory {t['classes']} x {t['per_class']} x 2 = "
        f"{2 * t['classes'] * t['per_class']} tokens. Seed spread in ratio units as named (real digits runs: "
        f"0.10-0.32); logit noise {SIGMA}; per-sample offsets {HUB} (1.0 in 'shared'); 'plan' = looks at "
        f"{'/'.join(map(str, LOOKS))} seeds, 'seeds' = mean seeds used"
    )
    return "\n".join(lines)
