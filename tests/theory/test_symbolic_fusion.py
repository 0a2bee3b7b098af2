"""The sympy derivations of S2-S5, S7 run and agree with the numeric code."""

import numpy as np
import pytest
import sympy as sp

from deepfusion.errors import CheckFailed
from deepfusion.theory import fusion
from deepfusion.theory import symbolic_fusion as sf


def test_s2_eigenvalues_match_numeric_layer_coefficients():
    out = sf.derive_s2()
    vals = {sf.C: 5, sf.alpha: 0.7, sf.m: 0.6, sf.a_self: 0.3, sf.a_same: 0.05}
    mean_f, dev_f = fusion.layer_coefficients(0.3, 0.05, 0.6, 5, 0.7)
    assert float(out["mean_factor"].subs(vals)) == pytest.approx(mean_f)
    assert float(out["deviation_factor"].subs(vals)) == pytest.approx(dev_f)


def test_s2_explicit_matrix():
    assert sf.derive_s2_explicit(2, 3)


def test_s3_chance_level():
    assert sf.derive_s3()["chance"] == 1 / sf.C


def test_s4_m_star_matches_numeric():
    expr = sf.derive_s4()["m_star"]
    val = float(expr.subs({sf.C: 4, sf.beta: 3.0, sf.rho: -1 / 3}))
    assert val == pytest.approx(float(fusion.m_star(4, 3.0)))


def test_s4_symbolic_forms_match_numeric():
    a_s, a_m, a_o, m = sf.softmax_forms(centred=True)
    vals = {sf.C: 3, sf.n: 7, sf.beta: 2.5, sf.r: 0.9, sf.rho: -0.5}
    got = [float(e.subs(vals)) for e in (a_s, a_m, a_o)]
    assert np.allclose(got, fusion.softmax_block_weights(3, 7, 2.5, 0.9))


def test_s5_rate_matches_numeric():
    rate = sf.derive_s5()["rate"]
    val = float(rate.subs({sf.C: 4, sf.beta: 2.0, sf.alpha: 0.5, sf.rho: -1 / 3}))
    assert val == pytest.approx(float(fusion.asymptotic_rate(4, 2.0, 0.5)))


def test_s7_uniform_rank_one():
    assert sf.derive_s7()["rank_uniform"] == 1


def test_zero_helper_fails_on_nonzero():
    with pytest.raises(CheckFailed):
        sf._zero(sp.Symbol("x") + 1 - sp.Symbol("x") - 2, "deliberately wrong")
