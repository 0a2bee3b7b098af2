"""Finite token simulation: token construction, attention statistics, agreement with the recursion."""

import numpy as np
import pytest
import torch

from deepfusion.errors import ConfigError
from deepfusion.theory import fusion
from deepfusion.theory.simulation import attention, block_stats, make_tokens, measure_tokens, simulate, simulate_fusion


def test_gaussian_tokens_have_requested_spread_and_etf_means():
    x = make_tokens(4, 32, 256, 0.8, project=False)
    r, rho = measure_tokens(x, 4)
    assert r == pytest.approx(0.8, rel=1e-12) and rho == pytest.approx(-1 / 3, abs=1e-12)


def test_tokens_are_on_the_sphere():
    x = make_tokens(3, 8, 64, 1.3)
    assert torch.allclose(x.norm(dim=1), torch.ones(24, dtype=x.dtype))


def test_attention_rows_sum_to_one():
    a = attention(make_tokens(3, 8, 64, 1.0), 5.0)
    assert torch.allclose(a.sum(1), torch.ones(24, dtype=a.dtype))


def test_block_stats_of_uniform_attention_is_chance():
    m, a_self, a_same, a_out = block_stats(torch.full((20, 20), 1 / 20), 4)
    assert m == pytest.approx(0.25) and a_self == pytest.approx(a_same) == pytest.approx(a_out)


def test_simplex_configuration_follows_recursion_exactly():
    sim = simulate_fusion(3, 6, 3 + 18, 4.0, 0.7, 1.2, 8, noise="simplex")
    mf = fusion.mean_field(3, 6, 4.0, 0.7, sim.r[0], 8)
    assert np.allclose(sim.r, mf.r, rtol=1e-10) and np.allclose(sim.m, mf.m, atol=1e-12)


def test_return_attention_gives_one_matrix_per_layer():
    sim = simulate_fusion(2, 4, 32, 2.0, 1.0, 1.0, 3, return_attention=True)
    assert len(sim.attention) == 3 and sim.attention[0].shape == (8, 8)


def test_float32_and_float64_agree_while_r_is_resolvable():
    a = simulate_fusion(4, 16, 128, 3.0, 0.5, 1.0, 6, dtype=torch.float32)
    b = simulate_fusion(4, 16, 128, 3.0, 0.5, 1.0, 6, dtype=torch.float64)
    assert np.allclose(a.r, b.r, rtol=1e-4) and np.allclose(a.m, b.m, atol=1e-5)


TRAJECTORY = ("r", "rho", "m", "a_self", "a_same", "a_out")


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize(
    "C, n, d, beta, alpha, residual",
    [(4, 16, 128, 3.0, 0.5, True), (3, 10, 40, 8.0, 1.0, False), (2, 33, 70, 20.0, 0.2, True)],
)
def test_blas_and_general_paths_agree(dtype, tol, C, n, d, beta, alpha, residual):
    x = make_tokens(C, n, d, 1.0, dtype=dtype, seed=C)
    fast = simulate(x, C, beta, alpha, 6, residual=residual)
    ref = simulate(x, C, beta, alpha, 6, residual=residual, method="general")
    assert (fast.method, ref.method) == ("blas", "general")
    for k in TRAJECTORY:
        np.testing.assert_allclose(fast[k], ref[k], rtol=tol, atol=tol, err_msg=k)


def test_blas_path_handles_tokens_off_the_sphere():
    # norms from 0.6 to 1.4: a shift of 1 would not bound the scores; one shift by the largest norm does
    x = make_tokens(3, 12, 48, 1.0, project=False) * torch.linspace(0.6, 1.4, 36, dtype=torch.float64)[:, None]
    fast, ref = simulate(x, 3, 6.0, 1.0, 4), simulate(x, 3, 6.0, 1.0, 4, method="general")
    assert fast.method == "blas"
    for k in TRAJECTORY:
        np.testing.assert_allclose(fast[k], ref[k], rtol=1e-12, atol=1e-12, err_msg=k)


def test_auto_takes_general_path_where_blas_does_not_apply():
    x = make_tokens(2, 4, 32, 1.0)
    assert simulate(x, 2, 2.0, 1.0, 2, kind="relu").method == "general"
    assert simulate(x, 2, 2.0, 1.0, 2, return_attention=True).method == "general"
    assert simulate(x.to(torch.float16), 2, 2.0, 1.0, 1).method == "general"
    wide = x * torch.linspace(0.1, 3.0, 8, dtype=x.dtype)[:, None]  # beta * norm spread far past the limit
    assert simulate(wide, 2, 100.0, 1.0, 1).method == "general"
    with pytest.raises(ConfigError, match="blas"):
        simulate(x, 2, 2.0, 1.0, 2, kind="relu", method="blas")
    with pytest.raises(ConfigError, match="method"):
        simulate(x, 2, 2.0, 1.0, 2, method="fast")


def test_bad_input_raises():
    with pytest.raises(ConfigError, match="simplex"):
        make_tokens(4, 16, 32, 1.0, noise="simplex")
    with pytest.raises(ConfigError, match="noise"):
        make_tokens(4, 16, 32, 1.0, noise="uniform")
    with pytest.raises(ConfigError, match="rho"):
        make_tokens(4, 16, 32, 1.0, rho=-0.5)
