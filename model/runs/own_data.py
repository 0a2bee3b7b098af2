"""Training on one's own ``.npz`` file: the preset that fits it, the run's name, a batch that fits.

``deepfusion train data.name=npz data.root=FILE`` names no preset. :func:`resolve_config` reads
the shape of ``x`` from the file's header (without loading it) and picks:

- ``vectors`` for 2-D ``x`` (MLP backbone, vector augmentation, standardised features); the note
  names ``signals`` (a 1-D CNN with shift, stretch and scale) for 2-D ``x`` whose positions are
  ordered, which the shape cannot tell;
- ``images`` for 3-D and 4-D ``x`` (small CNN, the image augmentation chosen by channels and size).

Without ``data.name=npz`` the default preset stays ``digits``. For any run on an ``.npz`` (unless
``train.name`` is set) the run folder is named after the file: ``<out_dir>/<file stem>-<head>-s<seed>-<key>``.
With these two presets, a training split smaller than ``train.batch_size`` (or one that full batches
would leave more than 10% unused each epoch) gets the batch ``n // ceil(n / batch_size)`` (unless
``train.batch_size`` was given on the command line), and a split too small to give the preset's
minimum number of optimiser steps gets more epochs (unless ``train.epochs`` was given). Every such
choice is returned as a note for the command to print.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace

from deepfusion.errors import ConfigError
from deepfusion.model.data.augment import OVERRIDES, PRESETS, default_preset
from deepfusion.model.data.base import stratified_split, stratified_take
from deepfusion.model.data.npz import summarize
from deepfusion.model.runs.batch import fitted_batch
from deepfusion.model.runs.config import Config, Override, load_config, parse_overrides
from deepfusion.model.runs.run_name import run_label

PRESET_FOR_KIND = {"vector": "vectors", "image": "images"}
DEFAULT_PRESET = "digits"
OWN_PRESETS = (*PRESET_FOR_KIND.values(), "signals")
MIN_STEPS = {"vectors": 600, "images": 300, "signals": 600}  # optimiser steps the own-data presets train for at least
MIN_SIDE = 8  # the images preset's cnn3 needs images of at least 8x8
DROP_SHARE = 0.1  # a batch that leaves more than this share of the training split unused each epoch is evened out


def _given(overrides: list[Override]) -> dict:
    """``{"section.key": value}`` of the command-line overrides (later ones win)."""
    return {o.key: o.value for o in overrides}


def _describe(summary) -> str:
    n = summary.x_shape[0]
    if summary.kind == "vector":
        return f"{n:,} vectors of {summary.input_shape[0]:,} features (2-D x)"
    c, h, w = summary.input_shape
    return f"{n:,} images of {c} channel(s), {h}x{w} ({len(summary.x_shape)}-D x of shape {summary.x_shape})"


def _training_size(summary, cfg: Config) -> int:
    """Samples in the training split the loader will make (same split and ``limit`` rules)."""
    y = summary.labels
    if not summary.has_test:
        y = y[stratified_split(y, cfg.data.test_fraction, cfg.data.seed)[0]]
    limit = cfg.data.options.get("limit")
    if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1:
        y = y[stratified_take(y, limit, cfg.data.seed)]
    return len(y)


def _check_fit(preset: str, summary, cfg: Config) -> None:
    path = summary.path
    if preset == "vectors" and summary.kind == "image":
        raise ConfigError(
            f"preset vectors is for 2-D x but {path} holds {_describe(summary)}; use --config images "
            "or leave --config out to choose by shape"
        )
    if preset == "signals" and summary.kind == "image":
        raise ConfigError(
            f"preset signals is for 2-D x (N, L) but {path} holds {_describe(summary)}; store each "
            "signal as a row: numpy.savez(path, x=x.reshape(len(x), -1), y=y)"
        )
    if preset == "images" and summary.kind == "vector":
        raise ConfigError(
            f"preset images is for 3-D/4-D x but {path} holds {_describe(summary)}; use --config "
            "vectors or leave --config out to choose by shape"
        )
    if summary.kind == "image" and cfg.model.backbone != "mlp" and min(summary.input_shape[1:]) < MIN_SIDE:
        raise ConfigError(
            f"{path}: x of shape {summary.x_shape} is read as images of {summary.input_shape[1]}x"
            f"{summary.input_shape[2]}, smaller than the {MIN_SIDE}x{MIN_SIDE} that backbone "
            f"{cfg.model.backbone!r} needs; if x holds vectors, store it 2-D: "
            "numpy.savez(path, x=x.reshape(len(x), -1), y=y)"
        )


def _fit_training(preset: str, summary, cfg: Config, given: dict, notes: list) -> None:
    """Lower the batch to a small training split and raise epochs to the preset's minimum of steps."""
    n = _training_size(summary, cfg)
    world = max(1, int(os.environ.get("WORLD_SIZE", "1") or 1))
    B = cfg.train.batch_size
    batch = None if "train.batch_size" in given else fitted_batch(B, n, world, DROP_SHARE)
    if batch is not None:
        why = (
            f"the training split has only {n} samples"
            if B > n
            else f"{n} training samples in batches of {B} would leave {n % B} unused each epoch"
        )
        notes.append(f"batch:  train.batch_size {B} -> {batch}: {why}")
        cfg.train.batch_size = batch
    steps = n // cfg.train.batch_size
    if steps and "train.epochs" not in given and steps * cfg.train.epochs < MIN_STEPS[preset]:
        epochs = math.ceil(MIN_STEPS[preset] / steps)
        notes.append(
            f"epochs: train.epochs {cfg.train.epochs} -> {epochs}: {steps} step(s) per epoch, and the "
            f"{preset} preset trains for at least {MIN_STEPS[preset]} steps"
        )
        cfg.train.epochs = epochs


