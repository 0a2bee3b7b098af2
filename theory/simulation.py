"""Finite simulation of idealised attention layers on actual tokens (checks S2, S4, S5, S7).

Tokens x_i = mu_c(i) + e_i in R^d, class by class (n tokens per class, C classes), projected to the
unit sphere. A layer: cosine scores, attention (softmax with inverse temperature beta, or ReLU
normalised), value = identity, residual alpha, projection back to the sphere:
x_i <- normalise(x_i + alpha * sum_j A_ij x_j), or normalise(sum_j A_ij x_j) without the residual.

Precision: float64 by default, because under fast fusion r shrinks geometrically and the deviations
fall below float32 resolution of a unit token (~1e-7) within a few dozen layers; float32 is accurate
to ~1e-6 in cosines, far below the ~1/sqrt(d) finite-d fluctuations, and is what the benchmark uses.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from deepfusion.errors import ConfigError


def class_means(C, d, rho=None, dtype=torch.float64):
    """(C, d) unit means with pairwise cosine rho (default the simplex ETF, -1/(C-1)), in the first C coordinates."""
    rho = -1.0 / (C - 1) if rho is None else float(rho)
    if not -1.0 / (C - 1) - 1e-12 <= rho < 1.0:
        raise ConfigError(f"rho must lie in [-1/(C-1), 1), got {rho}")
    if d < C + 1:
        raise ConfigError(f"d must exceed C; got d={d}, C={C}")
    gram = (1.0 - rho) * np.eye(C) + rho * np.ones((C, C))
    w, v = np.linalg.eigh(gram)
    mu = np.zeros((C, d))
    mu[:, :C] = v * np.sqrt(np.clip(w, 0.0, None))
    return torch.as_tensor(mu, dtype=dtype)


def make_tokens(C, n, d, r0, rho=None, noise="gaussian", seed=0, dtype=torch.float64, project=True):
    """(C*n, d) tokens, class-major, spread r0; on the unit sphere unless project=False.

    Unprojected tokens satisfy S2's assumptions exactly (zero class-mean deviations orthogonal to the
    means); projecting Gaussian tokens rescales each by its own norm, which breaks them by ~1/sqrt(d).

    noise="gaussian": Gaussian deviations orthogonal to the means, centred per class, scaled so that
    the RMS deviation norm is r0 (norms then fluctuate by ~1/sqrt(2d)). noise="simplex": the exactly
    symmetric configuration of S2/S4 (each class a regular simplex of n points of norm r0 in its own
    n coordinates; needs d >= C + C n)."""
    if C < 2 or n < 2 or r0 < 0:
        raise ConfigError(f"need C >= 2, n >= 2, r0 >= 0; got C={C}, n={n}, r0={r0}")
    # built in float64 and cast at the end, so that both precisions see the same tokens
    out_dtype, dtype = dtype, torch.float64
    mu = class_means(C, d, rho, dtype)
    if noise == "gaussian":
        g = torch.Generator().manual_seed(seed)
        e = torch.randn(C, n, d, generator=g, dtype=dtype)
        e[..., :C] = 0.0  # orthogonal to every mean
        e = e - e.mean(dim=1, keepdim=True)
        e = e * (r0 / e.pow(2).sum(-1).mean().sqrt())
    elif noise == "simplex":
        if d < C + C * n:
            raise ConfigError(f"noise='simplex' needs d >= C + C*n = {C + C * n}, got d={d}")
        e = torch.zeros(C, n, d, dtype=dtype)
        block = torch.eye(n, dtype=dtype) - 1.0 / n
        block = block * (r0 / np.sqrt(1.0 - 1.0 / n))
        for c in range(C):
            e[c, :, C + c * n: C + (c + 1) * n] = block
    else:
        raise ConfigError(f"noise must be 'gaussian' or 'simplex', got {noise!r}")
    x = (mu[:, None, :] + e).reshape(C * n, d)
    return (x / x.norm(dim=1, keepdim=True) if project else x).to(out_dtype)


def measure_tokens(x, C):
    """(r, rho) of class-major tokens: RMS deviation from the class mean over the RMS class-mean norm,
    and the mean cosine between distinct class means."""
    xs = x.reshape(C, -1, x.shape[-1])
    means = xs.mean(dim=1)  # (C, d)
    dev2 = (xs - means[:, None]).pow(2).sum(-1).mean()
    r = float((dev2 / means.pow(2).sum(-1).mean()).sqrt())
    u = means / means.norm(dim=1, keepdim=True)
    g = u @ u.T
    rho = float((g.sum() - g.diagonal().sum()) / (C * (C - 1)))
    return r, rho


def attention(x, beta, kind="softmax"):
    """(M, M) attention rows of unit tokens x: softmax(beta * cos) or relu(cos)/row sum (S4, S1)."""
    cos = x @ x.T
    if kind == "softmax":
        # unit tokens: the self score 1 is the row maximum, so shifting by beta is safe
        a = cos.sub_(1.0).mul_(beta).exp_()
    elif kind == "relu":
        a = cos.clamp_(min=0.0)
    else:
        raise ConfigError(f"attention must be 'softmax' or 'relu', got {kind!r}")
    return a.div_(a.sum(dim=1, keepdim=True))


def block_stats(a, C):
    """(m, a_self, a_same, a_out) averaged over rows of class-major attention a (S2 notation)."""
    M = a.shape[0]
    n = M // C
    blocks = a.reshape(C, n, C, n).sum(dim=(1, 3))  # (C, C) summed mass
    m = float(blocks.diagonal().sum() / M)
    a_self = float(a.diagonal().mean())
    return m, a_self, (m - a_self) / (n - 1), (1.0 - m) / ((C - 1) * n)


@dataclass
class Trajectory:
    """Per-layer measurements: m, a_self, a_same, a_out (layers,) at each layer's input; r, rho
    (layers + 1,); attention: list of (M, M) arrays when requested."""

    m: np.ndarray
    a_self: np.ndarray
    a_same: np.ndarray
    a_out: np.ndarray
    r: np.ndarray
    rho: np.ndarray
    attention: list = field(default_factory=list)

    def __getitem__(self, key):
        return getattr(self, key)


def simulate(x, C, beta, alpha, layers, kind="softmax", residual=True, return_attention=False):
    """S5: run `layers` idealised layers on unit tokens x (class-major, C classes) and measure each."""
    if layers < 0 or beta < 0 or alpha < 0:
        raise ConfigError("layers, beta and alpha must be non-negative")
    if x.shape[0] % C:
        raise ConfigError(f"{x.shape[0]} tokens do not split into C={C} equal classes")
    rows = {k: [] for k in ("m", "a_self", "a_same", "a_out")}
    r, rho = [], []
    attn = []
    for _ in range(layers):
        rr, rh = measure_tokens(x, C)
        r.append(rr)
        rho.append(rh)
        a = attention(x, beta, kind)
        for k, v in zip(rows, block_stats(a, C)):
            rows[k].append(v)
        if return_attention:
            attn.append(a.cpu().numpy().copy())
        y = a @ x
        x = x + alpha * y if residual else y
        x = x / x.norm(dim=1, keepdim=True)
    rr, rh = measure_tokens(x, C)
    r.append(rr)
    rho.append(rh)
    return Trajectory(r=np.array(r), rho=np.array(rho), attention=attn,
                      **{k: np.array(v) for k, v in rows.items()})


def simulate_fusion(C, n, d, beta, alpha, r0, layers, rho=None, noise="gaussian", seed=0,
                    kind="softmax", residual=True, return_attention=False, dtype=torch.float64,
                    device="cpu"):
    """S5: make tokens (make_tokens) and run `simulate` on them; the measured r[0] is the start."""
    x = make_tokens(C, n, d, r0, rho, noise, seed, dtype).to(device)
    return simulate(x, C, beta, alpha, layers, kind, residual, return_attention)


def bench_theory(repeats=3, device=None):
    """Timings (s, median of `repeats`) of the two theory targets: mean_field on 10^4 points x 64
    layers (target < 1 s) and the simulation with M = 4096, d = 512, 32 layers in float32 (< 20 s).

    The simulation costs two (M x M x d) matmuls per layer, 1.1 TFLOP in all; device defaults to
    CUDA when available."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    from theory.fusion import mean_field

    rng = np.random.default_rng(0)
    pts = 10_000
    C = rng.integers(2, 11, pts)
    beta, r0 = rng.uniform(0, 20, pts), rng.uniform(0, 3, pts)
    t_mf, t_sim = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        mean_field(C, 64, beta, 1.0, r0, 64)
        t_mf.append(time.perf_counter() - t)
    x = make_tokens(8, 512, 512, 1.0, dtype=torch.float32).to(device)
    for _ in range(repeats):
        t = time.perf_counter()
        simulate(x, 8, 8.0, 1.0, 32)
        if device != "cpu":
            torch.cuda.synchronize()
        t_sim.append(time.perf_counter() - t)
    return {
        "mean_field_1e4x64_s": float(np.median(t_mf)), "mean_field_target_s": 1.0,
        "simulation_M4096_d512_L32_s": float(np.median(t_sim)), "simulation_target_s": 20.0,
        "repeats": repeats, "threads": torch.get_num_threads(), "device": str(device),
    }
