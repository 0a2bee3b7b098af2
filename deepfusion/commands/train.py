"""Train a SimCLR model (backbone + projection head) and evaluate it.

Presets (model/runs/configs/*.yaml):
  digits         quick CPU run on scikit-learn's 8x8 digits (the default)
  synthetic      Gaussian class clusters, an MLP backbone: seconds, for smoke tests
  fashion_mnist  28x28 clothing images, ResNet-18 and the paper's head shape
  cifar10        paper-style: ResNet-18 (CIFAR stem), transformer head D=256 L=10 H=16
  cifar100       as cifar10 with 100 classes
  tiny_imagenet  64x64 images, 200 classes (the paper's ImageNet-200)

Overrides are section.key=value pairs after the preset; values follow YAML rules
(true, 1e-3, null). Sections: data, model, optim, loss, train, eval. Example:

  deepfusion train --config digits model.head=mlp train.epochs=10 loss.temperature=0.1

The run folder <train.out_dir>/<train.name or preset-hash>/ receives config.yaml,
metrics.jsonl, checkpoints/last.pt and eval.json. Ctrl-C or SIGTERM saves a
checkpoint and stops; continue with --resume RUN_DIR. A folder that exists and is not empty
is never trained into without --resume, and one process at a time works in a run folder.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from deepfusion.model.runs.config import load_config, presets
from deepfusion.commands.evaluate import ROWS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="digits", metavar="PRESET_OR_YAML",
                        help=f"a preset name ({', '.join(presets())}) or a YAML file path (default: digits)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides section.key=value, e.g. train.epochs=5 optim.lr=0.1")
    parser.add_argument("--resume", metavar="RUN_DIR", default=None,
                        help="continue the run in RUN_DIR from its last checkpoint, with the config saved there "
                             "(overrides may change e.g. train.epochs, not the model or data)")
    parser.add_argument("--force", action="store_true",
                        help="with --resume: continue even though the overrides or an edited config.yaml change "
                             "what alters the run's trajectory (data, model, optim, loss, train.batch_size, "
                             "train.seed, train.attend); without it such a resume is refused")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="parent folder for the run folder (same as train.out_dir=DIR; default: runs)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar (logs still go to metrics.jsonl)")


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def summary(run_dir: Path, wall: float) -> str:
    """Final report: run folder, wall time and each eval number beside its random-backbone baseline."""
    lines = [f"run folder: {run_dir}", f"wall time:  {wall:.1f} s"]
    from deepfusion.model.runs.layout import RunFolder

    path = RunFolder(run_dir).eval
    results = json.loads(path.read_text()) if path.exists() else {}
    if "skipped" in results:
        lines.append(f"evaluation skipped: {results['skipped']}")
    for label, key, base in ROWS:
        if results.get(key) is not None:
            beside = f"   random backbone {_fmt(results[base])}" if base and results.get(base) is not None else ""
            lines.append(f"  {label:<26} {_fmt(results[key])}{beside}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from deepfusion.model.runs.loading import run_config

    from deepfusion.errors import ConfigError

    if args.force and not args.resume:
        raise ConfigError("--force applies only with --resume; a new run never trains into an existing folder")
    overrides = list(args.overrides)
    if args.out is not None:
        overrides.append(f"train.out_dir={json.dumps(str(args.out))}")
    if args.resume:
        run_dir = Path(args.resume)
        cfg = run_config(run_dir, overrides)
    else:
        cfg = load_config(args.config, overrides)
        run_dir = None
    from deepfusion.model.runs.loop import TrainingInterrupted, train  # after the config is checked: errors come fast

    start = time.perf_counter()
    try:
        run_dir = train(cfg, run_dir=run_dir, resume=bool(args.resume), progress=not args.no_progress,
                        force=args.force)
    except TrainingInterrupted as err:
        print(f"deepfusion train: {err}", flush=True)
        return err.exit_code
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports (it wrote eval.json)
        print(summary(run_dir, time.perf_counter() - start))
    return 0
