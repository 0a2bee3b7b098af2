"""S8-S12 and S5b: closed forms by hand, the quick checks, and the wiring of properties to THEORY_LEARNED.md."""

from pathlib import Path

import numpy as np
import pytest

from deepfusion.errors import ConfigError
from deepfusion.theory import configurations as cf
from deepfusion.theory import ffn, fusion, layernorm, learned, perturbation, properties_learned
from deepfusion.theory.checks_learned import CHECKS

DOC = (Path(__file__).parents[2] / "theory" / "THEORY_LEARNED.md").read_text()


def test_every_statement_has_all_three_kinds():
    kinds = {(c.statement, c.kind) for c in CHECKS}
    for s in ("S8", "S9", "S10", "S11", "S12", "S5"):
        assert {(s, k) for k in ("symbolic", "numeric", "property")} <= kinds


@pytest.mark.parametrize("check", [c for c in CHECKS if c.kind != "property"], ids=lambda c: f"{c.statement}-{c.kind}")
def test_quick_check_passes(check):
    assert check.run(True)


@pytest.mark.parametrize(
    "statement, prop",
    [(s, p) for s, ps in properties_learned.PROPERTIES.items() for p in ps],
    ids=lambda x: getattr(x, "__name__", x),
)
def test_property(statement, prop):
    assert prop.__doc__.lstrip().startswith(statement)  # S5 for S5b
    assert prop.__name__ in DOC, f"{prop.__name__} is not listed in THEORY_LEARNED.md"
    prop()


def test_s8_logits_by_hand():
    # n = 2, r = 1, rho = -1, nu = 1: g = 1/2; same - out = (2 bm - be)/2, self - same = be
    self_out, same_out = learned.learned_logits(1.5, 0.4, 1.0, 2, -1.0)
    assert same_out == pytest.approx((2 * 1.5 - 0.4) / 2)
    assert self_out - same_out == pytest.approx(0.4)


def test_s8_m_star_drops_beta_e_and_counts_the_self_term():
    assert learned.learned_m_star(2, 3, 1.0, -1.0, tau=np.log(2.0)) == pytest.approx(4 / (4 + 3 * np.exp(-2.0)))


def test_s9_reduces_to_s2_at_unit_eigenvalues():
    a = learned.value_layer_map(0.7, 0.3, 0.1, 0.6, 4, 0.8, 1.0, 1.0)
    assert a == pytest.approx(fusion.layer_map(0.7, 0.3, 0.1, 0.6, 4, 0.8))


def test_s11_rejects_a_vanishing_mean_factor():
    with pytest.raises(ConfigError):
        learned.multihead_layer_map(1.0, [1.0], [0.0], [1.0], 2, 1.0, [-1.0], [1.0])  # kappa(1) = 1


def test_s10_ln_matches_torch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal((5, 16))
    g, b = np.linspace(0.5, 1.5, 16), np.linspace(-0.1, 0.1, 16)
    ln = torch.nn.LayerNorm(16).double()
    ln.weight.data, ln.bias.data = torch.tensor(g), torch.tensor(b)
    assert np.allclose(layernorm.layer_norm(x, g, b), ln(torch.tensor(x)).detach().numpy(), atol=1e-12)


def test_s12_gelu_matches_torch_and_constant():
    torch = pytest.importorskip("torch")
    x = np.linspace(-6, 6, 101)
    assert np.allclose(ffn.gelu(x), torch.nn.functional.gelu(torch.tensor(x)).numpy(), atol=1e-12)
    assert ffn.GELU_LIPSCHITZ == pytest.approx(1.1289, abs=1e-4)


def test_configuration_is_symmetric():
    cfg = cf.symmetric_configuration(3, 4, 0.6, 30, nu=2.0)
    U = cfg.X / np.linalg.norm(cfg.X, axis=1, keepdims=True)
    assert np.allclose(np.linalg.norm(cfg.X, axis=1), 2.0) and np.allclose(cfg.X.sum(1), 0.0)
    assert np.allclose(np.unique(np.round(U @ U.T, 12)), sorted([1.0, *fusion.cosines(0.6, 4, -0.5)]))


def test_s5b_bound_is_zero_at_zero_and_grows():
    assert perturbation.layer_step(0.0, 3, 4, 2.0, 0.5, 0.8)[0] == 0.0
    d = perturbation.trajectory_bound(3, 4, 2.0, 0.5, 0.8, 4, 1e-4)["delta"]
    assert np.all(np.diff(d) > 0)
