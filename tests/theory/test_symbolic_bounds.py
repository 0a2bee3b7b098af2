"""The sympy derivations of S1 and S6 agree with the numeric functions of theory/bounds.py."""

import numpy as np
import pytest
import sympy as sp

from deepfusion.theory import bounds
from deepfusion.theory import symbolic_bounds as sb


def test_half_angle_is_arcsin():
    assert sb.derive_s1_half_angle() == sp.asin(sb.eps)


def test_symbolic_threshold_matches_numeric():
    expr = sb.derive_s1_threshold()
    for rho in (-1.0, -0.5, -0.2, 0.0):
        assert float(expr.subs(sb.rho, rho)) == pytest.approx(bounds.eps_max(rho), abs=1e-14)


def test_simple_bound_and_gap_match_numeric():
    bound, gap = sb.derive_s1_simple_bound()
    for rho in np.linspace(-1, 0, 7):
        assert float(bound.subs(sb.rho, rho)) == pytest.approx(bounds.simple_bound(rho), abs=1e-14)
        phi = np.arccos(rho) / 2
        assert float(gap.subs(sb.phi, phi)) == pytest.approx(bounds.eps_max(rho) - bounds.simple_bound(rho), abs=1e-14)


def test_s6_n_min_matches_numeric():
    n_min, var_sq, tol = sb.derive_s6()
    assert float(n_min.subs({sb.sigma: 1.7, sb.eps: 0.3})) == pytest.approx(bounds.n_min(1.7, 0.3))
    law = bounds.mean_noise_law(5, 1.7, 16)
    assert float(var_sq.subs({sb.sigma: 1.7, sb.n: 5, sb.d: 16})) == pytest.approx(law.var())
    assert float(tol.subs(sb.d, 100)) == pytest.approx(0.2)
