"""The record of ``deepfusion sanity`` (``sanity.json``): typed, versioned, read and written here.

(a) ``Idealised``: untrained idealised layers against the S5 mean-field recursion, one
``IdealisedRow`` per regime and seed, with the tolerances that judged them. (b) ``TrainedHeads``:
the transformer and feed-forward heads trained on the synthetic mixture, measured block by block
(``Block``), the transformer's attention layer by layer (``AttentionLayer``) and its one-seed
verdict. ``SanityResult`` holds both; ``passed`` is (a)'s judgement alone ((b) is never judged).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from deepfusion.errors import DataError

SANITY_VERSION = 1
SANITY_FILE = "sanity.json"


@dataclass(frozen=True)
class IdealisedRow:
    """One regime and seed of (a): the simulation against the recursion."""

    regime: str  # fast | slow | stall
    seed: int
    beta: float
    alpha: float
    r0: float
    max_dm: float  # max over layers of |m_sim - m_mf|
    max_dr: float  # max over layers of |r_sim / r_mf - 1|
    r_ratio_sim: float  # r_L / r_0 of the simulation
    r_ratio_mf: float  # and of the recursion
    m_sim: list[float]
    m_mf: list[float]
    r_sim: list[float]
    r_mf: list[float]
    passed: bool
    failures: list[str]


@dataclass(frozen=True)
class Idealised:
    geometry: dict[str, int]  # C, n, d, layers
    m_tol: float
    r_tol: float
    rows: list[IdealisedRow]
    passed: bool

    @classmethod
    def from_json(cls, data: dict) -> "Idealised":
        return cls(**{**data, "rows": [IdealisedRow(**r) for r in data["rows"]]})


@dataclass(frozen=True)
class Block:
    """Token statistics of one block's input (or the last block's output), averaged over batches."""

    relative_spread: float
    class_mean_cosine: float
    nc1: float
    residual_ratio: float


@dataclass(frozen=True)
class HeadEval:
    """The run's final evaluation, the accuracies the summary shows (None where not computed)."""

    knn: float | None
    linear: float | None
    head_loo1nn: float | None
    random_knn: float | None


@dataclass(frozen=True)
class AttentionLayer:
    """The transformer head's attention in one layer (heads averaged)."""

    ratio: float  # rule v3's ratio to chance
    ratio_ci: list[float] | None  # its interval over seeds (None with one seed)
    same_class_mass: float
    predicted_same_class_mass: float  # S4 from the measured spread and beta_eff
    self_mass: float
    positive_mass: float
    beta_eff: float
    beta_r2: float


@dataclass(frozen=True)
class TrainedHead:
    train_wall_s: float | None  # the training time the run recorded (None for a run that did not record it)
    eval: HeadEval
    blocks: list[Block]
    layers: list[AttentionLayer] = field(default_factory=list)  # empty for heads without attention
    chance: float | None = None  # same-class mass under uniform attention (attention heads)
    verdict: str | None = None  # the one-seed verdict's label and what decided it (attention heads)
    decided_by: str | None = None

    @classmethod
    def from_json(cls, data: dict) -> "TrainedHead":
        return cls(
            **{
                **data,
                "eval": HeadEval(**data["eval"]),
                "blocks": [Block(**b) for b in data["blocks"]],
                "layers": [AttentionLayer(**entry) for entry in data.get("layers", [])],
            }
        )


@dataclass(frozen=True)
class TrainedHeads:
    """(b): the run settings and both heads."""

    preset: str
    overrides: list[str]
    batches: int
    per_class: int
    transformer: TrainedHead
    ffn: TrainedHead

    def heads(self) -> list[tuple[str, TrainedHead]]:
        """(name, record) of each head, in the order the summary prints them."""
        return [("transformer", self.transformer), ("ffn", self.ffn)]

    @classmethod
    def from_json(cls, data: dict) -> "TrainedHeads":
        heads = {k: TrainedHead.from_json(data[k]) for k in ("transformer", "ffn")}
        return cls(**{**data, **heads})


@dataclass(frozen=True)
class SanityResult:
    quick: bool
    idealised: Idealised
    trained: TrainedHeads | None  # None when (b) was not run
    wall_s: float
    passed: bool  # (a) agrees with the theory
    version: int = SANITY_VERSION

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data) -> "SanityResult":
        if not isinstance(data, dict) or data.get("version") != SANITY_VERSION:
            got = data.get("version") if isinstance(data, dict) else None
            raise DataError(
                f"sanity record has version {got!r}, this code reads {SANITY_VERSION}; rerun deepfusion sanity"
            )
        try:
            trained = None if data.get("trained") is None else TrainedHeads.from_json(data["trained"])
            return cls(**{**data, "idealised": Idealised.from_json(data["idealised"]), "trained": trained})
        except (KeyError, TypeError) as err:
            raise DataError(f"sanity record has missing or malformed fields ({err}); rerun deepfusion sanity") from None
