"""Per-layer predictions of a trained transformer block from its weights and its input tokens (S8-S12).

``predict_layer(tokens, labels, inst, visible, params)`` takes one block's weights (``BlockParams``,
numpy) and the layer's input tokens and returns, per head, the quantities the statements need and the
predicted attention masses, and per layer the predicted r_(l+1)/r_l, each with the statement it comes
from (``SOURCES``). Masses use the definitions of ``experiments.metrics`` (same-class mass excludes the
token itself and its positive view(s)); the positive view is its own block. Levels of the mass
prediction (THEORY_LEARNED.md, "Predictions"):

- ``sym``: S8(b), logits beta_mu <v_c, v_c'> + beta_e <e_i, e_j> with beta_mu, beta_e the Rayleigh
  quotients of B = W_Q^T W_K / sqrt(d_h) on the class means and deviations, averaged per block;
- ``block``: S8(a), each row's exact block-average logits (symmetry-breaking terms included);
- ``disp``: S8(d), ``block`` plus half the within-block logit variance (the dispersion correction);
- ``exact``: the block's own softmax (no theory; the reference the levels are measured against).

r_(l+1)/r_l is predicted as ``closed`` (S9/S11 eigenvalue factors with S10's alpha, the common part of
the tokens exactly, S12's first-order FFN factor; LayerNorm taken as the ideal projection) and as
``chain`` (the ``disp`` block attention pushed through the block's own value/output maps, LayerNorm and
FFN). numpy only; ``experiments.block_params`` reads a torch block into ``BlockParams``.
"""

from __future__ import annotations

import numpy as np

from deepfusion.errors import DataError
from deepfusion.experiments.block_params import BlockParams
from deepfusion.experiments.metrics import PAIRS, pair_masks, relative_spread
from deepfusion.theory import ffn as ffn_theory
from deepfusion.theory import layernorm, learned

LEVELS = ("sym", "block", "disp", "exact")
CATEGORIES = ("self", "pos", "same", "out")
SOURCES = {
    "beta_mu": "S8",
    "beta_e": "S8",
    "tau": "S8(a): 0 on the symmetric configuration",
    "omega": "S8(c)",
    "mass_bound": "S8(c)",
    "same_class_mass.sym": "S8(b)",
    "same_class_mass.block": "S8(a)",
    "same_class_mass.disp": "S8(d) (approximation)",
    "same_class_mass.exact": "none: the block's softmax",
    "lambda_mu": "S9",
    "lambda_e": "S9",
    "lambda_u": "S9 (common part)",
    "kappa": "S2/S9",
    "delta": "S2/S9",
    "fusion": "S9",
    "denoising": "S9",
    "margin": "S11",
    "alpha": "S10(d) (1 for post-LN)",
    "ln": "S10(b)",
    "ffn_lipschitz": "S12",
    "ffn_gain": "S12",
    "ffn_bounds": "S12",
    "r_ratio.closed": "S9/S11 + S10(a) + S12 first order",
    "r_ratio.chain": "S8 attention + the block's maps",
    "r_stages": "S9/S11 (attention: S11 factors times the common part, S2(b)), S10 (LN), S12 (FFN)",
}


def _parts(X, labels):
    """Common part u (D,), centred class means per token Vt (M, D), deviations E (M, D)."""
    u = X.mean(0)
    means = {c: X[labels == c].mean(0) for c in np.unique(labels)}
    Xbar = np.stack([means[c] for c in labels])
    return u, Xbar - u, X - Xbar


def _category_means(G, masks):
    """Mean of the (M, M) matrix G over each category's visible pairs (4,)."""
    return np.array([G[m].mean() if m.any() else 0.0 for m in masks])


def _softmax_rows(S, visible):
    S = np.where(visible, S, -np.inf)
    E = np.exp(S - S.max(1, keepdims=True))
    return E / E.sum(1, keepdims=True)


