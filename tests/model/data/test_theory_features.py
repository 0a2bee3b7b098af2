"""The theory's own data: the class geometry asked for, and one-line errors for geometries that cannot exist."""

import numpy as np
import pytest

from deepfusion.errors import ConfigError
from deepfusion.model.data import load_dataset
from deepfusion.model.data.theory_features import class_means, theory_numbers
from deepfusion.theory.bounds import eps_max


@pytest.mark.parametrize("C,rho", [(2, -1.0), (4, -1 / 3), (5, 0.0), (3, 0.4), (10, -1 / 9)])
def test_class_means_are_unit_with_the_asked_inner_product(C, rho):
    mu = class_means(C, 16, rho, np.random.default_rng(0))
    gram = mu @ mu.T
    assert np.allclose(np.diag(gram), 1.0)
    assert np.allclose(gram[~np.eye(C, dtype=bool)], rho)


def test_samples_have_the_asked_spread_and_geometry():
    ds = load_dataset(
        "theory", split="train", num_classes=4, dim=256, rho="etf", sigma=0.4, samples_per_class=500, test_fraction=0.2
    )
    x, y = ds.x.numpy().astype(np.float64), ds.y.numpy()
    means = np.stack([x[y == c].mean(0) for c in range(4)])
    noise = np.concatenate([x[y == c] - means[c] for c in range(4)])
    assert np.sqrt((noise**2).sum(1).mean()) == pytest.approx(0.4, rel=0.03)  # E||e||^2 = sigma^2
    unit = means / np.linalg.norm(means, axis=1, keepdims=True)
    assert np.allclose((unit @ unit.T)[~np.eye(4, dtype=bool)], -1 / 3, atol=0.02)
    assert ds.kind == "vector" and ds.input_shape == (256,) and ds.num_classes == 4


def test_train_and_test_come_from_one_draw():
    tr = load_dataset("theory", split="train", seed=3, samples_per_class=50)
    te = load_dataset("theory", split="test", seed=3, samples_per_class=50)
    assert len(tr.y) + len(te.y) == 4 * 50
    assert not set(map(bytes, tr.x.numpy())) & set(map(bytes, te.x.numpy()))


def test_theory_numbers_are_s1_and_s6():
    nums = theory_numbers(4, -1 / 3, 0.5)
    assert nums["eps_max"] == pytest.approx(float(eps_max(-1 / 3)))
    assert nums["n_min"] == pytest.approx((0.5 / nums["eps_max"]) ** 2)
    assert theory_numbers(4, 0.2, 0.1)["n_min"] == float("inf")  # rho > 0: no radius is safe


@pytest.mark.parametrize(
    "opts,match",
    [
        ({"num_classes": 1}, "num_classes"),
        ({"rho": -0.6}, r"rho=-0.6 is outside \[-1/\(C-1\), 1\)"),
        ({"rho": 1.0}, "outside"),
        ({"rho": "simplex"}, "not a number"),
        ({"sigma": -0.1}, "sigma"),
        ({"dim": 3}, "dim=3 is smaller than num_classes=4"),
    ],
)
def test_impossible_geometries_are_one_line_errors(opts, match):
    with pytest.raises(ConfigError, match=match) as info:
        load_dataset("theory", **opts)
    assert "\n" not in str(info.value)
