"""Offline evaluation: weighted kNN, linear probe, head LOO 1-NN and the evaluate_model contract."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from deepfusion.errors import ConfigError, DataError
from deepfusion.model.runs.eval_result import SCORES, EvalResult
from deepfusion.model.runs.evaluate import evaluate_model
from deepfusion.model.runs.head_probes import head_batches, loo_1nn_head_accuracy, reinitialise_
from deepfusion.model.runs.probes import extract_features, knn_accuracy, linear_probe, stratified_subset


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: thread start-up costs more than the work on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def clusters(n_per_class=50, classes=4, dim=16, spread=0.05, seed=0):
    """Tight clusters around orthogonal directions: separable by cosine and linearly."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.eye(dim)[:classes] * 3
    y = torch.arange(classes).repeat_interleave(n_per_class)
    x = centres[y] + spread * torch.randn(len(y), dim, generator=g)
    return x, y


def naive_knn(train, train_y, test, test_y, k, t, c):
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    test = test / np.linalg.norm(test, axis=1, keepdims=True)
    correct = 0
    for q, label in zip(test, test_y):
        sims = train @ q
        order = np.argsort(-sims)[:k]
        votes = np.zeros(c)
        for j in order:
            votes[train_y[j]] += math.exp(sims[j] / t)
        correct += int(np.argmax(votes) == label)
    return correct / len(test)


# --- kNN -------------------------------------------------------------------------------------------


def test_knn_separable_clusters_is_perfect():
    xtr, ytr = clusters(seed=0)
    xte, yte = clusters(seed=1)
    assert knn_accuracy(xtr, ytr, xte, yte, k=20, t=0.1) == 1.0


def test_knn_shuffled_labels_is_near_chance():
    xtr, ytr = clusters(n_per_class=300, seed=0)
    xte, yte = clusters(n_per_class=300, seed=1)
    g = torch.Generator().manual_seed(3)
    acc = knn_accuracy(xtr, ytr[torch.randperm(len(ytr), generator=g)], xte, yte, k=20, t=0.1)
    assert abs(acc - 0.25) < 0.06


def test_knn_k_larger_than_train_set_clamps():
    xtr, ytr = clusters(n_per_class=5, seed=0)
    xte, yte = clusters(n_per_class=5, seed=1)
    assert knn_accuracy(xtr, ytr, xte, yte, k=10_000, t=0.5) == knn_accuracy(xtr, ytr, xte, yte, k=len(ytr), t=0.5)


@pytest.mark.parametrize("k,t,chunk", [(1, 0.1, None), (7, 0.07, 3), (25, 0.5, 11), (200, 1.0, None)])
def test_knn_matches_naive_weighted_vote(k, t, chunk):
    rng = np.random.default_rng(k)
    c = 5
    tr, te = rng.normal(size=(120, 8)), rng.normal(size=(40, 8))
    ytr, yte = rng.integers(0, c, 120), rng.integers(0, c, 40)
    got = knn_accuracy(
        torch.tensor(tr, dtype=torch.float32),
        torch.tensor(ytr),
        torch.tensor(te, dtype=torch.float32),
        torch.tensor(yte),
        k=k,
        t=t,
        num_classes=c,
        chunk=chunk,
    )
    assert got == pytest.approx(naive_knn(tr, ytr, te, yte, min(k, 120), t, c))


def test_knn_rejects_bad_settings():
    x, y = clusters()
    with pytest.raises(ConfigError, match="knn_k"):
        knn_accuracy(x, y, x, y, k=0)
    with pytest.raises(ConfigError, match="knn_t"):
        knn_accuracy(x, y, x, y, t=0.0)
    with pytest.raises(DataError, match="same N"):
        knn_accuracy(x, y[:-1], x, y)


# --- linear probe ----------------------------------------------------------------------------------


def test_probe_separable_data_reaches_one():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(20, 3, generator=g)
    x = torch.randn(600, 20, generator=g)
    logits = x @ w
    keep = logits.topk(2, dim=1).values.diff(dim=1).abs().flatten() > 0.5  # a margin: linearly separable
    x, y = x[keep], logits[keep].argmax(1)
    acc = linear_probe(x[:300], y[:300], x[300:], y[300:], num_classes=3, epochs=100, weight_decay=1e-5)
    assert acc >= 0.98


def test_probe_random_labels_is_near_chance():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1200, 16, generator=g)
    y = torch.randint(0, 4, (1200,), generator=g)
    acc = linear_probe(x[:600], y[:600], x[600:], y[600:], num_classes=4, epochs=50)
    assert abs(acc - 0.25) < 0.07


