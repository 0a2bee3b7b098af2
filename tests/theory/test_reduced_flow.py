"""The reduced model against an explicit head on tokens of the two-view configuration.

Tokens x_i = a v_c + b p_k + u e_i (e_i one orthonormal direction per token, so the two views are
independent), heads B_h = sum_X beta_X P_X and V_h = sum_X lambda_X P_X: the reduced model's four
block weights equal the explicit softmax, and one pre-LN layer's coefficients on v_c, p_k, e_i and
e_i' equal the explicit layer's (the explicit tokens also gain parts along the other tokens' view
directions, which the reduced model holds at their d -> infinity value 0)."""

import numpy as np
import pytest

from deepfusion.errors import ConfigError
from deepfusion.theory import reduced_flow as rf
from deepfusion.theory.dynamics import _simplex

C, NC, H = 3, 3, 2


def _explicit(g, z, beta, lam):
    N = C * NC
    M = 2 * N
    D = C + N + M
    V = np.zeros((C, D))
    V[:, :C] = _simplex(C)
    P = np.zeros((N, D))
    for c in range(C):
        P[c * NC : (c + 1) * NC, C + c * NC : C + (c + 1) * NC] = _simplex(NC)
    E = np.zeros((M, D))
    E[:, C + N :] = np.eye(M)
    inst = np.arange(M) % N
    lab = inst // NC
    a, b, u, w = z
    X = a * V[lab] + b * P[inst] + u * E + w * E[(np.arange(M) + N) % M]
    proj = {"V": V.T @ np.linalg.pinv(V.T), "I": P.T @ np.linalg.pinv(P.T), "W": E.T @ E}
    scale = np.sqrt(g.dim) / np.linalg.norm(X[0])
    out, weights = X.copy(), []
    for h in range(H):
        B = sum(beta[h, i] * proj[k] for i, k in enumerate("VIW"))
        Vh = sum(lam[h, i] * proj[k] for i, k in enumerate("VIW"))
        S = (scale * X) @ B @ (scale * X).T
        A = np.exp(S - S.max(1, keepdims=True))
        A /= A.sum(1, keepdims=True)
        weights.append(A)
        out = out + A @ (scale * X) @ Vh.T
    coef = np.array([out[0] @ V[lab[0]], out[0] @ P[0], out[0] @ E[0], out[0] @ E[N]])
    return weights, coef, lab, inst


def test_block_weights_and_pre_ln_layer_match_an_explicit_head():
    g = rf.Geometry(classes=C, instances=C * NC, spread=0.8, view=0.5, norm="pre", heads=H, dim=16)
    rng = np.random.default_rng(0)
    beta, lam = rng.normal(size=(H, 3)) * 0.5, rng.normal(size=(H, 3))
    z = (1.1, 0.7, 0.4, 0.2)
    weights, coef, lab, inst = _explicit(g, z, beta, lam)
    z2, (s, p, q, o) = rf.layer(tuple(np.array([c]) for c in z), beta[None], lam[None], g)
    N = C * NC
    for h, A in enumerate(weights):
        assert A[0, 0] == pytest.approx(s[0, h], rel=1e-10)
        assert A[0, N] == pytest.approx(p[0, h], rel=1e-10)
        assert A[0, 1] == pytest.approx(q[0, h], rel=1e-10)  # token 1: same class, other instance
        assert A[0, NC] == pytest.approx(o[0, h], rel=1e-10)  # token NC: the next class
    assert np.array([c[0] for c in z2]) == pytest.approx(coef, rel=1e-10)


def test_uniform_attention_gives_ratio_one():
    g = rf.Geometry(classes=4, instances=32, spread=1.0, view=0.5)
    z = tuple(np.array([c]) for c in rf.initial_tokens(g))
    _, wts = rf.layer(z, np.zeros((1, 4, 3)), np.zeros((1, 4, 3)), g)
    assert rf.v3_ratio(wts, g) == pytest.approx(np.ones((1, 4)))


def test_integrate_is_deterministic_and_shaped():
    g = rf.Geometry(classes=4, instances=32, spread=1.0, view=0.5, depth=2, steps=12, warmup_steps=2)
    f1, f2 = rf.integrate(g, (0, 1), record_every=4), rf.integrate(g, (0, 1), record_every=4)
    assert f1.params.shape == (4, 2, 2, 4, 6) and f1.ratio.shape == (2, 2, 4)
    assert np.array_equal(f1.params, f2.params)
    assert not np.array_equal(f1.params[0], f1.params[-1])  # it moved


def test_bad_geometry_raises():
    with pytest.raises(ConfigError):
        rf.integrate(rf.Geometry(classes=4, instances=4, spread=1.0, view=0.5), (0,))
    with pytest.raises(ConfigError):
        rf.integrate(rf.Geometry(classes=4, instances=32, spread=1.0, view=0.5, scope="nope"), (0,))
