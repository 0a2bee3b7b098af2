"""Benchmarks (not tests): the head, a full training step and the theory code, side by side.

  head    forward+backward of our TransformerHead, a reference head built from
          nn.TransformerEncoderLayer with the same sizes and weights, and the MLP head;
          M in {512, 2048, 8192} tokens, D=256, L=6, H=8 (fp32 on CPU, bf16 on GPU)
  train   one SimCLR step (two views, augmentation, backbone, head, loss, optimiser) in
          images/s, ResNet-18 at 32 px and batch 512 on GPU, the small CNN on CPU; and head-only
          training (frozen backbone) at the paper's head size (D=256, L=10, H=16, FFN 1024,
          out 512), batch 256 and 1024, in steps/s; with --config PRESET instead one step of
          that preset as `deepfusion train` runs it (its data, augmentation, model, batch,
          temperature, optimiser), in seconds per step and steps per epoch
  theory  mean_field on 10^4 points x 64 layers; the simulation M=4096, d=512, 32 layers
          at full size (--quick: 2 layers, scaled), with its FLOP count and rate
  all     the three

Timings are medians over --repeats after warm-up (CUDA events on a GPU). Prints a table
with each target and writes JSON (machine, device, versions, every figure) to --out.
On CPU M=8192 is left out (the reference head needs ~12 GB there); --quick shortens
everything further for a smoke run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from deepfusion.errors import ConfigError
from deepfusion.experiments.bench_timing import machine

WHAT = ("head", "train", "theory", "all")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", nargs="?", default="all", choices=WHAT, help="which benchmark (default: all)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads for torch (and for BLAS in the theory benchmark); 0 = the libraries' default",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per figure (default 5)")
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats: a short CPU run")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model in the train benchmark (CUDA)")
    parser.add_argument(
        "--config",
        default=None,
        metavar="PRESET",
        help="train benchmark only: time one step of this preset or YAML file instead of the "
        "built-in models (its train.device and train.threads unless --device/--threads given)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --config: a config override such as data.root=DIR (repeatable)",
    )
    parser.add_argument(
        "--out",
        default=str(Path("results") / "bench.json"),
        metavar="FILE",
        help="JSON output (default: results/bench.json)",
    )


def _theory(quick: bool, repeats: int, device: torch.device, threads: int) -> dict:
    """The theory targets at full size (32 layers); --quick times 2 layers and scales to 32."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from deepfusion.experiments.bench_theory import bench_theory  # loads scipy's BLAS, so the limit below reaches it

    with threadpool_limits(limits=threads or None, user_api="blas"):
        out = bench_theory(repeats=repeats, device=str(device), layers=2 if quick else 32)
        out["blas_threads"] = max((i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"), default=0)
    return out


def _load_preset(args: argparse.Namespace):
    """The config named by --config with --set overrides, and --device where given (not auto)."""
    from deepfusion.model.runs.config import load_config

    overrides = list(args.overrides) + ([f"train.device={args.device}"] if args.device != "auto" else [])
    return load_config(args.config, overrides)


def _config_step(args: argparse.Namespace, cfg, repeats: int) -> dict:
    """One training step of the preset ``cfg`` (--threads overrides its train.threads)."""
    from deepfusion.experiments.bench_train import bench_config
    from deepfusion.model.runs.devices import limit_threads

    with limit_threads(args.threads or cfg.train.threads):
        row = bench_config(cfg, repeats=repeats, warmup=1)
        row["threads"] = torch.get_num_threads()
    return row


def _table(results: dict) -> str:
    lines = []
    for row in results.get("head", []):
        lines.append(
            f"head M={row['M']:>5} {row['dtype']}: ours {row['ours_s'] * 1e3:8.1f} ms  reference "
            f"{row['reference_s'] * 1e3:8.1f} ms  mlp {row['mlp_s'] * 1e3:7.1f} ms  "
            f"ours/ref {row['ours_over_reference']:.2f}"
        )
    for row in results.get("head_only", []):
        lines.append(
            f"head-only (frozen backbone, paper head) batch {row['batch']}: {row['steps_per_s']:6.2f} steps/s, "
            f"{row['samples_per_s']:8.1f} samples/s"
        )
    row = results.get("train_config")
    if row:
        lines.append(
            f"train {row['config']} ({row['backbone']}, {row['head']} head) batch {row['batch']}, "
            f"{row['threads']} thread(s): {row['step_s']:.2f} s per step, {row['images_per_s']:.1f} images/s; "
            f"{row['steps_per_epoch']} steps per epoch of {row['train_images']} images: "
            f"{row['epochs']} epochs train in about {row['train_s']:.0f} s"
        )
    for row in results.get("train", []):
        extra = f"  cost vs mlp {row['cost_vs_mlp']:.2f}x" if "cost_vs_mlp" in row else ""
        lines.append(
            f"train {row['backbone']} {row['head']:<11} batch {row['batch']}: "
            f"{row['images_per_s']:9.1f} images/s{extra}"
        )
    th = results.get("theory")
    if th:
        lines.append(f"theory mean_field 1e4 x 64: {th['mean_field_1e4x64_s']:.3f} s (target < 1 s)")
        layers = th["simulation_timed_layers"]
        note = f" (scaled from {layers} layers)" if layers != 32 else f" (median of {th['repeats']})"
        work = "syrk M^2 d + symm 2 M^2 (d+1)" if th["simulation_method"] == "blas" else "2 x 2 M^2 d"
        lines.append(
            f"theory simulation M=4096 d=512 L=32, {th['simulation_method']} path, "
            f"{th['blas_threads']} BLAS threads: {th['simulation_M4096_d512_L32_s']:.1f} s{note} (target < 20 s)"
        )
        lines.append(
            f"  {work} per layer x 32 = {th['simulation_tflop']:.3f} TFLOP "
            f"(forming the attention: {th['simulation_general_tflop']:.3f}) at {th['simulation_gflops']:.1f} "
            f"GFLOP/s; 20 s needs {th['simulation_needed_gflops']:.1f} GFLOP/s"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from deepfusion.experiments.bench_head import bench_head
    from deepfusion.experiments.bench_train import bench_head_only, bench_train
    from deepfusion.model.runs.devices import resolve_device
    from deepfusion.model.runs.layout import write_json

    if args.repeats < 1 or args.threads < 0:
        raise ConfigError("--repeats must be >= 1 and --threads >= 0")
    if args.config and args.what not in ("train", "all"):
        raise ConfigError(f"--config times a preset's training step; use it with 'train', not '{args.what}'")
    if args.overrides and not args.config:
        raise ConfigError("--set overrides a preset's keys; name the preset with --config PRESET")
    preset = _load_preset(args) if args.config else None  # a bad preset or key is refused before any timing
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device, option="--device")
    cuda = device.type == "cuda"
    repeats = 2 if args.quick else args.repeats
    results = {"machine": machine(device), "quick": args.quick, "repeats": repeats}
    todo = WHAT[:3] if args.what == "all" else (args.what,)
    if "head" in todo:
        sizes = (512, 2048, 8192) if cuda else ((512,) if args.quick else (512, 2048))
        results["head"] = bench_head(sizes, device, repeats=repeats, warmup=1 if args.quick else 2)
    if "train" in todo and preset is not None:
        results["train_config"] = _config_step(args, preset, repeats)
    elif "train" in todo:
        batch = 512 if (cuda or not args.quick) else 128
        results["train"] = bench_train(
            device, batch=batch, repeats=repeats, warmup=1 if args.quick else 2, compile=args.compile
        )
        batches = (256, 1024) if (cuda or not args.quick) else (128,)
        results["head_only"] = bench_head_only(device, batches, repeats=repeats, warmup=1 if args.quick else 2)
    if "theory" in todo:
        results["theory"] = _theory(args.quick, repeats, device, args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, results)
    m = results["machine"]
    print(f"# {m['device_name']} ({m['device']}), torch {m['torch']}, {m['torch_threads']} threads")
    print(_table(results))
    print(f"written: {out}")
    return 0
