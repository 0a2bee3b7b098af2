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
from deepfusion.model.runs.progress_line import Heartbeat

# (label, key of the trained model, key of its baseline, what the baseline is)
ROWS = [("kNN (backbone)", "knn", "random_knn", "random backbone"),
        ("linear probe (backbone)", "linear", "random_linear", "random backbone"),
        ("head leave-one-out 1-NN", "head_loo1nn", "untrained_head_loo1nn", "untrained head"),
        ("kNN (head outputs)", "head_knn", "untrained_head_knn", "untrained head")]
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
    parser.add_argument("--threads", type=int, default=0, metavar="T",
                        help="CPU threads for torch and BLAS; 0 (default) leaves the libraries' defaults; 1 is "
                             "often faster on a busy shared machine")
    parser.add_argument("--force", action="store_true",
                        help="evaluate even though the data at the run's data.root no longer matches the fingerprint "
                             "recorded when the run started (size and SHA-256 in data.json); without it such data "
                             "is refused")


def fmt_score(results: dict, key: str | None) -> str:
    """``0.9120 [0.8800, 0.9350]``: an accuracy and its Wilson 95% interval ("-" when missing)."""
    value = results.get(key) if key else None
    if value is None:
        return "-"
    ci = results.get(f"{key}_ci")
    return f"{value:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else f"{value:.4f}"


def reading(results: dict, key: str, base: str, what: str) -> str:
    """``above random backbone`` / ``tied with random backbone (95% intervals overlap)`` / ``below ...``."""
    from deepfusion.model.runs.intervals import compare_intervals

    word = compare_intervals(results.get(f"{key}_ci"), results.get(f"{base}_ci"))
    return {"above": f"above {what}", "below": f"BELOW {what}",
            "tied": f"tied with {what} (95% intervals overlap)"}.get(word, "")


def format_table(results: dict) -> str:
    """Metric, trained model and baseline columns (with 95% intervals), the reading in words, then the
    settings used."""
    lines = [f"{'metric':<25} {'trained [95% CI]':<24} {'baseline [95% CI]':<24} reading"]
    for label, key, base, what in ROWS:
        base_text = fmt_score(results, base)
        lines.append(f"{label:<25} {fmt_score(results, key):<24} {base_text:<24} "
                     f"{reading(results, key, base, what) or (what if base_text != '-' else '')}".rstrip())
    lines.append(f"kNN k={results.get('knn_k')} t={results.get('knn_t')}; linear probe on "
                 f"{100 * results.get('linear_fraction', 1.0):g}% of train, {results.get('linear_epochs')} L-BFGS "
                 f"iterations, the same for the trained and the random backbone; head 1-NN over {results.get('head_batches')} test batches of "
                 f"{results.get('head_batch_min')}-{results.get('head_batch_max')}")
    lines.append(f"{results.get('n_train')} train / {results.get('n_test')} test samples; offline, final epoch, test split; "
                 "intervals: Wilson score, 95%")
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
    from deepfusion.model.runs.layout import RunFolder, write_json
    from deepfusion.model.runs.loading import load_run

    loaded = load_run(run_dir, device, force=args.force)
    _apply_eval_overrides(loaded.cfg, list(args.overrides))
    start = time.perf_counter()
    with Heartbeat(f"evaluating {run_dir.name}"):  # a line every 25 s when the output is a file or pipe
        results = evaluate_model(loaded.model, loaded.augment, loaded.train_ds, loaded.test_ds, loaded.cfg.eval,
                                 device, loaded.cfg.train.seed)
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
