"""Benchmark of the theory's numeric models: the mean-field recursion and the token simulation (S5).

Kept out of ``theory/`` so the theory package holds statements and their checks only.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from deepfusion.theory.fusion import mean_field
from deepfusion.theory.simulation import make_tokens, simulate, simulation_flops


def bench_theory(repeats=3, device=None, layers=32, method="auto"):
    """Timings (s, median of `repeats`) of the two theory targets: mean_field on 10^4 points x 64
    layers (target < 1 s) and the simulation with M = 4096, d = 512, 32 layers in float32 (< 20 s).

    layers < 32 times that many layers and scales to 32 (every layer costs the same); the result says
    so. device defaults to CUDA when available; on the CPU `method="auto"` takes the BLAS path."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    rng = np.random.default_rng(0)
    pts = 10_000
    C = rng.integers(2, 11, pts)
    beta, r0 = rng.uniform(0, 20, pts), rng.uniform(0, 3, pts)
    t_mf, t_sim = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        mean_field(C, 64, beta, 1.0, r0, 64)
        t_mf.append(time.perf_counter() - t)
    M, d, full = 4096, 512, 32
    x = make_tokens(8, M // 8, d, 1.0, dtype=torch.float32).to(device)
    for _ in range(repeats):
        t = time.perf_counter()
        used = simulate(x, 8, 8.0, 1.0, layers, method=method).method
        if device != "cpu":
            torch.cuda.synchronize()
        t_sim.append(time.perf_counter() - t)
    sim = float(np.median(t_sim)) * full / layers
    flop = simulation_flops(M, d, full, used)
    return {
        "mean_field_1e4x64_s": float(np.median(t_mf)),
        "mean_field_target_s": 1.0,
        "simulation_M4096_d512_L32_s": sim,
        "simulation_target_s": 20.0,
        "simulation_timed_layers": layers,
        "simulation_runs_s": [float(t) for t in t_sim],
        "simulation_method": used,
        "simulation_tflop": flop / 1e12,
        "simulation_gflops": flop / sim / 1e9,
        "simulation_needed_gflops": flop / 20.0 / 1e9,
        "simulation_general_tflop": simulation_flops(M, d, full, "general") / 1e12,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "device": str(device),
    }
