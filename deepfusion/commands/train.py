"""Train a SimCLR model (backbone + projection head) and evaluate it.

Presets (model/runs/configs/*.yaml):
  digits         quick CPU run on scikit-learn's 8x8 digits (the default)
  vectors        your own vectors: x of shape (N, d) in an .npz; MLP backbone, standardised features
  signals        your own ordered 1-D signals: x of shape (N, L) in an .npz; 1-D CNN, shift/stretch/scale
  images         your own images: x of shape (N, H, W) or 4-D in an .npz; small CNN
  synthetic      Gaussian class clusters, an MLP backbone: seconds, for smoke tests
  fashion_mnist  28x28 clothing images, ResNet-18 and the paper's head shape
  cifar10        paper-style: ResNet-18 (CIFAR stem), transformer head D=256 L=10 H=16
  cifar100       as cifar10 with 100 classes
  tiny_imagenet  64x64 images, 200 classes (the paper's ImageNet-200)

Without --config the preset is digits, except for data.name=npz: then it is vectors when x is 2-D
(--config signals when each row is an ordered signal: a time series, a spectrum) and images when x
is 3-D or 4-D, the run folder is named after the file, and a small training split lowers the
batch and raises the epochs (each change printed, and the augmentation chosen). Your own data:

  deepfusion train data.name=npz data.root=mydata.npz

The .npz holds x and y (integer labels; distinct values are remapped to 0..K-1 and the mapping
saved), optionally x_test and y_test (else data.test_fraction of x is held out, stratified).
x of shape (N, d) is vectors (any real dtype; standardised with training-split statistics unless
data.standardize=false); (N, H, W), (N, C, H, W) or (N, H, W, C) is images (uint8 0..255 or
floats in [0, 1]; data.options.layout=nchw or nhwc when the channel axis is ambiguous).

Overrides are section.key=value pairs after the preset; values follow YAML rules
(true, 1e-3, null). Sections: data, model, optim, loss, train, eval (every key below). Example:

  deepfusion train --config digits model.head=mlp train.epochs=10 loss.temperature=0.1

The run folder <train.out_dir>/<train.name>/, or <train.out_dir>/<data>-<head>-s<seed>-<key>/ without
a name (the key is hashed from the resolved config; the run cache of the figures uses the same
scheme), receives config.yaml, data.json, metrics.jsonl, checkpoints/last.pt and eval.json.
The same command run again shows the finished run's evaluation without training; after Ctrl-C or
SIGTERM (which save a checkpoint and stop) it continues the run, as does --resume RUN_DIR, which
also takes overrides such as more epochs. A folder holding a run of other settings, or files that
are not a run, is never trained into; one process at a time works in a run folder. Under torchrun
a new run needs a missing or empty folder, and --resume continues one.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from deepfusion.errors import ConfigError
from deepfusion.model.runs.config import presets
from deepfusion.model.runs.eval_report import format_lines

# The modules that import torch (loading, own_data, loop) are imported inside run(): `deepfusion train
# --help` imports this module and stays fast without torch (about 0.1 s against 2-4 s with it).


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=None,
        metavar="PRESET_OR_YAML",
        help=f"a preset name ({', '.join(presets())}) or a YAML file path (default: digits; "
        "vectors or images for data.name=npz, by the shape of x)",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="config overrides section.key=value, e.g. train.epochs=5 optim.lr=0.1",
    )
    parser.add_argument(
        "--resume",
        metavar="RUN_DIR",
        default=None,
        help="continue the run in RUN_DIR from its last checkpoint, with the config saved there "
        "(overrides may change e.g. train.epochs, not the model or data)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="with --resume: continue even though the overrides or an edited config.yaml change "
        "what alters the run's trajectory (data, model, optim, loss, train.batch_size, "
        "train.seed, train.attend), or though the data at data.root no longer matches the "
        "fingerprint recorded when the run started; without it such a resume is refused",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="parent folder for the run folder (same as train.out_dir=DIR; default: runs)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="hide the progress bar (logs still go to metrics.jsonl)"
    )
    parser.epilog = config_help()


def _yaml(value) -> str:
    return {None: "null", True: "true", False: "false"}.get(value, str(value)) if not isinstance(value, dict) else "{}"


def config_help() -> str:
    """The datasets and every config key with its default, for ``--help``."""
    import dataclasses
    import textwrap

    from deepfusion.model.dataset_names import DATASETS
    from deepfusion.model.runs.config import SECTIONS, Config

    defaults = Config()
    lines = [
        f"datasets (data.name): {', '.join(DATASETS)}",
        "",
        "config keys and their defaults before a preset (the preset's values are in its YAML file):",
    ]
    for section in SECTIONS:
        obj = getattr(defaults, section)
        keys = ", ".join(f"{f.name}={_yaml(getattr(obj, f.name))}" for f in dataclasses.fields(obj))
        lines += textwrap.wrap(f"{section}: {keys}", 100, initial_indent="  ", subsequent_indent="    ")
    return "\n".join(lines)


def summary(run, wall: float | None) -> str:
    """Final report of the run :func:`train` returned: its folder, wall time (None: nothing was trained)
    and each accuracy (95% interval) beside its baseline."""
    timing = [] if wall is None else [f"wall time:  {wall:.1f} s"]
    return "\n".join([f"run folder: {run.run_dir}", *timing, *format_lines(run.eval)])


def run(args: argparse.Namespace) -> int:
    from deepfusion.model.runs.loading import run_config

    if args.force and not args.resume:
        raise ConfigError(
            "--force applies only with --resume; a new run never trains into a folder holding another run"
        )
    overrides = list(args.overrides)
    if args.out is not None:
        overrides.append(f"train.out_dir={json.dumps(str(args.out))}")
    if args.resume:
        run_dir = Path(args.resume)
        cfg = run_config(run_dir, overrides)
    else:
        from deepfusion.model.runs.own_data import resolve_config

        cfg, notes = resolve_config(args.config, overrides)
        for note in notes if os.environ.get("RANK", "0") == "0" else ():  # under torchrun, rank 0 reports
            print(note, flush=True)
        run_dir = None
    # After the config is checked, so that errors come fast: these import torch.
    from deepfusion.experiments.runs import get_run
    from deepfusion.model.runs.distributed import launched
    from deepfusion.model.runs.loop import TrainingInterrupted, train

    start, reused = time.perf_counter(), []
    progress = not args.no_progress
    try:
        if args.resume:  # the named folder, continued with the saved config and the overrides
            run = train(cfg, run_dir=run_dir, resume=True, progress=progress, force=args.force)
        elif launched():  # torchrun: every rank trains a new run (the ranks share no decision before it)
            run = train(cfg, progress=progress)
        else:  # the config's own folder: trained, continued where it stopped, or its finished run shown
            run = get_run(cfg, progress=progress, log=lambda line: reused.append(_report_reuse(line)))
    except TrainingInterrupted as err:
        print(f"deepfusion train: {err}", flush=True)
        return err.exit_code
    if run is not None:  # under torchrun only rank 0 has the evaluation, and reports
        print(summary(run, None if "cached" in reused else time.perf_counter() - start))
    return 0


def _report_reuse(line: str) -> str:
    """Say when the run folder already held this config's run (finished, or stopped and now continued)."""
    action, name = line.split(maxsplit=1)
    if action == "cached":
        print(f"{name} already holds this run, finished: its evaluation below (nothing trained)", flush=True)
    elif action == "resume":
        print(f"{name} holds this run, stopped before the end: continuing from its last checkpoint", flush=True)
    return action
