"""The public Python API, through ``deepfusion.<name>`` only.

Self-contained on purpose: ``scripts/check_wheel.sh`` copies this file out of the checkout and runs
it against the installed wheel, so it imports nothing from the repository but ``deepfusion``.
"""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import deepfusion
from deepfusion.errors import DeepFusionError

API = ("TransformerHead", "MLPHead", "FFNHead", "nt_xent", "capture_attention", "analyze_attention")


def small_head(in_dim=16, depth=3, heads=4):
    return deepfusion.TransformerHead(in_dim, dim=32, depth=depth, heads=heads, ffn_dim=64, out_dim=8)


@pytest.mark.parametrize("name", API)
def test_every_api_name_is_exported_and_documented(name):
    value = getattr(deepfusion, name)
    assert name in deepfusion.__all__ and name in dir(deepfusion)
    assert value.__doc__ and value.__doc__.strip()


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute"):
        deepfusion.NoSuchThing


def test_import_deepfusion_does_not_import_torch():
    code = "import sys, deepfusion; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_transformer_head_returns_one_row_stochastic_map_per_layer():
    torch.manual_seed(0)
    head = small_head(depth=3, heads=4).eval()
    x = torch.randn(12, 16)  # 2 views of 6 samples, view-major
    out, attention = head(x, return_attention=True)
    assert out.shape == (12, 8)
    assert len(attention) == 3 and all(a.shape == (4, 12, 12) for a in attention)
    for a in attention:
        torch.testing.assert_close(a.sum(-1), torch.ones(4, 12))
    torch.testing.assert_close(head(x), out)  # the fast path gives the same output


def test_paper_head_has_the_authors_sizes():
    head = deepfusion.TransformerHead.paper(512)
    assert (head.dim, head.depth, head.heads, head.out_dim) == (256, 10, 16, 512)


@pytest.mark.parametrize(
    "make",
    [
        lambda: deepfusion.MLPHead(16, 32, 8),
        lambda: deepfusion.MLPHead(16, 32, 8, False),
        lambda: deepfusion.FFNHead(16, dim=32, depth=2, out_dim=8),
    ],
)
def test_feed_forward_heads_share_the_interface_without_attention(make):
    out, attention = make().eval()(torch.randn(10, 16), return_attention=True)
    assert out.shape == (10, 8) and attention == []


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
@pytest.mark.parametrize("n", [2, 5])
def test_nt_xent_of_aligned_orthogonal_pairs_has_its_closed_form(n, temperature):
    z = torch.eye(n).repeat(2, 1)  # both views of sample i are e_i: positive cosine 1, negatives 0
    ids = torch.arange(n).repeat(2)
    expected = math.log(math.exp(1 / temperature) + 2 * n - 2) - 1 / temperature
    assert deepfusion.nt_xent(z, ids, temperature).item() == pytest.approx(expected, rel=1e-4, abs=1e-6)


class Wrapper(nn.Module):
    """A user's model: backbone and head behind a forward that takes two arguments."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(5, 16)
        self.projector = small_head()

    def forward(self, a, b):
        return self.projector(self.backbone(torch.cat([a, b])))


def test_capture_attention_equals_the_heads_own_maps():
    torch.manual_seed(1)
    model = Wrapper().eval()
    batches = [(torch.randn(6, 5), torch.randn(6, 5)) for _ in range(3)]
    attention = deepfusion.capture_attention(model, batches)
    assert attention.shape == (3, 3, 4, 12, 12) and attention.dtype == np.float32
    with torch.no_grad():
        _, maps = model.projector(model.backbone(torch.cat(batches[1])), return_attention=True)
    np.testing.assert_allclose(attention[1], torch.stack(maps).numpy(), rtol=1e-5, atol=1e-6)
    assert not model.projector._forward_pre_hooks  # nothing left on the model


def test_capture_attention_names_what_is_wrong():
    with pytest.raises(DeepFusionError, match="no deepfusion TransformerHead"):
        deepfusion.capture_attention(nn.Linear(4, 4), [torch.randn(3, 4)])
    two = nn.Sequential(small_head(), nn.Linear(8, 16), small_head())
    with pytest.raises(DeepFusionError, match="pass the one to read as head="):
        deepfusion.capture_attention(two, [torch.randn(6, 16)])
    model = nn.Sequential(nn.Linear(5, 16), small_head()).eval()
    with pytest.raises(DeepFusionError, match="same size"):
        deepfusion.capture_attention(model, [torch.randn(6, 5), torch.randn(8, 5)])
    with pytest.raises(DeepFusionError, match="no batches"):
        deepfusion.capture_attention(model, [])
    with pytest.raises(DeepFusionError, match="never called the head"):  # a head the model does not use
        deepfusion.capture_attention(model, [torch.randn(6, 5)], head=small_head())


def planted_attention(seeds, strength, B=3, L=3, H=2, C=4, n=4, seed=0):
    """Per seed: (B, L, H, M, M) attention whose same-class weight grows with depth by ``strength``,
    labels and instance ids (B, M), both views of C*n samples, view-major; new samples in every batch."""
    rng = np.random.default_rng(seed)
    M = 2 * C * n
    out = []
    for s in range(seeds):
        A = np.empty((B, L, H, M, M))
        ys, ids = [], []
        for b in range(B):
            y = np.tile(rng.permutation(np.repeat(np.arange(C), n)), 2)
            same = y[:, None] == y[None, :]
            for l in range(L):
                logits = rng.normal(0, 0.2, (H, M, M)) + strength * (l + 1) * same + 2.0 * np.eye(M)
                A[b, l] = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
            ys.append(y)
            ids.append(np.tile(np.arange(C * n), 2) + 1000 * (s * B + b))
        out.append((A, np.array(ys), np.array(ids)))
    return [a for a, _, _ in out], [y for _, y, _ in out], [i for _, _, i in out]


def test_analyze_attention_observes_a_planted_effect_over_six_seeds():
    attention, labels, instance = planted_attention(6, strength=0.6)
    untrained, _, _ = planted_attention(6, strength=0.0, seed=1)
    verdict = deepfusion.analyze_attention(attention, labels, instance, untrained=untrained)
    assert verdict.outcome == "observed", verdict.decided_by
    assert verdict.last_layer_ratio > 1.25 and len(verdict.layers) == 3
    assert verdict.layers[0] < verdict.layers[1] < verdict.layers[2]  # per-layer values rise with depth
    record = verdict.to_json()
    assert record["outcome"] == "observed" and record["last_layer_ratio"] == verdict.last_layer_ratio


def test_analyze_attention_does_not_observe_chance_attention():
    attention, labels, instance = planted_attention(6, strength=0.0)
    untrained, _, _ = planted_attention(6, strength=0.0, seed=1)
    verdict = deepfusion.analyze_attention(attention, labels, instance, untrained=untrained)
    assert verdict.outcome != "observed" and abs(verdict.last_layer_ratio - 1) < 0.1


def test_analyze_attention_with_one_seed_is_exploratory_and_bad_input_is_named():
    attention, labels, instance = planted_attention(1, strength=0.6)
    assert deepfusion.analyze_attention(attention, labels, instance).outcome == "exploratory"
    with pytest.raises(DeepFusionError):
        deepfusion.analyze_attention(attention, [labels[0][:, :-1]], instance)  # labels of the wrong length
