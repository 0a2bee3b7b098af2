"""Finite simulation of idealised attention layers on actual tokens (checks S2, S4, S5, S7).

Tokens x_i = mu_c(i) + e_i in R^d, class by class (n tokens per class, C classes), projected to the
unit sphere. A layer: cosine scores, attention (softmax with inverse temperature beta, or ReLU
normalised), value = identity, residual alpha, projection back to the sphere:
x_i <- normalise(x_i + alpha * sum_j A_ij x_j), or normalise(sum_j A_ij x_j) without the residual.

Precision: float64 by default, because under fast fusion r shrinks geometrically and the deviations
fall below float32 resolution of a unit token (~1e-7) within a few dozen layers; float32 is accurate
to ~1e-6 in cosines, far below the ~1/sqrt(d) finite-d fluctuations, and is what the benchmark uses.

Two paths compute the same layer. The general one (torch, any device) forms the attention matrix.
The BLAS one (CPU softmax, float32/float64) uses that the scores are symmetric: one syrk gives the
upper triangle of beta (S - c) (half the flops of x x^T), exp runs on that triangle only, and one
symm of the unnormalised E with [x, 1] gives the numerators and the row sums together; rows are
divided afterwards. 3 M^2 d flops per layer instead of 4 M^2 d.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.linalg.blas import get_blas_funcs

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
            e[c, :, C + c * n : C + (c + 1) * n] = block
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
        # shift by the row maximum (the self score 1 for unit tokens): exp cannot overflow
        a = cos.sub_(cos.amax(dim=1, keepdim=True)).mul_(beta).exp_()
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
    method: str = "general"

    def __getitem__(self, key):
        return getattr(self, key)


# Largest beta * (max - min squared token norm) for the BLAS path. Its one shift c = max |x_i|^2 for
# all rows keeps exp from overflowing (s_ij <= |x_i||x_j| <= c); a row's largest entry is then at
# least exp(-beta (c - |x_i|^2)), which these limits keep far from underflow (exp(-87) in float32).
_SPREAD_LIMIT = {torch.float32: 40.0, torch.float64: 400.0}
METHODS = ("auto", "blas", "general")


def _blas_blocker(x, beta, kind, return_attention):
    """Why the BLAS path cannot run these tokens, or None when it can."""
    if kind != "softmax" or return_attention:
        return "it computes softmax attention without returning it"
    if x.device.type != "cpu" or x.dtype not in _SPREAD_LIMIT:
        return "it needs float32 or float64 tokens on the CPU"
    sq = x.pow(2).sum(dim=1)
    if beta * float(sq.max() - sq.min()) > _SPREAD_LIMIT[x.dtype]:
        return "the token norms differ too much for one shared exp shift"
    return None


def simulate(x, C, beta, alpha, layers, kind="softmax", residual=True, return_attention=False, method="auto"):
    """S5: run `layers` idealised layers on unit tokens x (class-major, C classes) and measure each.

    method: "general" (torch, forms the attention), "blas" (symmetric BLAS path, CPU softmax only)
    or "auto" (BLAS where it applies). Both give the same trajectory to rounding."""
    if layers < 0 or beta < 0 or alpha < 0:
        raise ConfigError("layers, beta and alpha must be non-negative")
    if x.shape[0] % C:
        raise ConfigError(f"{x.shape[0]} tokens do not split into C={C} equal classes")
    if method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}, got {method!r}")
    blocker = None if method == "general" else _blas_blocker(x, beta, kind, return_attention)
    if method == "blas" and blocker:
        raise ConfigError(f"method='blas' cannot run here: {blocker}; use method='auto' or 'general'")
    use_blas = method != "general" and blocker is None
    rows = {k: [] for k in ("m", "a_self", "a_same", "a_out")}
    r, rho = [], []
    attn = []
    layer = _BlasLayer(x, C, beta) if use_blas else None
    for _ in range(layers):
        rr, rh = measure_tokens(x, C)
        r.append(rr)
        rho.append(rh)
        if use_blas:
            y, stats = layer(x)
        else:
            a = attention(x, beta, kind)
            stats = block_stats(a, C)
            if return_attention:
                attn.append(a.cpu().numpy().copy())
            y = a @ x
        for k, v in zip(rows, stats):
            rows[k].append(v)
        x = x + alpha * y if residual else y
        x = x / x.norm(dim=1, keepdim=True)
    rr, rh = measure_tokens(x, C)
    r.append(rr)
    rho.append(rh)
    return Trajectory(
        r=np.array(r),
        rho=np.array(rho),
        attention=attn,
        method="blas" if use_blas else "general",
        **{k: np.array(v) for k, v in rows.items()},
    )


class _BlasLayer:
    """Softmax attention output a x and block_stats(a) of (M, d) CPU tokens, through syrk and symm.

    Buffers are allocated once and reused every layer: E (M, M) in Fortran order, of which only the
    upper triangle is ever valid, and [x | 1] (M, d + 1) with its product."""

    SLAB = 256  # rows per exp slab: only the triangle is exponentiated, in cache-sized strips

    def __init__(self, x, C, beta):
        M, d = x.shape
        dt = x.numpy().dtype
        self.C, self.beta, self.d = C, float(beta), d
        self.syrk, self.symm = get_blas_funcs(("syrk", "symm"), dtype=dt)
        self.E = np.empty((M, M), dt, order="F")
        self.lower = torch.from_numpy(self.E.T)  # row-major view: E's upper triangle is its lower one
        self.xb = np.ones((M, d + 1), dt)  # [x | 1]
        self.out = np.empty((M, d + 1), dt)  # E [x | 1]: numerators and row sums

    def _slabs(self):
        M = self.E.shape[0]
        for i in range(0, M, self.SLAB):
            yield self.lower[i : i + self.SLAB, : i + self.SLAB]  # covers the lower triangle of its rows

    def __call__(self, x):
        M, d, C, beta = x.shape[0], self.d, self.C, self.beta
        n = M // C
        shift = float(x.pow(2).sum(dim=1).max())  # c >= every score, so exp(beta (s - c)) <= 1
        for slab in self._slabs():
            slab.fill_(-beta * shift)
        xb = self.xb
        xb[:, :d] = x.numpy()
        # upper triangle of beta x x^T - beta c, written in place (scipy copies the strided x^T: O(M d))
        self.syrk(beta, xb[:, :d].T, beta=1.0, c=self.E, trans=1, overwrite_c=1)
        for slab in self._slabs():
            slab.exp_()
        # out^T = [x | 1]^T E, i.e. out = E [x | 1] in row-major memory
        self.symm(1.0, self.E, xb.T, beta=0.0, c=self.out.T, side=1, overwrite_c=1)
        out = torch.from_numpy(self.out)
        s = out[:, d]  # row sums of E
        # block_stats without the matrix: diagonal of E and row sums of its C diagonal blocks
        low = self.lower.view(C, n, C, n).diagonal(dim1=0, dim2=2).permute(2, 0, 1).tril()  # (C, n, n)
        diag = low.diagonal(dim1=1, dim2=2)  # (C, n)
        own = (low.sum(2) + low.sum(1) - diag).reshape(M)
        m = float((own / s).sum() / M)
        a_self = float((diag.reshape(M) / s).mean())
        stats = (m, a_self, (m - a_self) / (n - 1), (1.0 - m) / ((C - 1) * n))
        return out[:, :d].div_(s[:, None]), stats


def simulate_fusion(
    C,
    n,
    d,
    beta,
    alpha,
    r0,
    layers,
    rho=None,
    noise="gaussian",
    seed=0,
    kind="softmax",
    residual=True,
    return_attention=False,
    dtype=torch.float64,
    device="cpu",
    method="auto",
):
    """S5: make tokens (make_tokens) and run `simulate` on them; the measured r[0] is the start."""
    x = make_tokens(C, n, d, r0, rho, noise, seed, dtype).to(device)
    return simulate(x, C, beta, alpha, layers, kind, residual, return_attention, method)


def simulation_flops(M, d, layers, method):
    """Flops of the simulation's two products over `layers` layers: 4 M^2 d per layer when the attention
    is formed (x x^T and a x), M^2 d + 2 M^2 (d + 1) on the BLAS path (syrk triangle, symm with [x, 1])."""
    per_layer = 4 * M * M * d if method == "general" else M * M * d + 2 * M * M * (d + 1)
    return layers * per_layer
