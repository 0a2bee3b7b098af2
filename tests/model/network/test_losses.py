"""NT-Xent: closed form, a naive reference, symmetry, SimCLR == SupCon with instance ids, bad inputs."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from deepfusion.errors import DataError
from deepfusion.model.network.losses import nt_xent


def naive_nt_xent(z, indexes, t):
    """Double loop over anchors and positives, straight from the definition, in float64."""
    z = F.normalize(z.double(), dim=1).tolist()
    idx = indexes.tolist()
    m = len(z)
    sim = [[sum(a * b for a, b in zip(z[i], z[j])) / t for j in range(m)] for i in range(m)]
    losses = []
    for i in range(m):
        positives = [j for j in range(m) if j != i and idx[j] == idx[i]]
        if not positives:
            continue
        lse = math.log(sum(math.exp(sim[i][k]) for k in range(m) if k != i))
        losses.append(-sum(sim[i][p] - lse for p in positives) / len(positives))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("t", [0.02, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("n,views", [(2, 2), (5, 2), (8, 3), (4, 1 + 3)])
def test_closed_form_on_perfectly_aligned_embeddings(n, views, t):
    # Views of one instance coincide (cosine 1), instances are orthonormal (cosine 0). Each anchor has
    # V-1 positives with logit 1/t and V(N-1) negatives with logit 0, so
    #   loss = -1/t + log((V-1) e^{1/t} + V(N-1)) = log(V-1 + V(N-1) e^{-1/t}).
    z = torch.eye(n, 2 * n)[torch.arange(n).repeat(views)] * 3.0  # norms do not matter
    expected = math.log(views - 1 + views * (n - 1) * math.exp(-1 / t))
    got = nt_xent(z, torch.arange(n).repeat(views), t)
    assert got.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("t", [0.05, 0.2, 1.0, 3.0])
@pytest.mark.parametrize("m,d,classes", [(4, 3, 2), (10, 5, 3), (16, 8, 8), (9, 2, 4)])
def test_matches_naive_reference(m, d, classes, t):
    g = torch.Generator().manual_seed(m * 100 + d)
    z = torch.randn(m, d, generator=g)
    labels = torch.arange(m) % classes
    labels = labels[torch.randperm(m, generator=g)]
    assert nt_xent(z, labels, t).item() == pytest.approx(naive_nt_xent(z, labels, t), rel=1e-5, abs=1e-6)


@settings(deadline=None, max_examples=30)
@given(st.data())
def test_matches_naive_reference_on_random_labels(data):
    m = data.draw(st.integers(2, 10), label="m")
    labels = torch.tensor(data.draw(st.lists(st.integers(0, 3), min_size=m, max_size=m), label="labels"))
    if torch.bincount(labels).max() < 2:  # no positives at all: covered by the error test
        labels[1] = labels[0]
    t = data.draw(st.floats(0.05, 2.0), label="t")
    z = torch.randn(m, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(data.draw(st.integers(0, 999))))
    assert nt_xent(z, labels, t).item() == pytest.approx(naive_nt_xent(z, labels, t), rel=1e-5, abs=1e-6)


def test_symmetric_under_swapping_the_views():
    z = torch.randn(16, 6)
    ids = torch.arange(8).repeat(2)
    swapped = torch.cat([z[8:], z[:8]])
    torch.testing.assert_close(nt_xent(swapped, ids, 0.2), nt_xent(z, ids, 0.2))


def test_supcon_with_instance_ids_equals_simclr_cross_entropy():
    # SimCLR written the usual way: cross-entropy over the other 2N-1 samples with the partner as target.
    n, t = 6, 0.3
    z = torch.randn(2 * n, 5, dtype=torch.float64)
    zn = F.normalize(z, dim=1)
    logits = (zn @ zn.T / t).masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    simclr = F.cross_entropy(logits, target)
    torch.testing.assert_close(nt_xent(z, torch.arange(n).repeat(2), t), simclr.float())


def test_anchors_without_positives_are_left_out_of_the_mean():
    z = torch.randn(5, 3)
    labels = torch.tensor([0, 0, 1, 2, 3])  # only anchors 0 and 1 have a positive
    assert nt_xent(z, labels, 0.5).item() == pytest.approx(naive_nt_xent(z, labels, 0.5), rel=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_are_stable(dtype):
    z = torch.randn(64, 16)
    ids = torch.arange(32).repeat(2)
    ref = nt_xent(z, ids, 0.02)
    zh = z.to(dtype).requires_grad_()
    loss = nt_xent(zh, ids, 0.02)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(zh.grad).all()
    assert loss.item() == pytest.approx(ref.item(), rel=2e-2)


def test_gradient_is_finite_at_low_temperature_and_perfect_alignment():
    z = torch.eye(4, 8)[torch.arange(4).repeat(2)].requires_grad_()
    nt_xent(z, torch.arange(4).repeat(2), 0.01).backward()
    assert torch.isfinite(z.grad).all()


@pytest.mark.parametrize("t", [0, -0.5, float("nan"), float("inf")])
def test_non_positive_temperature_raises(t):
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]), t)


@pytest.mark.parametrize(
    "z,idx,match",
    [
        (torch.randn(4), torch.tensor([0, 1, 0, 1]), r"shape \(M, d\), got shape \(4,\)"),
        (torch.randn(4, 3), torch.tensor([0, 1, 0]), r"indexes of shape \(4,\)"),
        (torch.randn(4, 3), torch.tensor([0.0, 1.0, 0.0, 1.0]), "must be integers"),
        (torch.randn(4, 3), torch.arange(4), "no anchor has a positive"),
    ],
)
def test_bad_inputs_raise(z, idx, match):
    with pytest.raises(DataError, match=match):
        nt_xent(z, idx, 0.5)
