"""The run configuration: nested dataclasses, YAML presets and ``key=value`` overrides.

A config is resolved in three layers: the dataclass defaults (``config_schema``), a preset
(``model/runs/configs/<name>.yaml``) or a YAML file, then command-line overrides
``section.key=value`` whose values follow YAML's scalar rules (``true``, ``1e-3``,
``null``, ``[1, 2]``). Every key is checked: an unknown one, a wrong type or an
invalid choice raises :class:`ConfigError` naming the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

from deepfusion.errors import ConfigError
from deepfusion.model.network.registry import BACKBONES, HEADS, NORMS, SCOPES
from deepfusion.model.network.sizes import check_heads_divide
from deepfusion.model.runs.config_limits import MIN_BATCH, check_names_and_paths, check_ranges, parse_yaml, read_yaml
from deepfusion.model.runs.config_schema import SECTION_TYPES, SECTIONS, Config
from deepfusion.model.runs.layout import write_text_atomic

PRESET_DIR = Path(__file__).parent / "configs"


# Keys that say where results go, not what they are: left out of config_hash.
OUTPUT_KEYS = {
    ("train", "out_dir"),
    ("train", "name"),
    ("train", "log_every"),
    ("train", "threads"),
    ("train", "log"),
    ("preset",),
}
# Keys left out of config_hash while at these values, so that adding them kept earlier hashes.
HASH_DEFAULTS = {
    ("train", "attend"): "local",
    ("train", "freeze_backbone"): False,
    ("model", "backbone_from"): None,
    ("data", "standardize"): True,
    ("data", "aug_noise"): None,
    ("data", "aug_mask"): None,
    ("data", "aug_mix"): None,
    ("model", "backbone_width"): None,
    ("model", "backbone_depth"): None,
    ("optim", "head_lr_scale"): 1.0,
}
# What a key meant before it existed: a run folder whose config.yaml lacks the key was made this way.
LEGACY = {**HASH_DEFAULTS, ("data", "standardize"): False}

# Choices of the network parts come from their registries (deepfusion.model.network.registry).
REGISTERED = {
    ("model", "backbone"): BACKBONES,
    ("model", "head"): HEADS,
    ("model", "norm"): NORMS,
    ("model", "scope"): SCOPES,
}
CHOICES = {
    ("optim", "name"): ("sgd", "lars", "adamw"),
    ("train", "attend"): ("local", "global"),
    ("train", "log"): ("jsonl", "tensorboard"),
}
POSITIVE = {
    ("model", "dim"),
    ("model", "depth"),
    ("model", "heads"),
    ("model", "ffn_dim"),
    ("model", "out_dim"),
    ("model", "mlp_hidden"),
    ("optim", "lr"),
    ("optim", "head_lr_scale"),
    ("loss", "temperature"),
    ("train", "epochs"),
    ("train", "batch_size"),
    ("train", "log_every"),
    ("eval", "knn_k"),
    ("eval", "knn_t"),
    ("eval", "head_batch"),
}
NON_NEGATIVE = {
    ("data", "seed"),
    ("optim", "momentum"),
    ("optim", "weight_decay"),
    ("optim", "warmup_epochs"),
    ("train", "seed"),
    ("train", "checkpoint_every"),
    ("train", "skip_nonfinite"),
    ("eval", "linear_epochs"),
    ("train", "threads"),
}


def presets() -> list[str]:
    """Names of the bundled presets (``model/runs/configs/*.yaml``)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _valid_keys(section: str) -> list[str]:
    return [f.name for f in dataclasses.fields(SECTION_TYPES[section])]


def _coerce(where: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against the annotation ``hint``; returns the (lightly coerced) value."""
    if get_origin(hint) is Union:  # Optional[X]
        if value is None:
            return None
        hint = next(a for a in get_args(hint) if a is not type(None))
    ok = False
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        if isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                value, ok = float(value), True
            except OverflowError:
                ok = False
    elif hint is str:
        ok = isinstance(value, str)
    elif hint is dict:
        ok = isinstance(value, dict) and all(isinstance(k, str) for k in value)
    if not ok:
        name = getattr(hint, "__name__", str(hint))
        raise ConfigError(f"{where}: expected {name}, got {value!r} ({type(value).__name__})")
    return value


def _apply(cfg: Config, data: Any, source: str) -> None:
    """Merge a nested mapping ``{section: {key: value}}`` into ``cfg`` in place."""
    if data is None:
        return
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping of sections ({', '.join(SECTIONS)}), got {type(data).__name__}"
        )
    for section, values in data.items():
        if section == "preset":
            setattr(cfg, "preset", _coerce(f"{source}: preset", values, str))
            continue
        if section not in SECTIONS:
            raise ConfigError(f"{source}: unknown section {section!r}; valid sections: {', '.join(SECTIONS)}")
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section {section!r} must be a mapping of keys, got {values!r}")
        obj = getattr(cfg, section)
        hints = get_type_hints(type(obj))
        for key, value in values.items():
            if key not in hints:
                raise ConfigError(
                    f"{source}: unknown key {section}.{key}; "
                    f"valid keys of {section!r}: {', '.join(_valid_keys(section))}"
                )
            setattr(obj, key, _coerce(f"{source}: {section}.{key}", value, hints[key]))


@dataclass(frozen=True)
class Override:
    """One parsed ``section.key=value`` override: the key's parts and the YAML value."""

    parts: tuple[str, ...]
    value: Any
    text: str  # as given, for messages

    @property
    def key(self) -> str:
        return ".".join(self.parts)


def parse_override(text: str) -> Override:
    """``"optim.lr=0.1"`` -> ``Override(("optim", "lr"), 0.1, ...)``; the value follows YAML scalar rules."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form section.key=value (e.g. train.epochs=5)")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) < 2 or not all(parts):
        raise ConfigError(f"override {text!r}: the key must be section.key with a section among {', '.join(SECTIONS)}")
    value = parse_yaml(raw, f"override {key.strip()}") if raw.strip() else None
    return Override(tuple(parts), value, text)


def parse_overrides(overrides) -> list[Override]:
    """Each override parsed once (an :class:`Override` given is kept as it is)."""
    return [o if isinstance(o, Override) else parse_override(o) for o in overrides]


def apply_override(cfg: Config, override: str | Override) -> None:
    """Apply one ``section.key=value`` (``data.options.k=v`` reaches into the options mapping)."""
    o = override if isinstance(override, Override) else parse_override(override)
    parts, value, text = o.parts, o.value, o.text
    section = parts[0]
    if len(parts) > 2:
        if (section, parts[1]) != ("data", "options"):
            raise ConfigError(f"override {text!r}: only data.options accepts nested keys (data.options.NAME=value)")
        options = dict(cfg.data.options)
        node = options
        for p in parts[2:-1]:
            node = node.setdefault(p, {}) if isinstance(node.get(p, {}), dict) else {}
        node[parts[-1]] = value
        _apply(cfg, {"data": {"options": options}}, "override")
        return
    _apply(cfg, {section: {parts[1]: value}}, "override")


def validate(cfg: Config) -> Config:
    """Range and choice checks across the whole config (types are checked while merging)."""
    for (section, key), allowed in CHOICES.items():
        value = getattr(getattr(cfg, section), key)
        if value not in allowed:
            raise ConfigError(f"{section}.{key}={value!r} is not valid; choose from {', '.join(allowed)}")
    for (section, key), registry in REGISTERED.items():
        registry.check(getattr(getattr(cfg, section), key))
    for section, key in POSITIVE | NON_NEGATIVE:
        value = getattr(getattr(cfg, section), key)
        bad = not (value > 0) if (section, key) in POSITIVE else not (value >= 0)
        if bad or (isinstance(value, float) and not math.isfinite(value)):
            sign = "> 0" if (section, key) in POSITIVE else ">= 0"
            raise ConfigError(f"{section}.{key}={value!r} must be finite and {sign}")
    check_ranges(cfg, SECTIONS)  # seeds, epochs, warm-up, temperatures, integers within reach
    for key in ("test_fraction",):
        if not 0.0 < cfg.data.test_fraction < 1.0:
            raise ConfigError(f"data.{key}={cfg.data.test_fraction!r} must lie strictly between 0 and 1")
    if not 0.0 < cfg.eval.linear_fraction <= 1.0:
        raise ConfigError(f"eval.linear_fraction={cfg.eval.linear_fraction!r} must lie in (0, 1]")
    if cfg.eval.head_batch < 2:  # checked here, not only in the evaluation that follows hours of training
        raise ConfigError(f"eval.head_batch={cfg.eval.head_batch} must be at least 2 (a sample needs a neighbour)")
    _validate_own_data(cfg)
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", cfg.train.device):
        raise ConfigError(f"train.device={cfg.train.device!r} is not valid; use auto, cpu, cuda or cuda:K")
    if cfg.model.head == "transformer":
        check_heads_divide(cfg.model.dim, cfg.model.heads)
    if cfg.train.batch_size < MIN_BATCH:
        raise ConfigError(
            f"train.batch_size={cfg.train.batch_size} is too small: NT-Xent needs at least one negative "
            f"and the head's BatchNorm at least two samples; use {MIN_BATCH} or more"
        )
    check_names_and_paths(cfg)  # train.name and preset become folder names; no NUL in paths
    return cfg


def _validate_own_data(cfg: Config) -> None:
    """Ranges of the augmentation and backbone keys (None means the preset's or backbone's default)."""
    d, m = cfg.data, cfg.model
    for key, value, top in (
        ("aug_noise", d.aug_noise, math.inf),
        ("aug_mask", d.aug_mask, 1.0),
        ("aug_mix", d.aug_mix, 1.0),
    ):
        if value is not None and not 0.0 <= value < top:
            bound = ">= 0 and finite" if top == math.inf else "in [0, 1)"
            raise ConfigError(f"data.{key}={value!r} must be {bound} (or null for the augmentation preset's value)")
    for key, value in (("backbone_width", m.backbone_width), ("backbone_depth", m.backbone_depth)):
        if value is not None and value < 1:
            raise ConfigError(f"model.{key}={value!r} must be a positive integer (or null for the backbone's default)")


def load_config(preset_or_path: str | Path = "digits", overrides=()) -> Config:
    """Resolve a preset name (``digits``) or YAML path, then apply ``section.key=value`` overrides
    (strings, or :class:`Override` already parsed), and validate the result."""
    cfg = Config()
    text = str(preset_or_path)
    path = Path(text)
    if text in presets():
        path, label = PRESET_DIR / f"{text}.yaml", text
    elif path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file {text} not found; give a YAML path or a preset: {', '.join(presets())}")
        label = path.stem
    else:
        raise ConfigError(f"unknown preset {text!r}; presets: {', '.join(presets())} (or give a YAML file path)")
    _apply(cfg, read_yaml(path), str(path))
    if cfg.preset == "custom":
        cfg.preset = label
    for item in overrides:
        apply_override(cfg, item)
    return validate(cfg)


def config_to_dict(cfg: Config) -> dict:
    """Plain nested dict (only str/int/float/bool/None/dict/list), safe for YAML, JSON and checkpoints."""
    return dataclasses.asdict(cfg)


def config_from_dict(data: dict, source: str = "config") -> Config:
    """Inverse of :func:`config_to_dict`; checks every key and type like a YAML file."""
    cfg = Config()
    _apply(cfg, data, source)
    return validate(cfg)


def config_hash(cfg: Config, length: int = 10) -> str:
    """Stable hash of the resolved config without output-location keys (cache key for results)."""
    data = config_to_dict(cfg)
    for keys in OUTPUT_KEYS:
        node = data
        for k in keys[:-1]:
            node = node[k]
        node.pop(keys[-1], None)
    for (section, key), default in HASH_DEFAULTS.items():
        if data[section].get(key) == default:
            data[section].pop(key)
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (readable by :func:`load_config`), atomically."""
    write_text_atomic(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
