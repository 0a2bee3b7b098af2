"""Datasets: ``load_dataset(name, root, split, seed, **options) -> ArrayDataset``.

One module per source format; this module only routes a name to its loader and checks the
options. Nothing here downloads: file datasets are read from ``root`` (see each module for the
files it expects and where it looks without a root).

Options every loader accepts: ``test_fraction`` (held-out share, used by datasets without an
official test split) and ``limit`` (keep a seeded, class-stratified subset of about that many
samples of the split, for quick runs).
"""

from __future__ import annotations

import inspect
import os

from deepfusion.errors import ConfigError
from deepfusion.model.data import cifar, digits, fashion_mnist, npz, synthetic, theory_features, tiny_imagenet
from deepfusion.model.data.base import ArrayDataset, float_option, int_option, stratified_split, stratified_take
from deepfusion.model.dataset_names import DATASETS

__all__ = ["ArrayDataset", "DATASETS", "SPLITS", "load_dataset", "dataset_options", "stratified_split"]

# name -> loader(root, split, seed, **options); the loader's keyword defaults are its options.
_LOADERS = {
    "synthetic": synthetic.load_vectors,
    "synthetic_images": synthetic.load_images,
    "theory": theory_features.load,
    "digits": digits.load,
    "fashion_mnist": fashion_mnist.load,
    "cifar10": cifar.load_cifar10,
    "cifar100": cifar.load_cifar100,
    "tiny_imagenet": tiny_imagenet.load,
    "npz": npz.load,
}
SPLITS = ("train", "test")
COMMON_OPTIONS = {"test_fraction": 0.25, "limit": None}


def dataset_options(name: str) -> dict:
    """The options ``name`` accepts, with their defaults."""
    _check_name(name)
    params = inspect.signature(_LOADERS[name]).parameters
    own = {k: p.default for k, p in params.items() if k not in ("root", "split", "seed")}
    return {**COMMON_OPTIONS, **own}


def _check_name(name: str) -> None:
    if name not in _LOADERS:
        raise ConfigError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")


def load_dataset(name: str, root=None, split: str = "train", seed: int = 0, **options) -> ArrayDataset:
    """The ``split`` ("train" or "test") of dataset ``name`` as an in-memory ``ArrayDataset``.

    ``seed`` fixes generated data and the held-out split of datasets without a test split, so
    train and test of one seed never overlap. Unknown names or options raise ``ConfigError``;
    missing or malformed files raise ``DataError`` naming the files.
    """
    valid = dataset_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(f"dataset {name!r} has no option {', '.join(unknown)}; valid options: {', '.join(valid)}")
    if split not in SPLITS:
        raise ConfigError(f"split={split!r} is not valid; choose from {', '.join(SPLITS)}")
    seed = int_option("seed", seed, 0)
    opts = {**valid, **options}
    opts["test_fraction"] = float_option("test_fraction", opts["test_fraction"], 0.0, 1.0, closed=False)
    limit = opts.pop("limit")
    own = inspect.signature(_LOADERS[name]).parameters
    kwargs = {k: v for k, v in opts.items() if k in own}
    root = os.path.expanduser(root) if isinstance(root, str) else root  # data.root=~/datasets
    ds = _LOADERS[name](root=root, split=split, seed=seed, **kwargs)
    if limit is not None:
        limit = int_option("limit", limit, 1)
        ds = ds.subset(stratified_take(ds.y.numpy(), limit, seed))
    return ds
