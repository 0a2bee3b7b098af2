"""The reduced model of the learning dynamics (S13-S15): a transformer head on the two-view symmetric
configuration, with every head's score and value maps restricted to scalars on the configuration's
three spans, trained by the same optimiser as the network.

Two-view configuration (THEORY_DYNAMICS.md): a batch of N instances, C balanced classes, two views
each (M = 2N tokens). Token i of instance k, class c: z_i = a v_c + b p_k + u w_i + w w_i', with unit
simplex-ETF class means v_c (cosine rho = -1/(C-1)), unit instance parts p_k forming a regular simplex
within each class (cosine -1/(N_c - 1)), and orthonormal view parts w_i (w_i' the positive view's). By
symmetry every token has the same four coefficients (a, b, u, w), so one vector is the whole state.

A head h scores with B_h = beta_V P_V + beta_I P_I + beta_W P_W and maps values with
V_h = lambda_V P_V + lambda_I P_I + lambda_W P_W (S8, S9 with the positive view as its own block,
S8(e)). Its attention then has four block weights (self, positive, same class, other class), the
layer maps the coefficients in closed form (S9, S11; LayerNorm as S10's scaled projection), and the
NT-Xent loss of the final tokens is a closed function of them (S14). By S13 the gradient of this
loss with respect to the scalars is the projection of the full gradient on B and V onto the spans.
The model leaves out the FFN, the input and output maps, the BatchNorm and every asymmetric part of
the weights, and it holds the sum over the other tokens' view parts at its d -> infinity value (0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from deepfusion.errors import ConfigError

SCOPES = ("both_views", "per_view", "mask_pair")
NORMS = ("post", "pre")
PARAMS = ("beta_V", "beta_I", "beta_W", "lambda_V", "lambda_I", "lambda_W")


@dataclass(frozen=True)
class Geometry:
    """What the reduced model needs of a run's config: class geometry, batch, head shape, training."""

    classes: int
    instances: int  # N, instances per batch (the batch size)
    spread: float  # b / a at the input: within-class spread over the class mean's norm
    view: float  # u / a at the input: view noise over the class mean's norm
    scope: str = "both_views"
    norm: str = "post"
    depth: int = 4
    heads: int = 4
    dim: int = 64
    temperature: float = 0.5
    lr: float = 0.002
    steps: int = 600
    weight_decay: float = 1e-4
    warmup_steps: int = 6

    def check(self) -> None:
        if self.classes < 2 or self.instances < 2 * self.classes:
            raise ConfigError(
                f"the reduced model needs >= 2 classes and >= 2 instances per class in a batch, "
                f"got {self.classes} classes and batch {self.instances}; raise train.batch_size"
            )
        if self.scope not in SCOPES or self.norm not in NORMS:
            raise ConfigError(
                f"scope {self.scope!r} / norm {self.norm!r}: the reduced model knows scopes {SCOPES} and norms {NORMS}"
            )

    @property
    def per_class(self) -> int:
        return self.instances // self.classes


def counts(g: Geometry) -> dict:
    """S8(e): visible tokens of each block for one anchor (self, positive, same class, other class)
    and k, the number of views of each other instance of the class it sees."""
    Nc, N = g.per_class, g.per_class * g.classes
    if g.scope == "per_view":
        return {"self": 1, "pos": 0, "same": Nc - 1, "out": N - Nc, "k": 1}
    return {"self": 1, "pos": 0 if g.scope == "mask_pair" else 1, "same": 2 * Nc - 2, "out": 2 * N - 2 * Nc, "k": 2}


def block_logits(z, beta, g: Geometry, scale):
    """S8 with four blocks: (self, pos, same, out) logits of heads with beta (H, 3) on tokens with
    coefficients z = (a, b, u, w), read at scale `scale` (the reader's norm over |z|)."""
    a, b, u, w = (c[..., None] for c in z)
    rho, Nc = -1.0 / (g.classes - 1), g.per_class
    bV, bI, bW = beta[..., 0], beta[..., 1], beta[..., 2]
    s2 = scale[..., None] ** 2
    return (
        s2 * (bV * a * a + bI * b * b + bW * (u * u + w * w)),
        s2 * (bV * a * a + bI * b * b + 2 * bW * u * w),
        s2 * (bV * a * a - bI * b * b / (Nc - 1)),
        s2 * (bV * a * a * rho),
    )


def block_weights(logits, cnt, xp):
    """Per-entry softmax weights of the four blocks (each (..., H)), blocks with no visible token dropped."""
    keys = ("self", "pos", "same", "out")
    L = xp.stack([l_ if cnt[k] > 0 else l_ - 1e30 for l_, k in zip(logits, keys)])  # (4, H)
    L = L - L.max(0, keepdims=True) if xp is np else L - L.max(0, keepdim=True).values
    E = xp.exp(L)
    Z = sum(cnt[k] * E[i] for i, k in enumerate(keys))
    return [E[i] / Z for i in range(4)]


def layer(z, beta, lam, g: Geometry, xp=np):
    """One block of the reduced model: S9/S11 on the coefficients; post-LN projects back to norm
    sqrt(D) (S10(a)), pre-LN adds the heads' output to the stream (S10(d)). Returns (z', weights)."""
    cnt = counts(g)
    norm = xp.sqrt(sum(c * c for c in z))
    # post-LN reads the tokens as they are (norm sqrt(D) after the first block); pre-LN reads LN(z)
    scale = norm * 0 + 1.0 if g.norm == "post" else np.sqrt(g.dim) / norm
    a, b, u, w = (scale * c for c in z)
    s, p, q, o = block_weights(block_logits(z, beta, g, scale), cnt, xp)
    kappa = s + cnt["pos"] * p + cnt["same"] * q - cnt["out"] * o / (g.classes - 1)
    inst = s + cnt["pos"] * p - cnt["k"] * q
    u_, w_ = u[..., None], w[..., None]
    own, other = s * u_ + cnt["pos"] * p * w_, s * w_ + cnt["pos"] * p * u_
    out = (
        xp.sum(lam[..., 0] * kappa, -1) * a,
        xp.sum(lam[..., 1] * inst, -1) * b,
        xp.sum(lam[..., 2] * own, -1),
        xp.sum(lam[..., 2] * other, -1),
    )
    z2 = tuple(zi + oi for zi, oi in zip(z, out))
    if g.norm == "post":
        n2 = xp.sqrt(sum(c * c for c in z2))
        z2 = tuple(np.sqrt(g.dim) * c / n2 for c in z2)
    return z2, (s, p, q, o)