def _block_weights(logits, counts):
    """Per-row entry weights (4, M) of the categories from per-row logits (4, M) and counts (4, M)."""
    L = np.where(counts > 0, logits, -np.inf)
    L = L - L.max(0, keepdims=True)
    w = np.exp(L)
    return w / (counts * w).sum(0, keepdims=True)


def _row_stats(S, masks):
    """Per-row mean and variance (each (4, M)) of S over each category."""
    counts = masks.sum(-1)
    mean = np.where(counts > 0, (S * masks).sum(-1) / np.maximum(counts, 1), 0.0)
    var = np.where(counts > 1, ((S - mean[:, :, None]) ** 2 * masks).sum(-1) / np.maximum(counts, 1), 0.0)
    return mean, var, counts


def _masses(weights, counts):
    """Row-averaged masses: self, positive, same-class (the measured quantity), out."""
    return {k: float((weights[i] * counts[i]).mean()) for i, k in enumerate(CATEGORIES)}


def _block_matrix(weights, masks):
    """The (M, M) attention of a block model: each visible entry gets its row's category weight."""
    return np.einsum("km,kmj->mj", weights, masks.astype(float))


def _attention_input(X, p):
    return X if p.norm == "post" else layernorm.layer_norm(X, p.ln1_weight, p.ln1_bias, p.ln_eps)


def _head_prediction(Xa, parts, masks, visible, p, h, C):
    W_Q, b_Q, W_K, b_K, W_V, b_V, W_Oh = p.head(h)
    dh = W_Q.shape[0]
    S = (Xa @ W_Q.T + b_Q) @ (Xa @ W_K.T + b_K).T / np.sqrt(dh)
    u, Vt, E = parts
    B = W_Q.T @ W_K / np.sqrt(dh)
    beta_mu = float(np.einsum("md,de,me->", Vt, B, Vt) / max((Vt**2).sum(), 1e-300))
    beta_e = float(np.einsum("md,de,me->", E, B, E) / max((E**2).sum(), 1e-300))
    mean, var, counts = _row_stats(S, masks)
    qv, qe = _category_means(Vt @ Vt.T, masks), _category_means(E @ E.T, masks)
    sym_logits = np.repeat((beta_mu * qv + beta_e * qe)[:, None], Xa.shape[0], 1)
    weights = {
        "sym": _block_weights(sym_logits, counts),
        "block": _block_weights(mean, counts),
        "disp": _block_weights(mean + var / 2.0, counts),
    }
    A = _softmax_rows(S, visible)
    masses = {lv: _masses(w, counts) for lv, w in weights.items()}
    masses["exact"] = {k: float((A * masks[i]).sum(1).mean()) for i, k in enumerate(CATEGORIES)}
    eta = np.where(visible, S - np.einsum("km,kmj->mj", mean, masks.astype(float)), 0.0)
    omega = learned.logit_oscillation(eta, visible)
    Vh = W_Oh @ W_V  # (D, D)
    lam = lambda Y: float(np.einsum("md,ed,me->", Y, Vh, Y) / max((Y**2).sum(), 1e-300))  # noqa: E731
    w = weights["sym"]  # the closed form runs on S8(b)'s weights; the chain on the dispersion-corrected ones
    n_in = counts[0] + counts[1] + counts[2]  # visible tokens of the row's class, self included
    a_same_all = (w[1] * counts[1] + w[2] * counts[2]) / np.maximum(counts[1] + counts[2], 1)
    m_vis = w[0] + w[1] * counts[1] + w[2] * counts[2]
    tau = float(np.mean(mean[0] - mean[2]) - beta_e * (qe[0] - qe[2]))
    return {
        "beta_mu": beta_mu,
        "beta_e": beta_e,
        "tau": tau,
        "omega": float(omega.mean()),
        "mass_bound": float(np.mean(np.tanh(omega / 4.0))),
        "lambda_mu": lam(Vt),
        "lambda_e": lam(E),
        "lambda_u": float(u @ Vh @ u / max(u @ u, 1e-300)),
        "a_self": float(w[0].mean()),
        "a_same": float(a_same_all.mean()),
        "a_out": float(w[3].mean()),
        "m": float(m_vis.mean()),
        "kappa": float(np.mean((C * m_vis - 1.0) / (C - 1.0))),
        "delta": float(np.mean(w[0] - a_same_all)),
        "n_class": float(n_in.mean()),
        "masses": masses,
        "same_class_mass": {lv: masses[lv]["same"] for lv in LEVELS},
        "_A": {"disp": _block_matrix(weights["disp"], masks), "exact": A},
        "_V": Vh,
    }


