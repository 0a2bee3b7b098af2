"""Capture and analysis on a tiny model, and the analysis pipeline on idealised fusion layers."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from deepfusion.errors import DataError, RunError
from deepfusion.model.runs import layout
from deepfusion.experiments import analyze
from deepfusion.experiments.capture import balanced_indices, capture
from deepfusion.experiments.verdict import NOT_OBSERVED, OBSERVED, RULE
from deepfusion.model.network.transformer_head import TransformerHead


class TinyModel(nn.Module):
    def __init__(self, in_dim, scope="both_views"):
        super().__init__()
        self.backbone = nn.Linear(in_dim, 12)
        self.head = TransformerHead(12, dim=16, depth=3, heads=2, ffn_dim=32, out_dim=8, scope=scope)

    def embed(self, x):
        return self.backbone(x)


class JitterAugment:
    def two_views(self, x, generator=None):
        x = x.float()
        noise = torch.randn((2,) + tuple(x.shape), generator=generator, device=x.device)
        return torch.cat([x + 0.1 * noise[0], x + 0.1 * noise[1]])

    def eval_view(self, x):
        return x.float()


def dataset(C=3, per=10, d=6, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(C), per)
    x = (rng.normal(size=(C, d))[y] + 0.3 * rng.normal(size=(C * per, d))).astype(np.float32)
    order = rng.permutation(len(y))
    return SimpleNamespace(x=x[order], y=y[order], num_classes=C)


def test_balanced_indices_are_balanced_and_seeded():
    y = np.repeat(np.arange(4), [5, 6, 7, 8])
    idx = balanced_indices(y, 3, seed=1)
    assert np.array_equal(y[idx], np.repeat(np.arange(4), 3))
    assert np.array_equal(idx, balanced_indices(y, 3, seed=1))
    with pytest.raises(DataError, match="fewer than per_class"):
        balanced_indices(y, 6, seed=0)


@pytest.mark.parametrize("scope", ["both_views", "per_view", "mask_pair"])
def test_capture_shapes_and_scope(scope):
    torch.manual_seed(0)
    model, ds = TinyModel(6, scope), dataset()
    cap = capture(model, JitterAugment(), ds, per_class=4, seed=3, device="cpu")
    M = 2 * 3 * 4
    assert cap["attention"].shape == (3, 2, M, M) and cap["tokens"].shape == (4, M, 16)
    assert np.allclose(cap["attention"].sum(-1), 1.0, atol=1e-5)
    assert np.all(cap["attention"][..., ~cap["visible"]] == 0)
    assert np.array_equal(cap["labels"][: M // 2], cap["labels"][M // 2:])
    assert np.array_equal(cap["inst"], np.arange(M) % (M // 2))
    again = capture(model, JitterAugment(), ds, per_class=4, seed=3, device="cpu")
    assert np.array_equal(cap["attention"], again["attention"])  # fixed batch and augmentation


def test_capture_needs_an_attention_head():
    model = SimpleNamespace(head=nn.Linear(3, 3))
    with pytest.raises(RunError, match="transformer"):
        capture(model, JitterAugment(), dataset(), 2, 0)


def test_analyze_model_record_is_complete_json():
    torch.manual_seed(0)
    record, cap = analyze.analyze_model(TinyModel(6), JitterAugment(), dataset(), batches=2, per_class=3,
                                        n_boot=200)
    back = json.loads(json.dumps(layout._clean(record)))
    assert back["rule"] == RULE and back["verdict"] in (OBSERVED, NOT_OBSERVED)
    assert len(back["layers"]) == 3 and back["num_classes"] == 3
    layer = back["layers"][0]
    for key in analyze.HEAD_STATS:
        assert len(layer[key]) == 2
    assert layer["chance"] == pytest.approx((2 * 3 - 2) / 18)
    assert layer["excess_ci"][0] <= layer["excess_mean"] <= layer["excess_ci"][1]


def test_analyze_run_writes_files_the_figures_read(tmp_path, monkeypatch):
    torch.manual_seed(0)
    ds = dataset()
    loaded = SimpleNamespace(model=TinyModel(6), augment=JitterAugment(), train_ds=ds, test_ds=ds)
    monkeypatch.setattr("deepfusion.model.runs.loading.load_run", lambda run_dir, device="cpu": loaded)
    analyze.analyze_run(tmp_path, batches=2, per_class=3, n_boot=200)
    assert json.loads((tmp_path / "analysis.json").read_text())["rule"] == RULE
    with np.load(tmp_path / "attention.npz") as f:
        assert f["attention"].shape == (3, 2, 18, 18) and f["labels"].shape == (18,)
    io = pytest.importorskip("deepfusion.paper_figures.analysis_io")
    stats = io.load_layer_stats(tmp_path)
    assert stats.mass.shape == (3, 2) and np.all(np.isfinite(stats.predicted))


def idealised_capture(C=4, k=16, d=512, beta=8.0, alpha=1.0, r0=1.0, layers=5, seed=0):
    """Tokens and attention of S5's idealised layers: softmax(beta * cos), residual, unit sphere."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(d, C)))
    mu = ((np.eye(C) - 1.0 / C) * np.sqrt(C / (C - 1))) @ Q.T
    N = C * k
    y = np.tile(np.repeat(np.arange(C), k), 2)
    x = mu[y] + r0 * rng.normal(size=(2 * N, d)) / np.sqrt(d)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    tokens, attention = [x], []
    for _ in range(layers):
        s = beta * x @ x.T
        A = np.exp(s - s.max(1, keepdims=True))
        A /= A.sum(1, keepdims=True)
        x = x + alpha * A @ x
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        attention.append(A[None])
        tokens.append(x)
    return {"attention": np.stack(attention), "tokens": np.stack(tokens), "labels": y,
            "inst": np.arange(2 * N) % N, "visible": np.ones((2 * N, 2 * N), bool)}


def test_idealised_fusion_is_observed_and_predicted_by_s4():
    stats = [analyze.batch_statistics(idealised_capture(seed=s)) for s in range(3)]
    record = analyze.summarise(stats, n_boot=500)
    assert record["verdict"] == OBSERVED
    excess = [layer["excess_mean"] for layer in record["layers"]]
    assert np.all(np.diff(excess) > 0)
    beta = np.array([layer["beta_eff"][0] for layer in record["layers"]])
    assert np.allclose(beta, 8.0, rtol=1e-6)  # the layers really are softmax(8 cos)
    gap = np.abs(record["verdict_record"]["gap_measured_minus_predicted"])
    assert gap.max() < 0.01, gap  # S4 (centred cosines) on d = 512 tokens


def test_attention_ignoring_classes_is_not_observed():
    cap = idealised_capture(beta=0.0)  # uniform attention at every layer
    record = analyze.summarise([analyze.batch_statistics(cap)] * 2, n_boot=200)
    assert record["verdict"] == NOT_OBSERVED
    assert np.allclose([layer["excess_mean"] for layer in record["layers"]], 0.0, atol=1e-12)
