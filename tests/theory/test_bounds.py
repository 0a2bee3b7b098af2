"""S1 and S6 numerics (theory/bounds.py); the same check functions that `deepfusion verify` runs."""

import numpy as np
import pytest

from deepfusion.errors import ConfigError
from deepfusion.theory import bounds, checks_bounds, properties_bounds


def test_eps_max_known_values():
    # C = 2 (antipodal means): the same-class limit 1/sqrt(2); C = 3: sin(15 degrees)
    assert bounds.eps_max(-1.0) == pytest.approx(1 / np.sqrt(2), abs=1e-15)
    assert bounds.eps_max(-0.5) == pytest.approx(np.sin(np.pi / 12), abs=1e-15)
    assert bounds.eps_max(0.0) == pytest.approx(0.0, abs=1e-15)
    assert bounds.simple_bound(-1.0) == pytest.approx(np.sqrt(2) - 1)


def test_eps_max_rejects_positive_rho():
    with pytest.raises(ValueError, match="rho"):
        bounds.eps_max(0.1)
    with pytest.raises(ConfigError):
        bounds.simple_bound(np.array([-0.5, 0.2]))


def test_etf_rho_validates_C():
    assert bounds.etf_rho(4) == pytest.approx(-1 / 3)
    with pytest.raises(ConfigError, match="C"):
        bounds.etf_rho(1)


def test_eps_max_is_vectorised():
    rho = bounds.etf_rho(np.arange(2, 11))
    assert bounds.eps_max(rho).shape == (9,)
    assert np.all(np.diff(bounds.eps_max(rho)) < 0)


@pytest.mark.parametrize("C", [2, 3, 7])
def test_worst_cosine_is_zero_at_threshold(C):
    rho = bounds.etf_rho(C)
    assert bounds.worst_cosine(rho, bounds.eps_max(rho)) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("C", [2, 3, 10])
def test_construction_violates_just_above(C):
    rho = float(bounds.etf_rho(C))
    e = float(bounds.eps_max(rho))
    mu, noise = bounds.violating_construction(rho, 1.01 * e)
    assert np.allclose(np.linalg.norm(noise, axis=1), 1.01 * e)
    x = mu + noise
    assert x[0] @ x[1] > 0
    assert bounds.worst_cross_inner(rho, 0.99 * e, starts=2) < 0 < bounds.worst_cross_inner(rho, 1.01 * e, starts=2)


def test_separated_on_batches():
    mu = np.array([[1.0, 0.0], [-1.0, 0.0]])
    labels = np.array([0, 0, 1])
    good = mu[labels] + 0.1
    bad = good.copy()
    bad[2] = [0.1, 1.0]  # cross-class positive
    out = bounds.separated(np.stack([good, bad]), labels)
    assert out.tolist() == [True, False]


def test_n_min_and_crossing():
    assert bounds.n_min(2.0, 0.5) == pytest.approx(16.0)
    # the one-class crossing is the chi-square median over d, times n_min
    d = 32
    assert bounds.crossing_n(2.0, 0.5, d) == pytest.approx(
        16.0 * np.median(np.random.default_rng(0).chisquare(d, 400_000)) / d, rel=2e-3
    )
    with pytest.raises(ConfigError):
        bounds.n_min(1.0, 0.0)


def test_exceed_probability_half_at_crossing():
    nc = bounds.crossing_n(1.3, 0.2, 64, 5)
    assert bounds.exceed_probability(nc, 1.3, 0.2, 64, 5) == pytest.approx(0.5, abs=1e-9)


def test_monte_carlo_shapes_and_s1_consistency():
    mc = bounds.monte_carlo_batch([1, 3, 5], 1.0, 8, 3, 200, seed=0)
    assert mc["exceed"].shape == mc["fail"].shape == (3,)
    assert np.all(mc["unexplained"] == 0)  # every failure has some class beyond eps_max
    assert np.all(mc["fail"] <= mc["exceed"])


def test_half_crossing_interpolates():
    assert bounds.half_crossing([1, 2, 3], [0.9, 0.7, 0.3]) == pytest.approx(2.5)
    assert np.isnan(bounds.half_crossing([1, 2], [0.2, 0.1]))


@pytest.mark.parametrize(
    "check", [c for c in checks_bounds.CHECKS if c.kind != "property"], ids=lambda c: f"{c.statement}-{c.kind}"
)
def test_quick_checks_pass(check):  # the property kind runs test_property's functions
    summary = check.run(True)
    assert isinstance(summary, str) and summary


@pytest.mark.slow
@pytest.mark.parametrize(
    "check", [c for c in checks_bounds.CHECKS if c.kind == "numeric"], ids=lambda c: f"{c.statement}-{c.kind}"
)
def test_full_checks_pass(check):
    assert check.run(False)


@pytest.mark.parametrize(
    "prop", [p for ps in properties_bounds.PROPERTIES.values() for p in ps], ids=lambda p: p.__name__
)
def test_property(prop):
    prop()
