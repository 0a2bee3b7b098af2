"""S2-S5, S7 block model: closed forms, mean-field shapes, broadcasting and bad input."""

import numpy as np
import pytest

from deepfusion.errors import ConfigError
from deepfusion.theory import fusion


def test_kappa_is_zero_at_chance_and_one_at_full_mass():
    assert fusion.kappa(1 / 4, 4) == pytest.approx(0.0)
    assert fusion.kappa(1.0, 7) == pytest.approx(1.0)


@pytest.mark.parametrize("C,n,beta,r", [(2, 2, 0.5, 0.1), (4, 64, 8.0, 1.0), (10, 16, 30.0, 2.5)])
def test_softmax_weights_rows_sum_to_one(C, n, beta, r):
    a_self, a_same, a_out = fusion.softmax_block_weights(C, n, beta, r)
    assert a_self + (n - 1) * a_same + (C - 1) * n * a_out == pytest.approx(1.0)
    assert a_self >= a_same > a_out


def test_m_star_closed_form_by_hand():
    # C = 2, rho = -1: m* = 1/(1 + exp(-2 beta))
    assert fusion.m_star(2, 1.5) == pytest.approx(1 / (1 + np.exp(-3.0)))


def test_centred_cosine_average_equals_n_infinity_cosine():
    same, _ = fusion.cosines(0.7, 10, -1 / 3)
    assert (1 + 9 * same) / 10 == pytest.approx(1 / (1 + 0.49))


def test_mean_field_shapes_and_broadcasting():
    f = fusion.mean_field(np.array([2, 4, 8])[:, None], 32, np.array([1.0, 5.0]), 1.0, 0.5, 12)
    assert f.m.shape == (3, 2, 12) and f.r.shape == (3, 2, 13) and f.a_same.shape == (3, 2, 12)
    assert f["m"] is f.m
    assert np.all(f.r[..., 0] == 0.5)
    assert np.allclose(f.rho, fusion.etf_rho(np.array([2, 4, 8]))[:, None, None])


def test_mean_field_matches_explicit_layer_map():
    f = fusion.mean_field(4, 64, 8.0, 1.0, 1.0, 3)
    r = 1.0
    for layer in range(3):
        a_self, a_same, _ = fusion.softmax_block_weights(4, 64, 8.0, r)
        r = fusion.layer_map(r, a_self, a_same, a_self + 63 * a_same, 4, 1.0)
        assert f.r[layer + 1] == pytest.approx(r, rel=1e-12)


def test_block_limit_entries():
    A = fusion.mean_field(3, 4, 6.0, 1.0, 0.5, 2).block_limit()
    ms = fusion.m_star(3, 6.0)
    assert A.shape == (12, 12) and np.allclose(A.sum(1), 1.0)
    assert A[0, 1] == pytest.approx(ms / 4) and A[0, 5] == pytest.approx((1 - ms) / 8)


def test_general_rho_drifts_towards_one_and_etf_stays():
    assert np.all(np.diff(fusion.mean_field(4, 16, 4.0, 1.0, 1.0, 10, rho=0.2).rho) > 0)
    assert np.allclose(fusion.mean_field(4, 16, 4.0, 1.0, 1.0, 64).rho, -1 / 3, atol=0, rtol=1e-14)


def test_relu_attention_etf_keeps_all_mass_in_class():
    f = fusion.mean_field(4, 16, 0.0, 1.0, 1.0, 5, attention="relu")
    assert np.allclose(f.m, 1.0) and np.all(np.diff(f.r) < 0)


@pytest.mark.parametrize(
    "kwargs,word",
    [
        (dict(C=1), "C"),
        (dict(n=1), "n"),
        (dict(beta=-1.0), "beta"),
        (dict(alpha=-0.1), "alpha"),
        (dict(r0=-1.0), "r0"),
        (dict(rho=-0.9), "rho"),
        (dict(layers=2.5), "layers"),
    ],
)
def test_bad_input_raises_config_error(kwargs, word):
    args = dict(C=4, n=8, beta=1.0, alpha=1.0, r0=1.0, layers=3) | kwargs
    with pytest.raises(ConfigError, match=word):
        fusion.mean_field(**args)
