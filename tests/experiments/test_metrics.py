"""Metrics on hand-built attention and tokens with known answers, and their order invariance."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepfusion.errors import DataError
from deepfusion.experiments import metrics as mt
from deepfusion.experiments import prediction as pr


def batch(C, k, views=2):
    """Balanced view-major batch: labels, instance ids, tokens per class n = views * k."""
    N = C * k
    y = np.tile(np.repeat(np.arange(C), k), views)
    inst = np.arange(views * N) % N
    return y, inst


def per_view_mask(M, views=2):
    v = np.arange(M) // (M // views)
    return v[:, None] == v[None, :]


def softmax_rows(logits, visible=None):
    z = np.where(visible, logits, -np.inf) if visible is not None else logits
    z = z - z.max(-1, keepdims=True)
    w = np.exp(z)
    return w / w.sum(-1, keepdims=True)


def etf(C, d, rng):
    """C unit means with pairwise cosine -1/(C-1), as rows (C, d)."""
    Q, _ = np.linalg.qr(rng.normal(size=(d, C)))
    E = (np.eye(C) - 1.0 / C) * np.sqrt(C / (C - 1))
    return E @ Q.T


def etf_plus_symmetric_noise(C, n, r, d, rng):
    """As above but with noise in +/- pairs, so the class mean is exactly mu_c and every norm is r."""
    assert n % 2 == 0
    mu = etf(C, d, rng)
    P = np.eye(d) - mu.T @ np.linalg.pinv(mu.T)
    X, y = [], []
    for c in range(C):
        e = rng.normal(size=(n // 2, d)) @ P
        e *= r / np.linalg.norm(e, axis=1, keepdims=True)
        X.append(mu[c] + np.concatenate([e, -e]))
        y += [c] * n
    return np.concatenate(X), np.array(y), mu


# --------------------------------------------------------------------------- known answers


@pytest.mark.parametrize("C,k", [(2, 3), (4, 5), (10, 2)])
def test_uniform_attention_sits_at_chance(C, k):
    y, inst = batch(C, k)
    M = len(y)
    A = np.full((M, M), 1.0 / M)
    assert mt.same_class_chance(y, inst) == pytest.approx((2 * k - 2) / M)
    assert mt.same_class_mass(A, y, inst) == pytest.approx((2 * k - 2) / M)
    assert mt.self_mass(A) == pytest.approx(1.0 / M)
    assert mt.positive_mass(A, y, inst) == pytest.approx(mt.positive_chance(y, inst)) == pytest.approx(1.0 / M)
    assert mt.block_mass(A, y) == pytest.approx(1.0 / C)
    assert mt.block_distance(A, y) == pytest.approx(0.0, abs=1e-12)
    assert mt.block_distance(A, y, mass=1.0) == pytest.approx(1.0 - 1.0 / C)
    assert mt.effective_rank(A) == pytest.approx(1.0)


@pytest.mark.parametrize("C,k", [(2, 3), (4, 5)])
def test_identity_attention(C, k):
    y, inst = batch(C, k)
    M = len(y)
    A = np.eye(M)
    assert mt.same_class_mass(A, y, inst) == 0.0
    assert mt.self_mass(A) == 1.0
    assert mt.positive_mass(A, y, inst) == 0.0
    assert mt.block_mass(A, y) == 1.0
    assert mt.effective_rank(A) == pytest.approx(M)
    n = 2 * k
    assert mt.block_distance(A, y) == pytest.approx((n - 1) / n)


@pytest.mark.parametrize("mass", [1.0, 0.8, 0.3])
def test_ideal_block_matrix(mass):
    C, k = 4, 3
    y, inst = batch(C, k)
    n = 2 * k
    B = mt.ideal_block_matrix(y, mass)
    assert np.allclose(B.sum(1), 1.0)
    assert mt.block_mass(B, y) == pytest.approx(mass)
    assert mt.same_class_mass(B, y, inst) == pytest.approx(mass * (n - 2) / n)
    assert mt.self_mass(B) == pytest.approx(mass / n)
    assert mt.positive_mass(B, y, inst) == pytest.approx(mass / n)
    assert mt.block_distance(B, y) == pytest.approx(0.0, abs=1e-12)
    assert mt.block_distance(B, y, mass=mass) == pytest.approx(0.0, abs=1e-12)
    if mass == 1.0:
        assert mt.effective_rank(B) == pytest.approx(C)  # C singular values equal to 1


def test_per_view_scope_chance_levels():
    C, k = 3, 4
    y, inst = batch(C, k)
    M = len(y)
    vis = per_view_mask(M)
    A = vis / vis.sum(1, keepdims=True)
    N = M // 2
    assert mt.same_class_chance(y, inst, vis) == pytest.approx((k - 1) / N)
    assert mt.same_class_mass(A, y, inst, vis) == pytest.approx(mt.same_class_chance(y, inst, vis))
    assert mt.positive_chance(y, inst, vis) == 0.0
    assert mt.block_distance(A, y, vis) == pytest.approx(0.0, abs=1e-12)


def test_stack_matches_single_matrices():
    rng = np.random.default_rng(0)
    y, inst = batch(3, 4)
    M = len(y)
    A = softmax_rows(rng.normal(size=(2, 3, M, M)) * 3)
    X = rng.normal(size=(M, 8))
    for f in (mt.same_class_mass, mt.positive_mass, mt.block_mass):
        stacked = f(A, y, inst)
        assert stacked.shape == (2, 3)
        assert np.allclose(stacked, [[f(A[i, j], y, inst) for j in range(3)] for i in range(2)])
    for f in (mt.self_mass, mt.effective_rank):
        assert np.allclose(f(A), [[f(A[i, j]) for j in range(3)] for i in range(2)])
    assert np.allclose(mt.block_distance(A, y), [[mt.block_distance(A[i, j], y) for j in range(3)] for i in range(2)])
    beta, r2 = mt.fit_beta_eff(A, X)
    assert np.allclose(beta, [[mt.fit_beta_eff(A[i, j], X)[0] for j in range(3)] for i in range(2)])


@pytest.mark.parametrize("scope", ["both", "per_view"])
def test_pair_masks_split_the_visible_pairs(scope):
    y, inst = batch(3, 2)
    M = y.shape[0]
    visible = per_view_mask(M) if scope == "per_view" else None
    m = mt.pair_masks(y, inst, visible)
    parts = np.stack([m[k] for k in mt.PAIRS]).astype(int)
    assert (parts.sum(0) == m["visible"]).all()  # disjoint, and together every visible pair
    assert (m["block"] == (m["self"] | m["positive"] | m["same_other"])).all()
    assert m["positive"].sum() == (M if scope == "both" else 0)  # one other view per token, if visible
    uniform = m["visible"] / m["visible"].sum(1, keepdims=True)
    assert mt.same_class_mass(uniform, y, inst, visible) == pytest.approx(mt.same_class_chance(y, inst, visible))


def test_pair_masks_refuse_labels_that_are_not_one_per_token():
    with pytest.raises(DataError, match=r"labels y.*\(2, 3\)"):
        mt.pair_masks(np.zeros((2, 3)), np.arange(6))


def test_bad_attention_is_rejected():
    y, inst = batch(2, 2)
    with pytest.raises(DataError, match="sum to 1"):
        mt.same_class_mass(np.ones((8, 8)), y, inst)
    with pytest.raises(DataError, match="shape"):
        mt.same_class_mass(np.full((8, 8), 1 / 8), y[:5], inst)
    with pytest.raises(DataError, match="negative"):
        mt.self_mass(np.full((2, 2), 0.5) - np.eye(2))


# --------------------------------------------------------------------------- beta_eff


@pytest.mark.parametrize("beta", [0.5, 4.0, 25.0])
@pytest.mark.parametrize("scope", ["both", "per_view"])
def test_beta_eff_recovers_softmax_of_cosines(beta, scope):
    rng = np.random.default_rng(1)
    y, inst = batch(4, 4)
    M = len(y)
    X = rng.normal(size=(M, 16))
    vis = per_view_mask(M) if scope == "per_view" else None
    K = mt.cosine_matrix(X)
    A = softmax_rows(beta * K, vis)
    b, r2 = mt.fit_beta_eff(A, X, visible=vis)
    assert b == pytest.approx(beta, rel=1e-9) and r2 == pytest.approx(1.0, abs=1e-9)
    logits = beta * K + rng.normal(size=(M, 1))  # per-row constants do not matter
    b, r2 = mt.fit_beta_eff(logits, X, visible=vis, logits=True)
    assert b == pytest.approx(beta, rel=1e-9) and r2 == pytest.approx(1.0, abs=1e-9)


def test_beta_eff_r2_drops_when_attention_ignores_cosines():
    rng = np.random.default_rng(2)
    M = 24
    X = rng.normal(size=(M, 16))
    b, r2 = mt.fit_beta_eff(softmax_rows(rng.normal(size=(M, M)) * 2), X)
    assert r2 < 0.2


# --------------------------------------------------------------------------- tokens


@pytest.mark.parametrize("C,n,r", [(2, 6, 0.3), (4, 8, 1.0), (10, 4, 2.5)])
def test_relative_spread_equals_theory_r_on_etf_plus_noise(C, n, r):
    X, y, _ = etf_plus_symmetric_noise(C, n, r, 64, np.random.default_rng(3))
    assert mt.relative_spread(X, y) == pytest.approx(r, rel=1e-10)
    assert mt.relative_spread(5.0 * X, y) == pytest.approx(r, rel=1e-10)  # scale-free like the theory
    assert mt.class_mean_cosine(X, y) == pytest.approx(-1.0 / (C - 1), abs=1e-10)
    assert mt.cdnv(X, y) == pytest.approx(r**2 * (C - 1) / (2 * C), rel=1e-10)
    assert mt.nc1(X, y) == pytest.approx(0.0, abs=1e-10)  # noise orthogonal to the means' span


def test_nc1_for_noise_along_the_means():
    C, n, delta = 4, 6, 0.2
    mu = etf(C, 12, np.random.default_rng(4))
    t = np.tile([delta, -delta], n // 2)
    X = np.concatenate([mu[c] * (1 + t)[:, None] for c in range(C)])
    y = np.repeat(np.arange(C), n)
    assert mt.nc1(X, y) == pytest.approx(delta**2 * (C - 1) / C, rel=1e-9)  # S_w = delta^2 S_b


def test_residual_ratio():
    rng = np.random.default_rng(5)
    X0 = rng.normal(size=(10, 4))
    assert mt.residual_ratio(X0, X0) == pytest.approx(1.0)
    assert mt.residual_ratio(2 * X0 + 7, X0) == pytest.approx(2.0)
    assert mt.residual_ratio(np.tile(X0[:1], (10, 1)), X0) == pytest.approx(0.0)


# --------------------------------------------------------------------------- invariance


def _all_statistics(A, y, inst, X, vis):
    beta, r2 = mt.fit_beta_eff(A, X, visible=vis)
    return np.array(
        [
            mt.same_class_mass(A, y, inst, vis),
            mt.same_class_chance(y, inst, vis),
            mt.self_mass(A),
            mt.positive_mass(A, y, inst, vis),
            mt.block_mass(A, y, inst, vis),
            mt.block_distance(A, y, vis),
            mt.block_distance(A, y, vis, mass=0.9),
            mt.effective_rank(A),
            mt.relative_spread(X, y),
            mt.class_mean_cosine(X, y),
            mt.nc1(X, y),
            mt.cdnv(X, y),
            mt.residual_ratio(X, X + 1.0),
            beta,
            r2,
        ]
    )


@st.composite
def batches(draw):
    C = draw(st.integers(2, 4))
    k = draw(st.integers(1, 3))
    y, inst = batch(C, k)
    M = len(y)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    vis = per_view_mask(M) if draw(st.booleans()) else np.ones((M, M), bool)
    X = rng.normal(size=(M, 6))
    A = softmax_rows(3 * mt.cosine_matrix(X) + rng.normal(size=(M, M)), vis)
    return A, y, inst, X, vis


@settings(deadline=None, max_examples=40)
@given(b=batches(), data=st.data())
def test_statistics_invariant_to_consistent_batch_permutation(b, data):
    A, y, inst, X, vis = b
    p = np.array(data.draw(st.permutations(range(len(y)))))
    ref = _all_statistics(A, y, inst, X, vis)
    got = _all_statistics(A[p][:, p], y[p], inst[p], X[p], vis[p][:, p])
    assert np.allclose(got, ref, rtol=1e-9, atol=1e-12)


@settings(deadline=None, max_examples=40)
@given(b=batches(), data=st.data())
def test_statistics_invariant_to_relabelling_classes(b, data):
    A, y, inst, X, vis = b
    C = int(y.max()) + 1
    names = np.array(data.draw(st.lists(st.integers(-50, 50), min_size=C, max_size=C, unique=True)))
    new_inst = np.array(data.draw(st.permutations(range(int(inst.max()) + 1))))[inst]  # rename samples too
    ref = _all_statistics(A, y, inst, X, vis)
    assert np.allclose(_all_statistics(A, names[y], new_inst, X, vis), ref, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- S4 prediction


@pytest.mark.parametrize("beta,r", [(2.0, 0.5), (10.0, 0.2), (30.0, 1.5)])
@pytest.mark.parametrize("scope", ["both", "per_view", "mask_pair"])
def test_s4_prediction_matches_attention_on_exact_cosines(beta, r, scope):
    """Tokens whose cosines are exactly S4's (1 self, s same class, rho*s across) give softmax
    attention whose measured masses equal the prediction."""
    C, k = 3, 4
    y, inst = batch(C, k)
    M = len(y)
    rng = np.random.default_rng(6)
    d = M + C + 4
    mu = etf(C, d, rng)
    P = np.eye(d) - mu.T @ np.linalg.pinv(mu.T)
    E, _ = np.linalg.qr(P @ rng.normal(size=(d, M)))  # orthonormal noise directions off the means
    X = mu[y] + r * E.T
    vis = {
        "both": np.ones((M, M), bool),
        "per_view": per_view_mask(M),
        "mask_pair": ~((inst[:, None] == inst[None, :]) & ~np.eye(M, dtype=bool)),
    }[scope]
    A = softmax_rows(beta * mt.cosine_matrix(X), vis)
    rho = -1.0 / (C - 1)
    pred = pr.predict_masses(r, beta, rho, y, inst, vis, centred=False)  # independent deviations
    assert pred["same_class_mass"] == pytest.approx(mt.same_class_mass(A, y, inst, vis), rel=1e-9)
    assert pred["block_mass"] == pytest.approx(mt.block_mass(A, y, inst, vis), rel=1e-9)
    assert pred["self_mass"] == pytest.approx(mt.self_mass(A), rel=1e-9)
    assert pred["positive_mass"] == pytest.approx(mt.positive_mass(A, y, inst, vis), abs=1e-12)


def test_s4_prediction_tends_to_m_star_and_broadcasts_over_heads():
    C, k = 4, 5
    y, inst = batch(C, k)
    betas = np.array([0.5, 3.0, 12.0])
    pred = pr.predict_masses(0.0, betas, -1.0 / (C - 1), y, inst)
    assert pred["block_mass"].shape == (3,)
    assert np.allclose(pred["block_mass"], pr.m_star(C, betas))


@pytest.mark.parametrize("backend", ["theory", "local"])
@pytest.mark.parametrize("centred", [True, False])
def test_s4_prediction_agrees_with_theory_block_mass(backend, centred, monkeypatch):
    fusion = pytest.importorskip("deepfusion.theory.fusion")
    monkeypatch.setattr(pr, "BACKEND", backend)
    C, k = 4, 6
    y, inst = batch(C, k)
    r, beta = np.array([0.1, 0.7, 2.0]), np.array([1.0, 6.0, 20.0])
    pred = pr.predict_masses(r, beta, -1.0 / (C - 1), y, inst, centred=centred)
    want = fusion.block_mass(C, 2 * k, beta, r, centred=centred)
    assert np.allclose(pred["block_mass"], want, rtol=1e-12)


def test_centred_spread_gives_the_mean_same_class_cosine():
    """With r measured around the batch's class means, the theory's centred s is exactly the mean
    same-class cosine (two classes mirrored so both have the same r_c)."""
    rng = np.random.default_rng(7)
    n = 9
    X1 = rng.normal(size=20) + 0.8 * rng.normal(size=(n, 20))
    X, y = np.concatenate([X1, -X1]), np.repeat([0, 1], n)
    same = (y[:, None] == y[None, :]) & ~np.eye(2 * n, dtype=bool)
    s_pred, _ = pr.cosines(mt.relative_spread(X, y), n, -1.0, centred=True)
    assert mt.cosine_matrix(X)[same].mean() == pytest.approx(s_pred, rel=1e-12)