def _ffn(Z, p):
    return ffn_theory.ffn(Z, p.fc1_weight, p.fc1_bias, p.fc2_weight, p.fc2_bias)


def _ln(Z, p, k):
    g, b = (p.ln1_weight, p.ln1_bias) if k == 1 else (p.ln2_weight, p.ln2_bias)
    return layernorm.layer_norm(Z, g, b, p.ln_eps)


def _run_block(X, Xa, attn, values, c, p):
    """The block's forward pass with given per-head attention: (output, stage tokens)."""
    Y = X + sum(A @ Xa @ V.T for A, V in zip(attn, values)) + c
    stages = {"attention": Y}
    if p.norm == "post":
        Z1 = stages["ln1"] = _ln(Y, p, 1)
        F = stages["ffn"] = Z1 + _ffn(Z1, p)
        stages["ln2"] = _ln(F, p, 2)
    else:
        stages["ffn"] = Y + _ffn(_ln(Y, p, 2), p)
    return stages


def _ln_jacobian(x, p):
    """S10: the Jacobian (D, D) of LayerNorm 2 at the token x: diag(g) (P/s - (Px)(Px)^T/(D s^3)),
    P = I - 11^T/D, s = sqrt(|Px|^2/D + eps)."""
    D = x.shape[0]
    px = x - x.mean()
    s = np.sqrt(px @ px / D + p.ln_eps)
    P = np.eye(D) - 1.0 / D
    return p.ln2_weight[:, None] * (P / s - np.outer(px, px) / (D * s**3))


def _tangent(E, m):
    """The rows of E without their component along m (what survives the projection to the sphere)."""
    u = m / np.linalg.norm(m)
    return E - np.outer(E @ u, u)


def _ffn_first_order(Z, labels, p):
    """S12 to first order: r after the FFN stage over r before, the class deviations e_i mapped by
    (I + J(m_c)) and measured, like ``relative_spread``, on the sphere (their part tangent to the class
    mean, over the mean's norm: |P_G (I + J) e_i|/|G(m_c)| against |P_m e_i|/|m_c|); and the Lipschitz
    constant and mean gain g = mean_c |G(m_c)|/|m_c| for the bounds.

    The stage is G(z) = z + F(z) in post-LN (z already normalised) and G(z) = z + F(LN2(z)) in pre-LN,
    where the residual stream keeps its own norm: J = J_F(LN2(m_c)) J_LN2(m_c) there, so the FFN's
    pull is scaled by LN's factor (about gamma sqrt(D)/|z|), and L includes LN's local gain
    max|g|/s at the class means (S12 with LN in front; a local constant, not a global one)."""
    num = den = 0.0
    gains, ln_gains = [], [1.0] if p.norm == "post" else []
    for c in np.unique(labels):
        Zc = Z[labels == c]
        mc = Zc.mean(0)
        if p.norm == "post":
            y, J_ln = mc, None
        else:
            y, J_ln = _ln(mc[None], p, 2)[0], _ln_jacobian(mc, p)
            ln_gains.append(float(np.linalg.norm(J_ln, 2)))
        pre = p.fc1_weight @ y + p.fc1_bias
        J = p.fc2_weight @ (ffn_theory.gelu_derivative(pre)[:, None] * p.fc1_weight)  # (D, D)
        if J_ln is not None:
            J = J @ J_ln
        e = Zc - mc
        out = mc + _ffn(y[None], p)[0]
        num += (_tangent(e + e @ J.T, out) ** 2).sum() / (out @ out)
        den += (_tangent(e, mc) ** 2).sum() / (mc @ mc)
        gains.append(np.linalg.norm(out) / np.linalg.norm(mc))
    g = float(np.mean(gains))
    return float(np.sqrt(num / den)), ffn_theory.ffn_lipschitz(p.fc1_weight, p.fc2_weight) * max(ln_gains), g


