"""LayerNorm as the layer's sphere projection, and the post-LN and pre-LN layer maps (S10).

LN(x) = g * (x - mean(x) 1) / sqrt(var(x) + eps) + b over the d features of one token. S10(a): for x
orthogonal to the all-ones vector 1_d, constant gain g = gamma 1, b = 0 and eps = 0,
LN(x) = gamma sqrt(d) x / |x|: sqrt(d) gamma times the sphere projection that S2 uses. S10(b) bounds
|LN(x) - gamma sqrt(d) x/|x|| otherwise. S10(c), (d): the post-LN and pre-LN layer maps in the
setting of S9/S11.
"""

from __future__ import annotations

import numpy as np

from deepfusion.errors import ConfigError
from deepfusion.theory.learned import multihead_coefficients


def layer_norm(x, g, b, eps=1e-5):
    """S10: LayerNorm over the last axis (biased variance, as torch), x (..., d), g and b (d,)."""
    x = np.asarray(x, dtype=float)
    c = x - x.mean(-1, keepdims=True)
    return np.asarray(g, float) * c / np.sqrt((c**2).mean(-1, keepdims=True) + eps) + np.asarray(b, float)


def sphere_ln(x, gamma):
    """S10(a): the ideal LayerNorm gamma sqrt(d) x / |x| (x (..., d))."""
    x = np.asarray(x, dtype=float)
    return float(gamma) * np.sqrt(x.shape[-1]) * x / np.linalg.norm(x, axis=-1, keepdims=True)


def ln_error_terms(x, g, b, eps=1e-5):
    """S10(b): the terms of the bound on |LN(x) - gamma sqrt(d) x/|x|| / (gamma sqrt(d)), per token.

    gamma = mean(g). Returns dict gamma, gain (max |g - gamma|/gamma), ones (sqrt(2) sin(theta),
    theta the angle between x and its centred part), eps (d eps / (2 |P x|^2)), bias
    (|b| / (gamma sqrt(d))) and bound (their sum). Needs gamma > 0 and the token's angle to its centred
    part below pi/2 (true for any x not a multiple of 1_d)."""
    x = np.asarray(x, dtype=float)
    g, b = np.asarray(g, float), np.asarray(b, float)
    d = x.shape[-1]
    gamma = float(g.mean())
    if gamma <= 0:
        raise ConfigError(f"S10 needs a positive mean gain, got {gamma}")
    px = x - x.mean(-1, keepdims=True)
    npx2 = (px**2).sum(-1)
    sin = np.sqrt(np.clip(1.0 - npx2 / (x**2).sum(-1), 0.0, 1.0))
    terms = {
        "gamma": gamma,
        "gain": float(np.abs(g - gamma).max() / gamma),
        "ones": np.sqrt(2.0) * sin,
        "eps": d * eps / (2.0 * npx2),
        "bias": float(np.linalg.norm(b) / (gamma * np.sqrt(d))),
    }
    terms["bound"] = terms["gain"] + terms["ones"] + terms["eps"] + terms["bias"]
    return terms


def ln_error(x, g, b, eps=1e-5):
    """S10(b): the actual relative error |LN(x) - gamma sqrt(d) x/|x|| / (gamma sqrt(d)) per token."""
    x = np.asarray(x, dtype=float)
    gamma = float(np.asarray(g, float).mean())
    diff = layer_norm(x, g, b, eps) - sphere_ln(x, gamma)
    return np.linalg.norm(diff, axis=-1) / (gamma * np.sqrt(x.shape[-1]))


def post_ln_map(r, mean_f, dev_f, gamma, d):
    """S10(c): post-LN sublayer Z <- LN(Z + head outputs) under S9/S11 with S10(a): returns (r', nu')
    with r' = r |dev_f| / |mean_f| and every token of norm nu' = gamma sqrt(d) afterwards."""
    if np.any(np.asarray(mean_f) == 0):
        raise ConfigError("S10 post-LN map needs a non-zero mean factor")
    return np.asarray(r, float) * np.abs(dev_f) / np.abs(mean_f), float(gamma) * np.sqrt(d)


def pre_ln_alpha(nu, gamma, d):
    """S10(d): the effective residual weight of a pre-LN head, alpha = gamma sqrt(d) / nu: the head reads
    LN(z) = (gamma sqrt(d)/|z|) z and its output is added to z itself, of norm nu."""
    return float(gamma) * np.sqrt(d) / np.asarray(nu, float)


def pre_ln_map(r, nu, a_self, a_same, m, C, gamma, d, lam_mu, lam_e):
    """S10(d): pre-LN sublayer z <- z + sum_h A_h V_h LN(z) on the symmetric configuration at token norm
    nu (heads on the last axis). Returns (r', nu'): S11's map with alpha = gamma sqrt(d)/nu, and
    nu'^2 = nu^2 (mean_f^2 + dev_f^2 r^2)/(1 + r^2), since the class mean carries 1/(1 + r^2) of the
    squared norm and the deviation r^2/(1 + r^2)."""
    alpha = pre_ln_alpha(nu, gamma, d)
    mean_f, dev_f = multihead_coefficients(a_self, a_same, m, C, alpha, lam_mu, lam_e)
    r = np.asarray(r, float)
    nu_next = np.asarray(nu, float) * np.sqrt((mean_f**2 + dev_f**2 * r**2) / (1.0 + r**2))
    return r * np.abs(dev_f) / np.abs(mean_f), nu_next
