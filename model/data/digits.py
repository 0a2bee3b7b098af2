"""scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes; no download).

Images by default (uint8 ``1x8x8``, the 0..16 grey levels scaled to 0..255) for the ``cnn3``
backbone of the digits preset; ``as_vectors=True`` gives 64-d float32 vectors in [0, 1] for the
``mlp`` backbone. There is no official test split: a seeded, class-stratified ``test_fraction`` is
held out.
"""

from __future__ import annotations

import numpy as np

from deepfusion.errors import DataError
from deepfusion.model.data.base import ArrayDataset, bool_option, choose_split


def load(root=None, split="train", seed=0, as_vectors=False, test_fraction=0.25) -> ArrayDataset:
    as_vectors = bool_option("as_vectors", as_vectors)
    try:  # here, not at the top: sklearn.datasets takes ~2.4 s to import, and model.data imports every loader
        from sklearn.datasets import load_digits
    except ImportError as err:  # scikit-learn is a dependency, but say what to do if it is missing
        raise DataError(
            f"the digits dataset needs scikit-learn ({err}); install it with pip install scikit-learn"
        ) from None
    bunch = load_digits()
    grey = bunch.images  # (1797, 8, 8) float64 in 0..16
    y = bunch.target.astype(np.int64)
    if as_vectors:
        x = (grey.reshape(len(grey), 64) / 16.0).astype(np.float32)
        shape = (64,)
    else:
        x = np.round(grey * (255.0 / 16.0)).astype(np.uint8)[:, None]  # (N, 1, 8, 8)
        shape = (1, 8, 8)
    x, y = choose_split(x, y, split, test_fraction, seed)
    return ArrayDataset(
        x, y, 10, "vector" if as_vectors else "image", shape, tuple(str(c) for c in range(10)), "digits"
    )
