"""Predict, before any training, where a transformer head's attention will fuse (S13-S15).

From the config alone (and the class geometry of data.name=theory) the command integrates the
reduced model of theory/reduced_flow.py: the head restricted to scalars on the spans of the class
means, the instance parts and the view parts, trained with the config's AdamW schedule, steps,
temperature, batch, scope, LayerNorm placement, depth and heads. It prints per layer the sign of
the early drift of beta_V (S13) and the predicted rule v3 statistic (attention on other samples of
the token's class as a share of its attention outside its own views, over the uniform share), and
the last layer's ratio with the outcome it implies: fusion expected when the mean over seeds
reaches 1.25. It never trains or reads the network. Statements: theory/THEORY_DYNAMICS.md.
"""

from __future__ import annotations

from pathlib import Path

from deepfusion.errors import ConfigError


def add_arguments(parser):
    parser.add_argument(
        "--config",
        default="theory_head",
        metavar="PRESET_OR_YAML",
        help="preset name or YAML file to predict for (default: theory_head); its data must be "
        "data.name=theory, whose class geometry the prediction needs",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="config overrides as in deepfusion train, e.g. loss.temperature=0.1 model.scope=per_view",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=6,
        help="initialisations of the reduced model to average (default 6, as the verdict's seeds)",
    )
    parser.add_argument(
        "--out",
        metavar="FILE.json",
        default=None,
        help="also write the prediction (last_layer_ratio, fusion_expected, per-layer values) here",
    )


def _check_args(args):
    if not 1 <= args.seeds <= 64:
        raise ConfigError(f"--seeds must be between 1 and 64, got {args.seeds}")
    if args.out is not None:
        out = Path(args.out)
        if out.suffix != ".json":
            raise ConfigError(f"--out must name a .json file, got {args.out}")
        if out.exists() and out.is_dir():
            raise ConfigError(f"--out {args.out} is a folder; name a .json file")


def run(args) -> int:
    from deepfusion.experiments.dynamics_prediction import predict_config
    from deepfusion.model.runs.config import load_config

    _check_args(args)
    cfg = load_config(args.config, list(args.overrides))
    pred = predict_config(cfg, seeds=args.seeds)
    c = pred.cell
    print(
        f"deepfusion predict: C={c['classes']} batch={c['instances']} spread={c['spread']:g} view={c['view']:g} "
        f"scope={c['scope']} norm={c['norm']} depth={c['depth']} tau={c['temperature']:g} lr={c['lr']:g} "
        f"steps={c['steps']} ({pred.seeds} seeds of the reduced model, {pred.seconds:.1f}s)"
    )
    print(f"{'layer':>5} {'beta_V drift':>13} {'sign':>5} {'ratio (v3)':>11}")
    for i, (d, s, r) in enumerate(zip(pred.beta_drift, pred.beta_drift_sign, pred.ratio)):
        print(f"{i:>5} {d:>13.2e} {s:>+5d} {r:>11.3f}")
    tau = "none in [1e-3, 1e3]" if pred.tau_star is None else f"{pred.tau_star:.3g}"
    print(f"S14 class bracket at the input: {pred.class_bracket:+.3f} (tau* {tau})")
    print(
        f"last_layer_ratio {pred.last_layer_ratio:.3f} "
        f"(seeds {', '.join(f'{x:.2f}' for x in pred.last_layer_ratio_seeds)})"
        f"  fusion_expected {pred.fusion_expected} (threshold {pred.threshold})"
    )
    if args.out:
        from deepfusion.model.runs.layout import write_text_atomic

        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(Path(args.out), pred.to_json())
    return 0