def predict_layer(tokens, labels, inst, visible, params: BlockParams) -> dict:
    """Predict one block's per-head attention masses and its r_(l+1)/r_l from its input tokens.

    tokens (M, D): the block's input; labels, inst (M,); visible (M, M) bool (the head's scope).
    Returns ``heads`` (one dict per head: beta_mu, beta_e, tau, omega, mass_bound, lambda_mu, lambda_e,
    lambda_u, the S8(b) block weights a_self, a_same (positives and other same-class tokens together),
    a_out, m, kappa, delta, masses {level: {self, pos, same, out}}, same_class_mass {level}), and per
    layer: same_class_mass {level} (mean over heads), alpha, ln
    (S10(b) terms of LN1 on the block's input), fusion, denoising, margin (S9/S11), ffn_lipschitz,
    ffn_gain, r_in, r_ratio {closed, chain, exact}, r_stages {closed: {...}, chain: {...}},
    ffn_bounds (S12 interval for the FFN stage), and ``sources`` (quantity -> statement)."""
    X, labels, inst, visible = _batch(tokens, labels, inst, visible, params)
    D = X.shape[1]
    Xa = _attention_input(X, params)
    parts = _parts(Xa, labels)
    pairs = pair_masks(labels, inst, visible)
    masks = np.stack([pairs[k] for k in PAIRS])  # (4, M, M) in the order of CATEGORIES
    C = len(np.unique(labels))
    heads = [_head_prediction(Xa, parts, masks, visible, params, h, C) for h in range(params.heads)]
    values = [hd.pop("_V") for hd in heads]
    per_head = [hd.pop("_A") for hd in heads]
    attn = {lv: [a[lv] for a in per_head] for lv in ("disp", "exact")}
    ln = layernorm.ln_error_terms(X, params.ln1_weight, params.ln1_bias, params.ln_eps)
    nu = float(np.sqrt((X**2).sum(1).mean()))
    alpha = 1.0 if params.norm == "post" else layernorm.pre_ln_alpha(nu, ln["gamma"], D)
    c = params.W_O @ params.b_qkv[2 * D :] + params.b_O  # the value and output biases reach every token
    r_in = relative_spread(X, labels)
    chain = {lv: _run_block(X, Xa, attn[lv], values, c, params) for lv in ("disp", "exact")}
    r_chain = {lv: {k: relative_spread(Z, labels) for k, Z in st.items()} for lv, st in chain.items()}
    order = ["attention", "ln1", "ffn", "ln2"] if params.norm == "post" else ["attention", "ffn"]
    closed = _closed_form(X, labels, heads, values, parts[0], c, alpha, params)
    ffn_in = chain["disp"]["ln1"] if params.norm == "post" else chain["disp"]["attention"]
    L, g, bounds = _ffn_stage(ffn_in, labels, params)
    a_cnt = [np.array([hd[key] for hd in heads]) for key in ("a_self", "a_same", "a_out")]
    lm, le = (np.array([hd[key] for hd in heads]) for key in ("lambda_mu", "lambda_e"))
    fuse, denoise = learned.fusion_and_denoising(*a_cnt, heads[0]["n_class"], lm, le)
    return {
        "heads": heads,
        "norm": params.norm,
        "alpha": float(alpha),
        "nu": nu,
        "same_class_mass": {lv: float(np.mean([hd["same_class_mass"][lv] for hd in heads])) for lv in LEVELS},
        "ln": _ln_summary(ln),
        "fusion": float(np.sum(fuse)),
        "denoising": float(np.sum(denoise)),
        "margin": float(np.sum(fuse + denoise)),
        "ffn_lipschitz": L,
        "ffn_gain": g,
        "ffn_bounds": bounds,
        "r_in": r_in,
        **_spread_ratios(r_in, closed, r_chain, order),
        "sources": dict(SOURCES),
    }


