"""Typed, versioned records of an attention analysis, read and written in one place.

``RunAnalysis`` is one run folder's ``analysis.json``: the settings, per-layer statistics, the
per-batch same-class masses of the trained and the untrained head, the S4 prediction, the
checkpoint step it describes, and the run's own one-seed verdict (rule v3: exploratory). The
verdict's input, every batch's attention, is the folder's ``attention.npz``.
``PooledAnalysis`` is the analysis of several training seeds of one config: the runs it pools and
the verdict over them. Both convert with ``to_json``/``from_json``; a record of another version is
refused with a message that says how to redo it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import numpy as np

from deepfusion.errors import DataError
from deepfusion.experiments.attention_verdict import AttentionVerdict

RECORD_VERSION = 4  # 3: batches drawn per training seed; 4: rule v3 (no stored permutation masses)

# per-head statistics kept for every layer (means and standard deviations over batches)
HEAD_STATS = (
    "same_class_mass",
    "ratio",
    "self_mass",
    "positive_mass",
    "block_mass",
    "block_distance",
    "effective_rank",
    "beta_eff",
    "beta_r2",
    "predicted_same_class_mass",
    "predicted_block_mass",
    "predicted_self_mass",
)
# statistics of the tokens entering each layer (and of the head's output tokens)
TOKEN_STATS = ("relative_spread", "class_mean_cosine", "nc1", "cdnv", "residual_ratio")


@dataclass
class Settings:
    batches: int
    per_class: int
    seed: int  # the analysis seed asked for
    batch_seed: int | None  # the seed the batches were drawn with (analysis and training seed together);
    # None in a pooled record, whose runs each drew their own
    views: str
    split: str
    n_perm: int
    tokens_per_batch: int
    scope: str
    max_per_class: int | None = None  # the largest per-class count whose batches fit the split


@dataclass
class LayerRecord:
    layer: int
    chance: float  # same-class mass under uniform attention
    heads: dict[str, list[float]]  # HEAD_STATS -> one value per head, mean over batches
    heads_std: dict[str, list[float]]  # the same, standard deviation over batches
    tokens: dict[str, float]  # TOKEN_STATS of the layer's input tokens


def _check_version(data, what: str) -> dict:
    if not isinstance(data, dict):
        raise DataError(f"{what} is not a JSON object; rerun deepfusion analyze --force")
    if data.get("version") != RECORD_VERSION:
        raise DataError(
            f"{what} has record version {data.get('version')!r}, this code reads {RECORD_VERSION}; "
            "redo it with deepfusion analyze --force"
        )
    return data


@dataclass
class RunAnalysis:
    run: str  # the run folder's name
    config_hash: str
    train_seed: int
    step: int  # the checkpoint step the analysis describes
    finished: bool  # whether that checkpoint ended the training
    settings: Settings
    num_classes: int
    num_layers: int
    num_heads: int
    chance: dict[str, float]  # same_class_mass, positive_mass, block_mass
    layers: list[LayerRecord]
    output_tokens: dict[str, float]
    mass: list  # (B, L, H) same-class mass of the trained head (own views excluded, not renormalised)
    untrained_mass: list  # (B, L, H) the untrained head on the same batches
    verdict: AttentionVerdict  # this run alone (1 seed: exploratory)
    layer_prediction: dict = field(default_factory=dict)  # per-layer predictions of the trained layer
    version: int = RECORD_VERSION

    def head_mean(self, name: str) -> np.ndarray:
        """(B, L) head-averaged ``mass`` or ``untrained_mass``."""
        return np.asarray(getattr(self, name), dtype=np.float64).mean(-1)

    def layer_values(self, stat: str) -> np.ndarray:
        """(L, H) per-head means of one of ``HEAD_STATS``."""
        return np.array([layer.heads[stat] for layer in self.layers], dtype=np.float64)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data, what: str = "analysis.json") -> "RunAnalysis":
        data = dict(_check_version(data, what))
        try:
            data["settings"] = Settings(**data["settings"])
            data["layers"] = [LayerRecord(**entry) for entry in data["layers"]]
            data["verdict"] = AttentionVerdict.from_json(data["verdict"])
            return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})
        except (KeyError, TypeError) as err:
            raise DataError(
                f"{what} is missing or has malformed fields ({err}); redo it with deepfusion analyze --force"
            ) from None


@dataclass
class PooledAnalysis:
    runs: list[str]
    train_seeds: list[int]
    steps: list[int]
    config_hash: str  # of the config without train.seed
    settings: Settings
    num_classes: int
    num_layers: int
    num_heads: int
    chance: float
    verdict: AttentionVerdict
    layers: list[dict]  # per layer: pooled means of the head-averaged statistics
    per_run: list[dict]  # per run: seed, step, last-layer ratio, its one-seed outcome
    version: int = RECORD_VERSION

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data, what: str = "pooled analysis") -> "PooledAnalysis":
        data = dict(_check_version(data, what))
        try:
            data["settings"] = Settings(**data["settings"])
            data["verdict"] = AttentionVerdict.from_json(data["verdict"])
            return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})
        except (KeyError, TypeError) as err:
            raise DataError(f"{what} is missing or has malformed fields ({err})") from None