def test_probe_fraction_fits_on_fewer_samples_and_still_works():
    xtr, ytr = clusters(n_per_class=100, seed=0)
    xte, yte = clusters(n_per_class=20, seed=1)
    assert linear_probe(xtr, ytr, xte, yte, epochs=30, fraction=0.1, seed=4) == 1.0


def test_probe_rejects_zero_epochs():
    x, y = clusters()
    with pytest.raises(ConfigError, match="linear_epochs"):
        linear_probe(x, y, x, y, epochs=0)


def test_stratified_subset_keeps_class_proportions():
    y = torch.tensor([0] * 100 + [1] * 40 + [2] * 7)
    idx = stratified_subset(y, 0.1, seed=0)
    counts = torch.bincount(y[idx], minlength=3).tolist()
    assert counts == [10, 4, 1]  # round(0.1 * n_c), at least one per class
    assert torch.equal(idx, idx.sort().values) and len(set(idx.tolist())) == len(idx)
    assert torch.equal(idx, stratified_subset(y, 0.1, seed=0))
    assert not torch.equal(idx, stratified_subset(y, 0.1, seed=1))
    assert torch.equal(stratified_subset(y, 1.0, seed=0), torch.arange(len(y)))
    with pytest.raises(ConfigError, match="linear_fraction"):
        stratified_subset(y, 0.0, seed=0)


# --- head LOO 1-NN ---------------------------------------------------------------------------------


def naive_loo(z, y):
    correct = 0
    for i in range(len(z)):
        best, best_j = -2.0, None
        for j in range(len(z)):
            if j != i:
                cos = float(z[i] @ z[j] / (np.linalg.norm(z[i]) * np.linalg.norm(z[j])))
                if cos > best:
                    best, best_j = cos, j
        correct += int(y[best_j] == y[i])
    return correct


def test_loo_1nn_matches_naive_reference():
    rng = np.random.default_rng(0)
    zs = [rng.normal(size=(n, 6)) for n in (17, 9, 30)]
    ys = [rng.integers(0, 3, len(z)) for z in zs]
    expected = sum(naive_loo(z, y) for z, y in zip(zs, ys)) / sum(len(y) for y in ys)
    got = loo_1nn_head_accuracy([torch.tensor(z, dtype=torch.float32) for z in zs], [torch.tensor(y) for y in ys])
    assert got == pytest.approx(expected)


def test_loo_1nn_never_uses_the_sample_itself():
    z = torch.randn(10, 4)
    y = torch.arange(10)  # every label unique: only a self-match could be right
    assert loo_1nn_head_accuracy([z], [y]) == 0.0


def test_head_batches_use_every_sample_in_near_equal_batches():
    batches = head_batches(103, 25, seed=0)
    assert [len(b) for b in batches] == [26, 26, 26, 25]
    assert sorted(torch.cat(batches).tolist()) == list(range(103))
    assert [len(b) for b in head_batches(359, 256, seed=0)] == [359]
    assert [len(b) for b in head_batches(10, 25, seed=0)] == [10]
    assert all(torch.equal(a, b) for a, b in zip(batches, head_batches(103, 25, seed=0)))


# --- features and evaluate_model -------------------------------------------------------------------


class Augment(nn.Module):
    def eval_view(self, x):
        return x.float()


class TinyModel(nn.Module):
    """Stand-in for SimCLRModel: ``backbone``, ``head`` and ``embed``."""

    def __init__(self, d_in=16, d=12):
        super().__init__()
        from deepfusion.model.network.heads import build_head

        self.backbone = nn.Sequential(nn.Linear(d_in, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, d))
        self.head = build_head("transformer", d, dim=16, depth=1, heads=2, ffn_dim=16, out_dim=8)

    def embed(self, x):
        return self.backbone(x)


def tiny_datasets():
    from deepfusion.model.data.base import ArrayDataset

    xtr, ytr = clusters(n_per_class=40, classes=3, seed=0)
    xte, yte = clusters(n_per_class=15, classes=3, seed=1)
    make = lambda x, y: ArrayDataset(x, y, 3, "vector", (16,), name="tiny")  # noqa: E731
    return make(xtr, ytr), make(xte, yte)


class EvalCfg:
    knn_k, knn_t, linear_epochs, linear_fraction, head_batch = 10, 0.1, 20, 0.5, 16


def test_extract_features_batches_in_eval_mode_and_restores_mode():
    model = TinyModel().train()
    x = torch.randn(50, 16)
    feats = extract_features(model.embed, x, batch_size=7)
    assert model.training and feats.shape == (50, 12) and not feats.requires_grad
    assert torch.allclose(feats, model.eval().embed(x), atol=1e-6)