def resolve_config(config: str | None, overrides) -> tuple[Config, list[str]]:
    """The config for ``deepfusion train`` and the notes to print about the choices made.

    ``config`` is the ``--config`` value (None when not given); ``overrides`` the key=value list,
    parsed once here. The config is validated once, by :func:`load_config`; what is fitted to a small
    split afterwards stays within the limits by construction.
    """
    overrides = parse_overrides(overrides)
    given, notes, summary = _given(overrides), [], None
    options = given.get("data.options") if isinstance(given.get("data.options"), dict) else {}
    num_classes = given.get("data.options.num_classes", options.get("num_classes"))
    layout = given.get("data.options.layout", options.get("layout", "auto"))
    preset = config
    if config is None:
        preset = DEFAULT_PRESET
        if given.get("data.name") == "npz":
            if given.get("data.root") is None:
                raise ConfigError(
                    "data.name=npz needs the file: add data.root=PATH.npz (arrays x and y, optionally "
                    "x_test and y_test)"
                )
            summary = summarize(given["data.root"], num_classes, layout)
            preset = PRESET_FOR_KIND[summary.kind]
            also = (
                "; if each row is an ordered signal (time series, spectrum), use --config signals"
                if preset == "vectors"
                else ""
            )
            notes.append(f"data:   {summary.path}: {_describe(summary)} -> preset {preset}{also}")
    cfg = load_config(preset, overrides)
    if cfg.data.name != "npz" or cfg.data.root is None:
        return cfg, notes
    if summary is None:
        summary = summarize(cfg.data.root, cfg.data.options.get("num_classes"), cfg.data.options.get("layout", "auto"))
        notes.append(f"data:   {summary.path}: {_describe(summary)}; preset {cfg.preset}")
    if cfg.preset in OWN_PRESETS or config is None:
        _check_fit(cfg.preset, summary, cfg)
    if cfg.train.name is None:
        cfg.preset = run_label(summary.path)
    if summary.label_values:
        shown = summary.label_values if len(summary.label_values) <= 12 else (*summary.label_values[:12], "...")
        notes.append(
            f"labels: {summary.num_classes} distinct labels {{{', '.join(map(str, shown))}}} remapped to "
            f"classes 0..{summary.num_classes - 1} in that order; the mapping is saved in the run "
            "folder's data.json"
        )
    if preset in OWN_PRESETS:
        _fit_training(preset, summary, cfg, given, notes)
    notes.append(f"augment: {augment_note(cfg, summary)}")
    return cfg, notes


def augment_note(cfg: Config, summary) -> str:
    """The augmentation a run will use, by name and what it does (``default`` resolved by the data,
    ``data.aug_noise``/``aug_mask``/``aug_mix`` applied)."""
    augment = cfg.data.augment
    name = default_preset(summary.kind, summary.input_shape) if augment == "default" else augment
    if name not in PRESETS:
        return name
    given = {field: getattr(cfg.data, f"aug_{key}") for key, field in OVERRIDES.items()}
    p = replace(PRESETS[name], **{k: v for k, v in given.items() if v is not None})
    parts = []
    if p.crop_scale:
        parts.append(f"crops {p.crop_scale[0]:g}-{p.crop_scale[1]:g} of the area")
    if p.flip:
        parts.append("flips")
    if p.rotate or p.zoom != (1.0, 1.0) or p.shift:
        parts.append(
            f"{'shift' if p.kind == 'vector' else 'rotate/zoom/shift'} up to {p.shift:g}, "
            f"{'stretch' if p.kind == 'vector' else 'zoom'} {p.zoom[0]:g}-{p.zoom[1]:g}x"
            + (f", rotate {p.rotate:g} deg" if p.rotate else "")
        )
    if p.jitter_p and any(p.jitter):
        names = [n for n, v in zip(("brightness", "contrast", "saturation", "hue"), p.jitter) if v]
        parts.append(f"{'/'.join(names)} jitter on {p.jitter_p:.0%} of the views")
    if p.scale != (1.0, 1.0):
        parts.append(f"amplitude {p.scale[0]:g}-{p.scale[1]:g}x")
    for what, value in (
        ("noise", p.noise),
        ("mask", p.mask_p),
        ("mix", p.mix_p),
        ("grey", p.gray_p),
        ("blur", p.blur_p),
    ):
        if value:
            parts.append(f"{what} {value:g}")
    how = " (chosen by the data's channels and size)" if augment == "default" else ""
    return f"data.augment={name}{how}: {', '.join(parts) or 'none'}"
