"""Analysis batches, capture on a tiny model, records, and the pipeline on idealised fusion layers."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from deepfusion.errors import DataError, RunError
from deepfusion.experiments import analyze
from deepfusion.experiments.capture import capture, disjoint_batches, fit_per_class
from deepfusion.experiments.record import RunAnalysis
from deepfusion.experiments.verdict import EXPLORATORY, RULE
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
    return SimpleNamespace(x=x[order], y=y[order], num_classes=C, input_shape=(d,))


def test_disjoint_batches_are_balanced_disjoint_and_seeded():
    y = np.repeat(np.arange(4), [7, 9, 8, 12])
    batches = disjoint_batches(y, 3, 2, seed=1)
    assert all(np.array_equal(y[b], np.repeat(np.arange(4), 2)) for b in batches)
    flat = np.concatenate(batches)
    assert len(set(flat.tolist())) == len(flat)  # no sample in two batches
    assert all(np.array_equal(a, b) for a, b in zip(batches, disjoint_batches(y, 3, 2, seed=1)))
    assert fit_per_class(y, 3) == 2 and fit_per_class(y, 1) == 7


def test_too_small_split_names_the_smallest_class_and_values_that_fit():
    y = np.repeat(np.arange(3), [20, 9, 15])
    with pytest.raises(
        DataError, match=r"class 1 has 9.*--per-class 1 with --batches 5, or --batches 2 with --per-class 4"
    ):
        disjoint_batches(y, 5, 4, seed=0)
    disjoint_batches(y, 2, 4, seed=0)  # the suggestion fits
    disjoint_batches(y, 5, 1, seed=0)


@pytest.mark.parametrize("scope", ["both_views", "per_view", "mask_pair"])
def test_capture_shapes_and_scope(scope):
    torch.manual_seed(0)
    model, ds = TinyModel(6, scope), dataset()
    idx = disjoint_batches(ds.y, 2, 4, seed=3)[0]
    cap = capture(model, JitterAugment(), ds, idx, seed=3, device="cpu")
    M = 2 * 3 * 4
    assert cap["attention"].shape == (3, 2, M, M) and cap["tokens"].shape == (4, M, 16)
    assert np.allclose(cap["attention"].sum(-1), 1.0, atol=1e-5)
    assert np.all(cap["attention"][..., ~cap["visible"]] == 0)
    assert np.array_equal(cap["labels"][: M // 2], cap["labels"][M // 2 :])
    assert np.array_equal(cap["inst"], np.arange(M) % (M // 2))
    again = capture(model, JitterAugment(), ds, idx, seed=3, device="cpu")
    assert np.array_equal(cap["attention"], again["attention"])  # fixed batch and augmentation


def test_capture_needs_a_head_with_a_trace():
    model = SimpleNamespace(head=nn.Linear(3, 3))
    with pytest.raises(RunError, match="transformer"):
        capture(model, JitterAugment(), dataset(), np.arange(3), 0)


def test_analyze_model_record_round_trips_through_json():
    torch.manual_seed(0)
    untrained = TinyModel(6).head
    record, arrays = analyze.analyze_model(TinyModel(6), JitterAugment(), dataset(), untrained, batches=2, per_class=3)
    back = RunAnalysis.from_json(json.loads(json.dumps(record.to_json())))
    assert back == record
    assert back.verdict.rule == RULE and back.verdict.seeds == 1
    assert back.num_layers == 3 and back.num_classes == 3 and np.asarray(back.mass).shape == (2, 3, 2)
    assert arrays["attention"].shape == (2, 3, 2, 18, 18) and arrays["instance"].shape == (2, 18)
    assert back.verdict.outcome == "exploratory" and back.verdict.permutation_null.n_perm == 200
    assert back.layers[0].chance == pytest.approx((2 * 3 - 2) / 18)


def test_record_of_another_version_is_refused_with_what_to_do():
    with pytest.raises(DataError, match="record version 1.*analyze --force"):
        RunAnalysis.from_json({"version": 1, "layers": []})


def test_analyze_run_writes_reuses_and_refuses_to_overwrite(tmp_path, monkeypatch):
    torch.manual_seed(0)
    ds = dataset()
    from deepfusion.model.runs.config import load_config

    cfg = load_config("synthetic", ["model.depth=3", "model.heads=2", "model.dim=16"])
    loaded = SimpleNamespace(
        model=TinyModel(6), augment=JitterAugment(), train_ds=ds, test_ds=ds, cfg=cfg, step=7, finished=True
    )
    monkeypatch.setattr(analyze, "load_run", lambda run_dir, device="cpu": loaded)
    monkeypatch.setattr(analyze, "untrained_head", lambda cfg, shape: TinyModel(6).head)
    first = analyze.analyze_run(tmp_path, batches=2, per_class=3)
    assert json.loads((tmp_path / "analysis.json").read_text())["step"] == 7
    with np.load(tmp_path / "attention.npz") as f:
        assert f["attention"].shape == (2, 3, 2, 18, 18) and f["labels"].shape == (2, 18)
        assert f["untrained"].shape == f["attention"].shape and f["visible"].shape == (18, 18)
    before = (tmp_path / "analysis.json").read_text()
    assert analyze.analyze_run(tmp_path, batches=2, per_class=3) == first  # same settings: reused
    with pytest.raises(RunError, match="other settings.*--force"):
        analyze.analyze_run(tmp_path, batches=3, per_class=3)
    assert (tmp_path / "analysis.json").read_text() == before  # nothing overwritten
    assert analyze.analyze_run(tmp_path, batches=3, per_class=3, force=True).settings.batches == 3


def test_each_training_seed_draws_its_own_batches():
    drawn = {analyze.batch_seed(0, t) for t in range(5)}
    assert len(drawn) == 5 and analyze.batch_seed(0, 3) == analyze.batch_seed(0, 3)
    y = np.repeat(np.arange(4), 20)
    a = disjoint_batches(y, 2, 3, analyze.batch_seed(0, 1))
    b = disjoint_batches(y, 2, 3, analyze.batch_seed(0, 2))
    assert not all(np.array_equal(x, z) for x, z in zip(a, b))


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
    return {
        "attention": np.stack(attention),
        "tokens": np.stack(tokens),
        "labels": y,
        "inst": np.arange(2 * N) % N,
        "visible": np.ones((2 * N, 2 * N), bool),
    }


def uniform(cap):
    M = cap["attention"].shape[-1]
    return np.full(cap["attention"].shape, 1.0 / M)


def test_idealised_fusion_is_observed_and_predicted_by_s4():
    caps = [idealised_capture(seed=s) for s in range(3)]
    record = analyze.record_from_batches(caps, [uniform(c) for c in caps])
    assert record.verdict.outcome == EXPLORATORY  # one seed never decides
    assert np.all(np.diff(record.verdict.layers) > 0) and record.verdict.permutation_null.effect_p < 0.01
    beta = record.layer_values("beta_eff")[:, 0]
    assert np.allclose(beta, 8.0, rtol=1e-6)  # the layers really are softmax(8 cos)
    gap = record.layer_values("same_class_mass")[:, 0] - record.layer_values("predicted_same_class_mass")[:, 0]
    assert np.abs(gap).max() < 0.01, gap  # S4 (centred cosines) on d = 512 tokens


def test_attention_ignoring_classes_is_not_observed():
    caps = [idealised_capture(beta=0.0, seed=s) for s in range(2)]  # uniform attention at every layer
    record = analyze.record_from_batches(caps, [uniform(c) for c in caps])
    assert record.verdict.outcome == EXPLORATORY
    assert np.allclose(record.verdict.layers, 1.0, atol=1e-12)