def _ln_summary(ln: dict) -> dict:
    """S10(b)'s terms of LN1 on the block's input, the per-token ones averaged."""
    return {
        "gamma": ln["gamma"],
        "gain": ln["gain"],
        "bias": ln["bias"],
        "ones": float(np.mean(ln["ones"])),
        "eps": float(np.mean(ln["eps"])),
        "bound": float(np.mean(ln["bound"])),
    }


def _spread_ratios(r_in, closed: dict, r_chain: dict, order: list) -> dict:
    """r_(l+1)/r_l over the whole block (``r_ratio``) and per stage (``r_stages``): the closed form,
    the ``disp`` attention pushed through the block (chain) and the block's own softmax (exact)."""
    return {
        "r_ratio": {
            "closed": float(closed["attention"] * closed["ffn"]),
            "chain": r_chain["disp"][order[-1]] / r_in,
            "exact": r_chain["exact"][order[-1]] / r_in,
        },
        "r_stages": {
            "closed": closed,
            "chain": _stage_ratios(r_in, r_chain["disp"], order),
            "exact": _stage_ratios(r_in, r_chain["exact"], order),
        },
    }


def _batch(tokens, labels, inst, visible, params: BlockParams):
    """The inputs as arrays (visible defaults to all pairs); DataError unless they describe one batch."""
    X = np.asarray(tokens, dtype=np.float64)
    labels, inst = np.asarray(labels), np.asarray(inst)
    M, D = X.shape
    visible = np.ones((M, M), bool) if visible is None else np.asarray(visible, bool)
    if D != params.dim or labels.shape != (M,) or inst.shape != (M,) or visible.shape != (M, M):
        raise DataError(
            f"tokens {X.shape}, labels {labels.shape}, inst {inst.shape}, visible {visible.shape} "
            f"do not describe one batch for a block of width {params.dim}"
        )
    return X, labels, inst, visible


def _closed_form(X, labels, heads, values, u_attn, c, alpha, params: BlockParams) -> dict:
    """The closed-form stage factors of r: S11 factors on the block's own deviations and class means,
    the common part exactly (rows of A sum to one), LayerNorm as the ideal projection, and S12 to first
    order at the layer's own input (the FFN input is not known without running the block)."""
    kappa, delta = np.array([hd["kappa"] for hd in heads]), np.array([hd["delta"] for hd in heads])
    lm, le = np.array([hd["lambda_mu"] for hd in heads]), np.array([hd["lambda_e"] for hd in heads])
    mean_f = 1.0 + alpha * np.sum(lm * kappa)
    dev_f = 1.0 + alpha * np.sum(le * delta)
    u, Vt, _ = _parts(X, labels)
    u_next = u + sum(V @ u_attn for V in values) + c
    v2 = (Vt**2).sum(1).mean()
    phi_s11 = abs(dev_f) / abs(mean_f)  # S11: deviations against centred class means
    phi_common = abs(mean_f) * np.sqrt(v2 + u @ u) / np.sqrt(mean_f**2 * v2 + u_next @ u_next)
    return {
        "attention": float(phi_s11 * phi_common),
        "attention_s11": float(phi_s11),
        "attention_common": float(phi_common),
        "ln": 1.0,
        "ffn": float(_ffn_first_order(X, labels, params)[0]),
    }


def _ffn_stage(ffn_in, labels, params: BlockParams):
    """S12 at the FFN's input: its Lipschitz constant L, mean gain g, and the interval for r's ratio."""
    _, L, g = _ffn_first_order(ffn_in, labels, params)
    r = relative_spread(ffn_in, labels)
    lo, hi = ffn_theory.spread_bounds(r, L, g)
    return L, g, [float(lo / r), float(hi / r)]


def _stage_ratios(r_in, r, order):
    prev, out = r_in, {}
    for k in order:
        out[k] = r[k] / prev
        prev = r[k]
    return out
