"""Evaluate a trained run: kNN and linear probe on frozen backbone features, the head's
leave-one-out 1-NN, each beside a baseline: the backbone probes on a randomly initialised
backbone, the head 1-NN under a randomly initialised (untrained) head on the same test batches.

Everything is offline (computed now, from the run's last checkpoint, i.e. the final epoch, not
the best) and scored on the run's held-out test split. Every accuracy is printed with its Wilson
95% interval [low, high], which says how far a test split of that size can be trusted. The head
1-NN depends on how the test set is cut into batches (eval.head_batch), and so does its baseline.
Vector data is standardised with the statistics saved in the run folder (data.json), and read
from the absolute path recorded there when the run started (a relative data.root is not looked up
from the current folder); data whose size or SHA-256 changed since is refused (--force). Settings
come from the run's config; eval.* overrides change them for this evaluation only, e.g. the
paper's 10% linear probe:

  deepfusion eval --run runs/digits-transformer-s123-0123456789abcdef eval.linear_fraction=0.1

Results go to RUN_DIR/eval.json (keeping the training time recorded there) unless --json PATH
or --no-write says otherwise; they record the training step of the checkpoint evaluated and
whether it ends the run. A symbolic link standing at the output is replaced, not followed.
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext
from pathlib import Path

from deepfusion.errors import ConfigError, DataError, RunError
from deepfusion.model.runs.eval_report import format_table
from deepfusion.model.runs.eval_result import EvalResult
from deepfusion.model.runs.layout import RunFolder
from deepfusion.model.runs.progress_line import Heartbeat

# The modules that import torch (devices, loading, evaluate) are imported inside the functions:
# `deepfusion eval --help` imports this module and stays fast without torch (about 0.1 s against 2-4 s).


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, metavar="RUN_DIR", help="the run folder printed by deepfusion train")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="eval.key=value",
        help="evaluation settings for this call: eval.knn_k, eval.knn_t, eval.linear_epochs, "
        "eval.linear_fraction, eval.head_batch",
    )
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:K (default: auto)"
    )
    parser.add_argument(
        "--json", metavar="PATH", default=None, help="write the results to PATH instead of RUN_DIR/eval.json"
    )
    parser.add_argument("--no-write", action="store_true", help="print the table only, write no file")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        metavar="T",
        help="CPU threads for torch and BLAS; 0 (default) leaves the libraries' defaults; 1 is "
        "often faster on a busy shared machine",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="evaluate even though the data at the run's data.root no longer matches the fingerprint "
        "recorded when the run started (size and SHA-256 in data.json); without it such data "
        "is refused",
    )


def _apply_eval_overrides(cfg, overrides: list[str]) -> None:
    from deepfusion.model.runs.config import apply_override, validate

    for text in overrides:
        if not text.startswith("eval."):
            raise ConfigError(
                f"override {text!r}: deepfusion eval changes only eval.* settings "
                "(the model and data are fixed by the run); retrain to change the rest"
            )
        apply_override(cfg, text)
    validate(cfg)  # also rejects eval.head_batch < 2


def run(args: argparse.Namespace) -> int:
    from deepfusion.model.runs.devices import limit_threads, resolve_device
    from deepfusion.model.runs.loading import run_config
    from deepfusion.model.runs.lock import folder_lock

    if args.threads < 0:
        raise ConfigError(f"--threads={args.threads} must be >= 0 (0 keeps the libraries' defaults)")
    run_dir = Path(args.run)
    _apply_eval_overrides(run_config(run_dir), list(args.overrides))  # bad overrides fail before loading anything
    device = resolve_device(args.device, option="--device")
    # Writing eval.json into the run folder takes the folder's lock; --no-write and --json elsewhere read only.
    writes_run = not args.no_write and not args.json
    with folder_lock(run_dir, "evaluate") if writes_run else nullcontext(), limit_threads(args.threads):
        return _evaluate(args, run_dir, device)


def _evaluate(args: argparse.Namespace, run_dir: Path, device) -> int:
    from deepfusion.model.runs.evaluate import evaluate_model
    from deepfusion.model.runs.loading import load_run

    loaded = load_run(run_dir, device, force=args.force)
    _apply_eval_overrides(loaded.cfg, list(args.overrides))
    start = time.perf_counter()
    with Heartbeat(f"evaluating {run_dir.name}"):  # a line every 25 s when the output is a file or pipe
        result = evaluate_model(
            loaded.model,
            loaded.augment,
            loaded.train_ds,
            loaded.test_ds,
            loaded.cfg.eval,
            device,
            loaded.cfg.train.seed,
        )
    result = result.with_training(loaded.step, loaded.finished, _training_time(run_dir, loaded.step))
    print(
        f"run folder: {run_dir}  ({time.perf_counter() - start:.1f} s on {device}; checkpoint of step "
        f"{loaded.step}{'' if loaded.finished else ', the run is not finished'})"
    )
    print(format_table(result))
    if not args.no_write:
        _write(result, Path(args.json) if args.json else RunFolder(run_dir).eval)
    return 0


def _training_time(run_dir: Path, step: int) -> float | None:
    """The training time the run's own evaluation recorded, kept when it describes the same step."""
    path = RunFolder(run_dir).eval
    if not path.is_file() or path.is_symlink():
        return None
    try:
        previous = EvalResult.load(path)
    except (RunError, DataError):  # unreadable or of another version: the new evaluation replaces it
        return None
    return previous.train_wall_s if previous.step == step else None


def _write(result: EvalResult, out: Path) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        result.save(out)
    except OSError as err:
        where = f": {err.filename}" if err.filename and str(err.filename) != str(out) else ""
        raise RunError(
            f"cannot write {out} ({err.strerror}{where}); pass --json PATH to a writable place or --no-write"
        ) from None
