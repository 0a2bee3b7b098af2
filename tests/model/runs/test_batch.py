"""The batch size, checked in one place against the head, the processes and the training split, and
fitted to a small split."""

import pytest

from deepfusion.errors import ConfigError
from deepfusion.model.runs.batch import check_batch, fitted_batch
from deepfusion.model.runs.config import load_config


def _cfg(*overrides):
    return load_config("synthetic", list(overrides))


def test_a_batch_that_fits_passes():
    check_batch(_cfg("train.batch_size=64"), n_train=100, world=2)


@pytest.mark.parametrize(
    "overrides, n, world, words",
    [
        (("train.batch_size=65",), 100, 2, "multiple of 2"),
        (("train.batch_size=128",), 100, 1, "exceeds the 100 training samples"),
        (("model.scope=per_view", "train.batch_size=2", "train.attend=local"), 100, 2, "train.attend=global"),
    ],
)
def test_a_batch_that_does_not_fit_names_the_fix(overrides, n, world, words):
    with pytest.raises(ConfigError, match=words):
        check_batch(_cfg(*overrides), n_train=n, world=world)


@pytest.mark.parametrize(
    "batch, n, world, fitted",
    [
        (256, 100, 1, 100),  # larger than the split: one batch of all
        (256, 1000, 1, 250),  # 1000 - 3*256 = 232 unused: four batches of 250
        (64, 1000, 1, None),  # 40 unused of 1000: kept
        (256, 100, 8, 96),  # a multiple of the processes
        (256, 3, 4, None),  # nothing of at least 2 fits
    ],
)
def test_fitted_batch_spreads_a_small_split_over_equal_batches(batch, n, world, fitted):
    assert fitted_batch(batch, n, world) == fitted
