"""The feed-forward sublayer as a Lipschitz residual map (S12).

G(z) = z + F(z), F(z) = W2 gelu(W1 z + b1) + b2, is applied token by token. With L a Lipschitz
constant of F (L <= |W2| |W1| max|gelu'|, and max|gelu'| = Phi(sqrt 2) + sqrt(2) phi(sqrt 2) ~ 1.1289),
S12 bounds what G does to one class's spread s_c (RMS deviation from the class mean) and mean m_c:

    (1 - L) s_c <= s_c' <= (1 + L) s_c,      | m_c' - G(m_c) | <= L s_c,

so with g_c = |G(m_c)| / |m_c| the relative spread r_c = s_c/|m_c| obeys

    r_c (1 - L)/(g_c + L r_c) <= r_c' <= r_c (1 + L)/(g_c - L r_c)   (upper bound when g_c > L r_c).

Fusion survives the FFN (the spread after attention and FFN stays below the spread before the layer)
whenever phi (1 + L)/(g_c - L phi r_c) < 1, phi the attention's factor r_after/r_before.
"""

from __future__ import annotations

import numpy as np
from scipy import special

# max over x of |d/dx (x Phi(x))| = Phi(sqrt 2) + sqrt 2 phi(sqrt 2) (at x = sqrt 2; the minimum of
# gelu' is -(Phi(sqrt 2) + sqrt 2 phi(sqrt 2) - 1) at -sqrt 2, smaller in absolute value)
GELU_LIPSCHITZ = float(special.ndtr(np.sqrt(2.0)) + np.sqrt(2.0) * np.exp(-1.0) / np.sqrt(2.0 * np.pi))


def gelu(x):
    """S12: exact GELU x Phi(x) (torch's default, not the tanh approximation)."""
    x = np.asarray(x, dtype=float)
    return x * special.ndtr(x)


def gelu_derivative(x):
    """S12: gelu'(x) = Phi(x) + x phi(x)."""
    x = np.asarray(x, dtype=float)
    return special.ndtr(x) + x * np.exp(-0.5 * x**2) / np.sqrt(2.0 * np.pi)


def ffn(z, W1, b1, W2, b2):
    """S12: F(z) = W2 gelu(W1 z + b1) + b2 for tokens z (..., d); W1 (f, d), W2 (d, f) as torch stores them."""
    return gelu(np.asarray(z, float) @ np.asarray(W1, float).T + b1) @ np.asarray(W2, float).T + b2


def ffn_lipschitz(W1, W2):
    """S12: L = |W2|_2 |W1|_2 max|gelu'|, a Lipschitz constant of F in the Euclidean norm."""
    return float(np.linalg.norm(W2, 2) * np.linalg.norm(W1, 2) * GELU_LIPSCHITZ)


def spread_bounds(r, L, g):
    """S12: (lower, upper) bounds on the relative spread r' of one class after z <- z + F(z), given its
    relative spread r before, the Lipschitz constant L and the mean gain g = |G(m)|/|m|. The upper
    bound is +inf when g <= L r (F may then move the class mean onto the origin)."""
    r, L, g = (np.asarray(v, float) for v in (r, L, g))
    lo = r * np.clip(1.0 - L, 0.0, None) / (g + L * r)
    den = g - L * r
    hi = np.where(den > 0, r * (1.0 + L) / np.where(den > 0, den, 1.0), np.inf)
    return lo, hi


def fusion_survives(phi, r, L, g):
    """S12: True when the attention factor phi = r_after_attention / r, followed by the FFN, is sure to
    leave the spread below r: phi (1 + L)/(g - L phi r) < 1 (with g > L phi r)."""
    phi, r, L, g = (np.asarray(v, float) for v in (phi, r, L, g))
    den = g - L * phi * r
    return (den > 0) & (phi * (1.0 + L) < den)


def class_spread_and_mean(Z, labels):
    """S12: per class, the RMS deviation s_c from the class mean and the class mean m_c (C, d)."""
    Z, labels = np.asarray(Z, float), np.asarray(labels)
    classes = np.unique(labels)
    means = np.stack([Z[labels == c].mean(0) for c in classes])
    s = np.array([np.sqrt(((Z[labels == c] - means[k]) ** 2).sum(-1).mean()) for k, c in enumerate(classes)])
    return s, means
