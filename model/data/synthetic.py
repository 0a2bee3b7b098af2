"""Synthetic datasets generated from the seed: no files, learnable by a small model in seconds.

``synthetic``: the Gaussian mixture of the theory (section 4 of the theory notes): unit class means
``mu_c`` drawn at random on the sphere, samples ``x = mu_c + e`` with isotropic Gaussian noise whose
expected norm is ``noise``, so ``noise`` plays the role of the theory's noise radius eps.

``synthetic_images``: small colour images, one blocky 4x4 pattern and one colour per class on a dark
background, plus pixel noise. Classes differ in shape as well as colour, so they stay separable
under colour jitter and grayscale augmentation.
"""

from __future__ import annotations

import numpy as np

from deepfusion.model.data.base import ArrayDataset, choose_split, float_option, int_option


def class_means(num_classes: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """(C, d) unit vectors drawn uniformly on the sphere."""
    mu = rng.standard_normal((num_classes, dim))
    return mu / np.linalg.norm(mu, axis=1, keepdims=True)


def load_vectors(
    root=None, split="train", seed=0, num_classes=10, dim=32, samples_per_class=200, noise=0.5, test_fraction=0.25
) -> ArrayDataset:
    C = int_option("num_classes", num_classes, 2)
    d = int_option("dim", dim, 1)
    n = int_option("samples_per_class", samples_per_class, 2)
    noise = float_option("noise", noise, 0.0, 1e6)
    rng = np.random.default_rng([int(seed), 1])
    mu = class_means(C, d, rng)
    y = np.repeat(np.arange(C), n)
    x = mu[y] + noise * rng.standard_normal((C * n, d)) / np.sqrt(d)  # E||e||^2 = noise^2
    x, y = choose_split(x.astype(np.float32), y, split, test_fraction, seed)
    return ArrayDataset(x, y.astype(np.int64), C, "vector", (d,), (), "synthetic")


def class_patterns(num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """(C, 4, 4) distinct binary patterns, none the mirror image of another (flips keep classes apart)."""
    seen, out = set(), []
    while len(out) < num_classes:
        p = (rng.random((4, 4)) < 0.5).astype(np.uint8)
        keys = {p.tobytes(), p[:, ::-1].tobytes()}
        if p.sum() in (0, 16) or keys & seen:
            continue
        seen |= keys
        out.append(p)
    return np.stack(out)


def load_images(
    root=None, split="train", seed=0, num_classes=10, size=16, samples_per_class=200, noise=0.1, test_fraction=0.25
) -> ArrayDataset:
    C = int_option("num_classes", num_classes, 2)
    size = int_option("size", size, 4)
    n = int_option("samples_per_class", samples_per_class, 2)
    noise = float_option("noise", noise, 0.0, 10.0)
    rng = np.random.default_rng([int(seed), 2])
    patterns = class_patterns(C, rng).astype(np.float32)  # (C, 4, 4)
    colours = rng.uniform(0.35, 1.0, size=(C, 3)).astype(np.float32)  # (C, 3)
    # Nearest upsampling of the 4x4 pattern to size x size (size need not be a multiple of 4).
    cells = (np.arange(size) * 4) // size
    big = patterns[:, cells][:, :, cells]  # (C, size, size)
    clean = 0.15 + 0.75 * colours[:, :, None, None] * big[:, None]  # (C, 3, size, size) in [0.15, 0.9]
    y = np.repeat(np.arange(C), n)
    x = clean[y] + noise * rng.standard_normal((C * n, 3, size, size)).astype(np.float32)
    x = np.clip(np.round(x * 255), 0, 255).astype(np.uint8)
    x, y = choose_split(x, y, split, test_fraction, seed)
    return ArrayDataset(x, y.astype(np.int64), C, "image", (3, size, size), (), "synthetic_images")
