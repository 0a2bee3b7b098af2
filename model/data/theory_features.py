"""The theory's own data: features with a chosen class geometry, so S1's eps_max and S6's n_min are known.

``data.name=theory``: C classes of vectors in R^d. The unit class means have pairwise inner product
``rho`` exactly (``rho: etf`` for the simplex ETF, rho = -1/(C-1)); a sample is ``mu_c + e`` with
isotropic Gaussian ``e`` of expected squared norm ``sigma^2``, so ``sigma`` is the theory's noise
radius (its norm concentrates at sigma for large d). Then

- S1: ReLU attention is block-diagonal for every noise of norm <= eps_max(rho), so the phase
  coordinate is ``sigma / eps_max``;
- S6: a batch needs about n_min = (sigma / eps_max)^2 samples per class for its class means to
  fall inside that radius.

The two augmented views of a sample add independent view noise in the same feature space
(``data.augment=vector``); the head sees these vectors through a frozen ``identity`` backbone.
"""

from __future__ import annotations

import numpy as np

from deepfusion.errors import ConfigError
from deepfusion.model.data.base import ArrayDataset, choose_split, float_option, int_option


def etf_rho(num_classes: int) -> float:
    return -1.0 / (num_classes - 1)


def check_geometry(num_classes, dim, rho, sigma) -> tuple[int, int, float, float]:
    """Validated (C, d, rho, sigma); ``rho`` may be ``"etf"``."""
    C = int_option("num_classes", num_classes, 2)
    d = int_option("dim", dim, 2)
    if isinstance(rho, str):
        if rho.lower() != "etf":
            raise ConfigError(
                f"data.options.rho={rho!r} is not a number; give an inner product in [-1/(C-1), 1) or 'etf'"
            )
        rho = etf_rho(C)
    rho = float(rho)
    if not (etf_rho(C) - 1e-12 <= rho < 1.0):
        raise ConfigError(
            f"data.options.rho={rho} is outside [-1/(C-1), 1) = [{etf_rho(C):.4f}, 1) for C={C}: "
            "no unit vectors have that pairwise inner product"
        )
    if d < C:
        raise ConfigError(f"data.options.dim={d} is smaller than num_classes={C}; the class means need d >= C")
    sigma = float_option("sigma", sigma, 0.0, 1e6)
    return C, d, rho, sigma


def class_means(C: int, d: int, rho: float, rng: np.random.Generator) -> np.ndarray:
    """(C, d) unit vectors with pairwise inner product exactly ``rho``, in a random orientation."""
    gram = (1.0 - rho) * np.eye(C) + rho * np.ones((C, C))
    w, v = np.linalg.eigh(gram)
    factor = v * np.sqrt(np.clip(w, 0.0, None))  # (C, C), factor @ factor.T = gram
    q, _ = np.linalg.qr(rng.standard_normal((d, C)))  # d x C orthonormal columns
    return factor @ q.T


def load(
    root=None,
    split="train",
    seed=0,
    num_classes=4,
    dim=64,
    rho="etf",
    sigma=0.3,
    samples_per_class=400,
    test_fraction=0.25,
) -> ArrayDataset:
    C, d, rho, sigma = check_geometry(num_classes, dim, rho, sigma)
    n = int_option("samples_per_class", samples_per_class, 2)
    rng = np.random.default_rng([int(seed), 7])
    mu = class_means(C, d, rho, rng)
    y = np.repeat(np.arange(C), n)
    x = mu[y] + sigma * rng.standard_normal((C * n, d)) / np.sqrt(d)  # E||e||^2 = sigma^2
    x, y = choose_split(x.astype(np.float32), y, split, test_fraction, seed)
    return ArrayDataset(x, y.astype(np.int64), C, "vector", (d,), (), "theory")


def theory_numbers(C: int, rho: float, sigma: float) -> dict:
    """S1's eps_max and S6's n_min for this geometry, and the phase coordinate sigma / eps_max."""
    # here, not at the top: theory.bounds loads scipy.optimize and scipy.stats (~2 s), and model.data imports
    # every loader while only this function needs it
    from deepfusion.theory.bounds import eps_max

    e = float(eps_max(rho)) if rho <= 0 else 0.0  # S1 needs rho <= 0; above it no radius is safe
    ratio = sigma / e if e > 0 else float("inf")
    return {"eps_max": e, "sigma_over_eps_max": ratio, "n_min": ratio**2}