def ntxent(z, g: Geometry, xp=np):
    """S14: the NT-Xent loss of one anchor on the final tokens (normalised; every anchor alike)."""
    a, b, u, w = z
    n2 = sum(c * c for c in z)
    rho, Nc, N = -1.0 / (g.classes - 1), g.per_class, g.per_class * g.classes
    sp, ss, so = (a * a + b * b + 2 * u * w) / n2, (a * a - b * b / (Nc - 1)) / n2, a * a * rho / n2
    t = g.temperature
    terms = xp.stack([sp / t, ss / t + np.log(2 * Nc - 2) + 0 * sp, so / t + np.log(2 * N - 2 * Nc) + 0 * sp])
    lse = xp.logsumexp(terms, 0) if xp is not np else np.logaddexp.reduce(terms, 0)
    return -sp / t + lse


def v3_ratio(weights, g: Geometry):
    """Rule v3's statistic in the block model: the share of a token's attention outside its own views
    that goes to other samples of its class, over that share under uniform attention (per head)."""
    s, p, q, o = weights
    cnt = counts(g)
    share = cnt["same"] * q / (cnt["same"] * q + cnt["out"] * o)
    return share / (cnt["same"] / (cnt["same"] + cnt["out"]))


def initial_params(g: Geometry, seed: int) -> np.ndarray:
    """(depth, heads, 6) scalars at PyTorch's default Linear initialisation (entries of variance
    1/(3D)): a span's trace average of W_O^h W_V^h has standard deviation sqrt(d_h/(9 D^2 k)) and of
    W_Q^T W_K / sqrt(d_h) 1/(3 D sqrt(k)), k the span's dimension (taken as C - 1 for every span)."""
    rng = np.random.default_rng(seed)
    D, dh, k = g.dim, g.dim // g.heads, g.classes - 1
    out = rng.standard_normal((g.depth, g.heads, 6))
    out[..., :3] *= 1.0 / (3 * D * np.sqrt(k))
    out[..., 3:] *= np.sqrt(dh / (9.0 * D * D * k))
    return out


def initial_tokens(g: Geometry):
    """The input coefficients (a, b, u, w) after the head's input Linear at its initialisation, which
    scales norms by about 1/sqrt(3) (entries of variance 1/(3 d_in)) and keeps angles on average."""
    return np.array([1.0, g.spread, g.view, 0.0]) / np.sqrt(3.0)


def forward(params, g: Geometry, xp=np):
    """Per-seed losses (S,) and per-layer block weights (each (S, heads)) of the reduced head with
    params (S, depth, heads, 6): S independent copies (seeds) in one pass."""
    S = params.shape[0]
    z = tuple(np.full(S, c) for c in initial_tokens(g))
    if xp is not np:
        z = tuple(xp.as_tensor(c, dtype=params.dtype) for c in z)
    weights = []
    for k in range(params.shape[1]):
        z, wts = layer(z, params[:, k, :, :3], params[:, k, :, 3:], g, xp)
        weights.append(wts)
    return ntxent(z, g, xp), weights


@dataclass
class Flow:
    """The reduced model's trajectories, one per seed: params at the recorded steps and the final
    rule v3 statistic per layer and head."""

    steps: np.ndarray  # (K,)
    params: np.ndarray  # (K, S, depth, heads, 6)
    loss: np.ndarray  # (K, S)
    ratio: np.ndarray  # (S, depth, heads)


def _lr(step, g: Geometry):
    if step < g.warmup_steps:
        return g.lr * (step + 1) / g.warmup_steps
    t = (step - g.warmup_steps) / max(g.steps - g.warmup_steps, 1)
    return g.lr * 0.5 * (1.0 + np.cos(np.pi * t))


def integrate(g: Geometry, seeds=(0,), record_every: int = 10) -> Flow:
    """S13's gradient flow restricted to the spans (by S13 the gradient of the reduced loss in the
    scalars is the projection of the full gradient on B and V onto the spans), run with AdamW on the
    scalars (the config's lr, weight decay, warm-up and cosine schedule, steps), one copy per seed
    (its initialisation): the reduced model trained, not the network. AdamW acts per scalar, so the
    copies do not interact."""
    g.check()
    init = np.stack([initial_params(g, s) for s in seeds])
    p = torch.tensor(init, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.AdamW([p], lr=g.lr, weight_decay=g.weight_decay)
    steps, params, losses = [], [], []
    for step in range(g.steps + 1):
        loss, _ = forward(p, g, torch)
        if step % record_every == 0 or step == g.steps:
            steps.append(step)
            params.append(p.detach().numpy().copy())
            losses.append(loss.detach().numpy().copy())
        if step == g.steps:
            break
        for group in opt.param_groups:
            group["lr"] = _lr(step, g)
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
    _, wts = forward(np.array(params[-1]), g)
    ratio = np.stack([v3_ratio(w, g) for w in wts], 1)
    return Flow(np.array(steps), np.array(params), np.array(losses), ratio)