def test_evaluate_model_returns_every_key_in_range():
    torch.manual_seed(0)
    model, (train_ds, test_ds) = TinyModel(), tiny_datasets()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng_before = torch.get_rng_state()
    out = evaluate_model(model.train(), Augment(), train_ds, test_ds, EvalCfg, "cpu", seed=5)
    assert out.measured() == list(SCORES)  # every accuracy, each with its interval
    for key in SCORES:
        low, high = out.interval_of(key)
        assert 0.0 <= low <= out.score(key) <= high <= 1.0, key
    assert out.knn_k == 10 and out.head_batch == 16 and (out.head_batches, out.head_batch_min) == (3, 15)
    assert out.linear_fraction == 0.5 and "offline" in out.protocol and "not the best" in out.protocol
    assert out.linear_protocol == (
        "L-BFGS, 20 iterations, on a class-stratified 50% of the training split, for trained and random alike"
    )
    assert EvalResult.from_json(json.loads(json.dumps(out.to_json()))) == out  # JSON-ready
    assert model.training  # mode restored
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # weights untouched
    assert torch.equal(rng_before, torch.get_rng_state())  # random baseline uses its own seeded stream


def test_evaluate_model_without_probe_epochs_reports_none():
    model, (train_ds, test_ds) = TinyModel(), tiny_datasets()

    class NoProbe(EvalCfg):
        linear_epochs = 0

    out = evaluate_model(model, Augment(), train_ds, test_ds, NoProbe, "cpu", seed=0)
    assert out.linear is None and out.random_linear is None and 0 <= out.knn <= 1


def test_reinitialise_is_seeded_and_changes_weights():
    a, b = TinyModel().backbone, TinyModel().backbone
    w = a[0].weight.clone()
    reinitialise_(a, 3)
    reinitialise_(b, 3)
    assert not torch.equal(w, a[0].weight)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_head_knn_is_the_knn_of_head_outputs():
    """With a head that passes its input through, head_knn equals the kNN of the features themselves;
    a head that scrambles the classes drops it."""
    from types import SimpleNamespace

    from deepfusion.model.runs.head_probes import head_knn

    torch.manual_seed(0)
    y_tr, y_te = torch.arange(60) % 3, torch.arange(30) % 3
    means = torch.randn(3, 8) * 3
    tr, te = means[y_tr] + torch.randn(60, 8), means[y_te] + torch.randn(30, 8)
    cfg = SimpleNamespace(head_batch=16, knn_k=5, knn_t=0.1)

    class PassThrough(torch.nn.Module):
        views = 2

        def forward(self, x):
            return x

    model = SimpleNamespace(head=PassThrough())
    assert head_knn(model, tr, y_tr, te, y_te, cfg, 0, 3) == pytest.approx(knn_accuracy(tr, y_tr, te, y_te, 5, 0.1, 3))
    model.head.forward = lambda x: torch.randn(len(x), 8)
    assert head_knn(model, tr, y_tr, te, y_te, cfg, 0, 3) < 0.6


def test_untrained_head_gets_its_batchnorm_statistics_from_the_data():
    """A deep BatchNorm head at initialisation, evaluated with BatchNorm's initial statistics, maps
    everything to nearly one point; with the statistics estimated on the training features it keeps
    the classes apart, as the untrained baseline should."""
    from types import SimpleNamespace

    from deepfusion.model.network.mlp_heads import FFNHead
    from deepfusion.model.runs.head_probes import calibrate_batchnorm_, head_batches, head_knn

    torch.manual_seed(0)
    y_tr, y_te = torch.arange(300) % 3, torch.arange(90) % 3
    means = torch.randn(3, 8) * 4 + 20  # far from zero: the initial statistics (0, 1) are wrong here
    tr, te = means[y_tr] + torch.randn(300, 8), means[y_te] + torch.randn(90, 8)
    cfg = SimpleNamespace(head_batch=30, knn_k=5, knn_t=0.1)
    model = SimpleNamespace(head=FFNHead(8, dim=16, depth=10, out_dim=8).eval())
    model.head.views = 2
    before = head_knn(model, tr, y_tr, te, y_te, cfg, 0, 3)
    calibrate_batchnorm_(model, tr, head_batches(300, 30, 1))
    after = head_knn(model, tr, y_tr, te, y_te, cfg, 0, 3)
    assert not model.head.training and after > before + 0.1, (before, after)
