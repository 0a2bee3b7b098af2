"""Batch attention: scope masks, exact zeros where masked, rows summing to one, fast == explicit."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deepfusion.errors import ConfigError
from deepfusion.model.network.attention import BatchAttention, scope_mask
from deepfusion.model.network.registry import SCOPES


def _attention(scope, n, views, dim=16, heads=4, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    attn = BatchAttention(dim, heads, scope=scope, views=views).to(dtype).eval()
    x = torch.randn(n * views, dim, dtype=dtype)
    return attn, x


def test_scope_mask_by_hand():
    # n=2 instances, 2 views: tokens 0,1 (view 0) and 2,3 (view 1); positives 0<->2, 1<->3.
    assert scope_mask("both_views", 2, 2) is None
    per_view = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], dtype=torch.bool)
    mask_pair = torch.tensor([[1, 1, 0, 1], [1, 1, 1, 0], [0, 1, 1, 1], [1, 0, 1, 1]], dtype=torch.bool)
    assert torch.equal(scope_mask("per_view", 2, 2), per_view)
    assert torch.equal(scope_mask("mask_pair", 2, 2), mask_pair)


@settings(deadline=None, max_examples=15)
@given(st.data())
def test_mask_pair_hides_positive_views(data):
    n = data.draw(st.integers(2, 6), label="n")
    views = data.draw(st.integers(1, 3), label="views")
    attn, x = _attention("mask_pair", n, views, seed=data.draw(st.integers(0, 99)))
    _, w = attn(x, need_weights=True)  # (H, M, M)
    idx = torch.arange(n * views)
    positive = (idx[:, None] % n == idx[None, :] % n) & (idx[:, None] != idx[None, :])
    assert torch.all(w[:, positive] == 0)  # exactly zero, not just small
    assert torch.all(w[:, ~positive] > 0)  # everything else, self included, is seen
    assert torch.all(w.diagonal(dim1=1, dim2=2) > 0)


@settings(deadline=None, max_examples=15)
@given(st.data())
def test_per_view_weights_across_views_are_zero(data):
    n = data.draw(st.integers(2, 6), label="n")
    views = data.draw(st.integers(1, 3), label="views")
    attn, x = _attention("per_view", n, views, seed=data.draw(st.integers(0, 99)))
    _, w = attn(x, need_weights=True)
    view = torch.arange(n * views) // n
    same_view = view[:, None] == view[None, :]
    assert torch.all(w[:, ~same_view] == 0)
    assert torch.all(w[:, same_view] > 0)


def test_both_views_sees_every_token():
    attn, x = _attention("both_views", 5, 2)
    _, w = attn(x, need_weights=True)
    assert w.shape == (4, 10, 10)
    assert torch.all(w > 0)


@settings(deadline=None, max_examples=15)
@given(st.data())
def test_attention_rows_sum_to_one(data):
    scope = data.draw(st.sampled_from(SCOPES.names()), label="scope")
    n = data.draw(st.integers(2, 6), label="n")
    views = data.draw(st.integers(1, 3), label="views")
    attn, x = _attention(scope, n, views, seed=data.draw(st.integers(0, 99)))
    _, w = attn(x * data.draw(st.floats(0.1, 10.0), label="scale"), need_weights=True)
    torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:2], dtype=w.dtype), rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("scope", SCOPES.names())
@pytest.mark.parametrize("views", [1, 2, 3])
def test_fast_and_explicit_paths_agree(scope, views, dtype, tol):
    attn, x = _attention(scope, 7, views, dim=32, heads=8, dtype=dtype)
    fast = attn(x)
    explicit, _ = attn(x, need_weights=True)
    torch.testing.assert_close(fast, explicit, rtol=tol, atol=tol)


@pytest.mark.parametrize("scope", SCOPES.names())
def test_fast_and_explicit_gradients_agree(scope):
    attn, x = _attention(scope, 4, 2)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    g = torch.randn(8, 16, dtype=x.dtype)
    (attn(x1) * g).sum().backward()
    (attn(x2, need_weights=True)[0] * g).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-10, atol=1e-10)


def test_mask_is_cached_per_batch_size():
    attn, x = _attention("mask_pair", 4, 2)
    attn(x)
    first = attn.mask(8, x.device)
    assert attn.mask(8, x.device) is first
    assert attn.mask(6, x.device).shape == (6, 6)


def test_bad_scope_and_heads_raise_config_error():
    with pytest.raises(ConfigError) as info:
        BatchAttention(16, 4, scope="foo")
    assert all(n in str(info.value) for n in ("scope='foo'", "both_views", "per_view", "mask_pair")), str(info.value)
    with pytest.raises(ConfigError) as info:
        BatchAttention(16, 5)
    assert all(n in str(info.value) for n in ("heads=5", "dim=16")), str(info.value)
