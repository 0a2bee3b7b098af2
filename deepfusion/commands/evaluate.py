"""Evaluate a trained run: kNN and linear probe on frozen backbone features, the head's
leave-one-out 1-NN, and the same backbone probes on a randomly initialised backbone.

Everything is offline (computed now, from the run's last checkpoint, i.e. the final epoch, not
the best) and scored on the run's held-out test split. The head 1-NN depends on how the test set
is cut into batches (eval.head_batch). Settings come from the run's config; eval.* overrides
change them for this evaluation only, e.g. the paper's 10% linear probe:

  deepfusion eval --run runs/digits-0123456789 eval.linear_fraction=0.1

Results go to RUN_DIR/eval.json (keeping the training time recorded there) unless --json PATH
or --no-write says otherwise; they record the training step of the checkpoint evaluated and
whether it ends the run. A symbolic link standing at the output is replaced, not followed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from deepfusion.errors import ConfigError, RunError

# (label, key of the trained model, key of the random-backbone baseline)
ROWS = [("kNN (backbone)", "knn", "random_knn"), ("linear probe (backbone)", "linear", "random_linear"),
        ("head leave-one-out 1-NN", "head_loo1nn", None)]
KEEP_FROM_TRAINING = ("train_steps", "train_wall_s")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, metavar="RUN_DIR", help="the run folder printed by deepfusion train")
    parser.add_argument("overrides", nargs="*", metavar="eval.key=value",
                        help="evaluation settings for this call: eval.knn_k, eval.knn_t, eval.linear_epochs, "
                             "eval.linear_fraction, eval.head_batch")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:K (default: auto)")
    parser.add_argument("--json", metavar="PATH", default=None,
                        help="write the results to PATH instead of RUN_DIR/eval.json")
    parser.add_argument("--no-write", action="store_true", help="print the table only, write no file")


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def format_table(results: dict) -> str:
    """Metric, trained model and random-backbone columns, then the settings that produced them."""
    lines = [f"{'metric':<26} {'trained':>8} {'random backbone':>16}"]
    for label, key, base in ROWS:
        lines.append(f"{label:<26} {_fmt(results.get(key)):>8} {_fmt(results.get(base) if base else None):>16}")
    lines.append(f"kNN k={results.get('knn_k')} t={results.get('knn_t')}; linear probe on "
                 f"{100 * results.get('linear_fraction', 1.0):g}% of train, {results.get('linear_epochs')} L-BFGS "
                 f"iterations; head 1-NN over {results.get('head_batches')} test batches of "
                 f"{results.get('head_batch_min')}-{results.get('head_batch_max')}")
    lines.append(f"{results.get('n_train')} train / {results.get('n_test')} test samples; offline, final epoch, test split")
    return "\n".join(lines)


def _apply_eval_overrides(cfg, overrides: list[str]) -> None:
    from deepfusion.model.runs.config import apply_override, validate

    for text in overrides:
        if not text.startswith("eval."):
            raise ConfigError(f"override {text!r}: deepfusion eval changes only eval.* settings "
                              "(the model and data are fixed by the run); retrain to change the rest")
        apply_override(cfg, text)
    validate(cfg)  # also rejects eval.head_batch < 2


def run(args: argparse.Namespace) -> int:
    from contextlib import nullcontext

    from deepfusion.model.runs.devices import resolve_device
    from deepfusion.model.runs.loading import run_config
    from deepfusion.model.runs.lock import folder_lock

    run_dir = Path(args.run)
    _apply_eval_overrides(run_config(run_dir), list(args.overrides))  # bad overrides fail before loading anything
    device = resolve_device(args.device, option="--device")
    # Writing eval.json into the run folder takes the folder's lock; --no-write and --json elsewhere read only.
    writes_run = not args.no_write and not args.json
    with folder_lock(run_dir, "evaluate") if writes_run else nullcontext():
        return _evaluate(args, run_dir, device)


def _evaluate(args: argparse.Namespace, run_dir: Path, device) -> int:
    from deepfusion.model.runs.evaluate import evaluate_model
    from deepfusion.model.runs.layout import RunFolder, write_json
    from deepfusion.model.runs.loading import load_run

    loaded = load_run(run_dir, device)
    _apply_eval_overrides(loaded.cfg, list(args.overrides))
    start = time.perf_counter()
    results = evaluate_model(loaded.model, loaded.augment, loaded.train_ds, loaded.test_ds, loaded.cfg.eval, device,
                             loaded.cfg.train.seed)
    results = dict(results, step=loaded.step, finished=loaded.finished)
    print(f"run folder: {run_dir}  ({time.perf_counter() - start:.1f} s on {device}; checkpoint of step "
          f"{loaded.step}{'' if loaded.finished else ', the run is not finished'})")
    print(format_table(results))
    if args.no_write:
        return 0
    out = Path(args.json) if args.json else RunFolder(run_dir).eval
    if out == RunFolder(run_dir).eval and out.is_file() and not out.is_symlink():
        try:
            previous = json.loads(out.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            previous = {}
        if isinstance(previous, dict) and previous.get("step", previous.get("train_steps")) == loaded.step:
            results.update({k: previous[k] for k in KEEP_FROM_TRAINING if k in previous})
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(out, results)
    except OSError as err:
        where = f": {err.filename}" if err.filename and str(err.filename) != str(out) else ""
        raise RunError(f"cannot write {out} ({err.strerror}{where}); pass --json PATH to a writable place or --no-write") from None
    return 0
