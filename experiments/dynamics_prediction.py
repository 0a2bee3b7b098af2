"""Predict a head's attention before training, from its config alone (S13-S15 through the reduced model).

``predict_config(cfg, seeds)`` reads the class geometry of ``data.name=theory`` (classes, spread sigma,
view noise) and the head, loss and optimiser settings, integrates ``theory.reduced_flow`` (the head
restricted to scalars on the configuration's spans, trained with the config's AdamW for the config's
steps), and returns a ``DynamicsPrediction``: per layer the sign of the early drift of beta_V (the
S13 class-channel inverse temperature, first 10% of the steps), the predicted rule v3 statistic (the
share of a token's attention outside its own views that goes to other samples of its class, over the
uniform share), and the last layer's ratio with the outcome it implies (fusion expected when the mean
over seeds reaches 1.25). S14's bracket at the input geometry is reported beside it. Nothing here
trains the network or reads a run.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from deepfusion.errors import ConfigError
from deepfusion.model.data import load_dataset
from deepfusion.model.runs.optim import scaled_lr
from deepfusion.theory import dynamics, reduced_flow

VERSION = 1
THRESHOLD = 1.25  # rule v3's effect threshold on the last layer's ratio
EARLY = 0.1  # the early drift: over the first 10% of the steps


@dataclass
class DynamicsPrediction:
    """What ``deepfusion predict`` prints and writes."""

    cell: dict  # the config keys the prediction depends on
    seeds: int
    beta_drift: list[float]  # per layer: mean over seeds and heads of beta_V(early) - beta_V(0)
    beta_drift_sign: list[int]  # per layer: its sign (S13)
    ratio: list[float]  # per layer: predicted rule v3 statistic at the end, mean over seeds and heads
    last_layer_ratio: float
    last_layer_ratio_seeds: list[float]
    fusion_expected: bool  # last_layer_ratio >= THRESHOLD
    class_bracket: float  # S14 at the input geometry (sign of the class pull on the outputs)
    tau_star: float | None  # S14's threshold temperature at the input geometry
    seconds: float
    threshold: float = THRESHOLD
    version: int = VERSION
    sources: dict = field(
        default_factory=lambda: {
            "beta_drift": "S13 (reduced model, theory/reduced_flow.py)",
            "ratio": "S8(e) block weights of the reduced model",
            "class_bracket": "S14",
            "tau_star": "S14",
        }
    )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "DynamicsPrediction":
        data = json.loads(text)
        if data.get("version") != VERSION:
            raise ConfigError(
                f"prediction file has version {data.get('version')}, this code reads {VERSION}; "
                "rerun deepfusion predict"
            )
        return cls(**data)


def train_samples(cfg) -> int:
    """The number of training samples the config's data gives (its split taken)."""
    return len(
        load_dataset(
            cfg.data.name,
            cfg.data.root,
            split="train",
            seed=cfg.data.seed,
            test_fraction=cfg.data.test_fraction,
            **dict(cfg.data.options or {}),
        ).y
    )


def geometry(cfg) -> reduced_flow.Geometry:
    """The reduced model's inputs from a config; ConfigError where the config lies outside its scope."""
    if cfg.data.name != "theory":
        raise ConfigError(
            f"predict needs the class geometry of the data; data.name={cfg.data.name} does not define "
            "one: use data.name=theory (e.g. --config theory_head)"
        )
    if cfg.model.head != "transformer":
        raise ConfigError(f"predict models a transformer head; model.head={cfg.model.head}: use model.head=transformer")
    if cfg.optim.name != "adamw":
        raise ConfigError(f"the reduced model is trained with AdamW; optim.name={cfg.optim.name}: use optim.name=adamw")
    if (cfg.data.aug_mask or 0) > 0 or (cfg.data.aug_mix or 0) > 0:
        raise ConfigError("predict models Gaussian view noise only; set data.aug_mask=0 and data.aug_mix=0")
    opts = dict(cfg.data.options or {})
    if opts.get("rho", "etf") != "etf":
        raise ConfigError(f"predict models simplex-ETF class means; data.options.rho={opts['rho']}: use rho=etf")
    d = int(opts.get("dim", 64))
    spe = train_samples(cfg) // cfg.train.batch_size
    if spe < 1:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} exceeds the training split; lower it")
    steps = cfg.train.epochs * spe
    return reduced_flow.Geometry(
        classes=int(opts.get("num_classes", 4)),
        instances=cfg.train.batch_size,
        spread=float(opts.get("sigma", 0.3)),
        view=float(cfg.data.aug_noise) * np.sqrt(d),
        scope=cfg.model.scope,
        norm=cfg.model.norm,
        depth=cfg.model.depth,
        heads=cfg.model.heads,
        dim=cfg.model.dim,
        temperature=cfg.loss.temperature,
        lr=scaled_lr(cfg),
        steps=steps,
        weight_decay=cfg.optim.weight_decay,
        warmup_steps=min(steps, int(round(cfg.optim.warmup_epochs * spe))),
    )


def predict_geometry(g: reduced_flow.Geometry, seeds: int = 6, cell: dict | None = None) -> DynamicsPrediction:
    """Integrate the reduced model for ``seeds`` initialisations and summarise it."""
    t0 = time.perf_counter()
    flow = reduced_flow.integrate(g, range(seeds))
    k = int(np.argmin(np.abs(flow.steps - EARLY * g.steps)))
    drift = (flow.params[k, ..., 0] - flow.params[0, ..., 0]).mean((0, 2))  # (depth,)
    per_seed = flow.ratio[:, -1].mean(-1)  # (S,)
    z = reduced_flow.initial_tokens(g)
    cos = dynamics.two_view_cosines(*z, g.classes, g.per_class)
    n_s, n_o = 2 * g.per_class - 2, 2 * g.instances - 2 * g.per_class
    last = float(per_seed.mean())
    return DynamicsPrediction(
        cell=cell or asdict(g),
        seeds=seeds,
        beta_drift=[float(x) for x in drift],
        beta_drift_sign=[int(np.sign(x)) for x in drift],
        ratio=[float(x) for x in flow.ratio.mean((0, 2))],
        last_layer_ratio=last,
        last_layer_ratio_seeds=[float(x) for x in per_seed],
        fusion_expected=bool(last >= THRESHOLD),
        class_bracket=float(dynamics.class_bracket(*cos, g.classes, n_s, n_o, g.temperature)),
        tau_star=dynamics.tau_star(*cos, g.classes, n_s, n_o),
        seconds=round(time.perf_counter() - t0, 2),
    )


def predict_config(cfg, seeds: int = 6) -> DynamicsPrediction:
    g = geometry(cfg)
    return predict_geometry(g, seeds, cell=asdict(g))
