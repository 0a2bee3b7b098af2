"""Transformer head: contract, equivariance over the batch, fast == explicit, trace, input checks."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deepfusion.errors import ConfigError, DataError
from deepfusion.model.network.forward_options import forward_options
from deepfusion.model.network.registry import SCOPES
from deepfusion.model.network.transformer_head import BiasFreeBatchNorm1d, TransformerHead

IN = 12


def _head(scope="both_views", norm="post", views=2, out_bn=True, depth=2, seed=0, **kw):
    torch.manual_seed(seed)
    return TransformerHead(
        IN,
        dim=16,
        depth=depth,
        heads=4,
        ffn_dim=32,
        out_dim=8,
        norm=norm,
        scope=scope,
        views=views,
        out_bn=out_bn,
        **kw,
    ).double()


def _x(m, seed=1):
    return torch.randn(m, IN, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("out_bn", [True, False])
@pytest.mark.parametrize("norm", ["post", "pre"])
@pytest.mark.parametrize("scope", SCOPES.names())
def test_contract_shape_finite_and_every_parameter_gets_a_gradient(scope, norm, out_bn):
    head = _head(scope, norm, out_bn=out_bn).train()
    out = head(_x(10))
    assert out.shape == (10, 8)
    assert torch.isfinite(out).all()
    (out * torch.randn_like(out)).sum().backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("norm", ["post", "pre"])
@pytest.mark.parametrize("scope", SCOPES.names())
@pytest.mark.parametrize("train", [True, False])
def test_fast_and_explicit_paths_agree(scope, norm, train):
    head = _head(scope, norm, depth=3).train(train)
    x = _x(12)
    fast = head(x)
    out, attn = head(x, return_attention=True)
    torch.testing.assert_close(fast, out, rtol=1e-10, atol=1e-10)
    assert len(attn) == 3 and all(a.shape == (4, 12, 12) for a in attn)


def test_float32_paths_agree():
    torch.manual_seed(0)
    head = TransformerHead(IN, dim=32, depth=3, heads=8, ffn_dim=64, out_dim=16, scope="mask_pair").eval()
    x = torch.randn(20, IN)
    torch.testing.assert_close(head(x), head(x, return_attention=True)[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_trace_tokens_are_block_inputs(norm):
    head = _head("per_view", norm, depth=3).eval()
    x = _x(8)
    tr = head.trace(x)
    assert len(tr["tokens"]) == 4 and len(tr["attention"]) == 3
    assert all(t.shape == (8, 16) for t in tr["tokens"])
    torch.testing.assert_close(tr["tokens"][0], head.inp(x))
    for block, t_in, t_out in zip(head.blocks, tr["tokens"][:-1], tr["tokens"][1:]):
        torch.testing.assert_close(block(t_in)[0], t_out)
    torch.testing.assert_close(tr["out"], head(x))


def _apply_instance_perm(y, perm, views):
    n = len(perm)
    idx = torch.cat([v * n + perm for v in range(views)])  # same instance order in every view
    return y[idx]


@settings(deadline=None, max_examples=12)
@given(st.data())
def test_head_is_equivariant_to_instance_permutations(data):
    # Permuting instances consistently in all views permutes the outputs the same way, for every scope.
    # BatchNorm keeps this in train mode too: batch mean and variance do not depend on the order.
    scope = data.draw(st.sampled_from(SCOPES.names()), label="scope")
    norm = data.draw(st.sampled_from(["post", "pre"]), label="norm")
    views = data.draw(st.integers(1, 3), label="views")
    n = data.draw(st.integers(2, 6), label="n")
    train = data.draw(st.booleans(), label="train")
    perm = torch.tensor(data.draw(st.permutations(range(n)), label="perm"))
    head = _head(scope, norm, views=views).train(train)
    x = _x(n * views)
    out = head(x)
    out_perm = head(_apply_instance_perm(x, perm, views))
    torch.testing.assert_close(out_perm, _apply_instance_perm(out, perm, views), rtol=1e-9, atol=1e-9)


@settings(deadline=None, max_examples=8)
@given(st.data())
def test_both_views_is_equivariant_to_any_token_permutation(data):
    m = data.draw(st.integers(2, 12).filter(lambda k: k % 2 == 0), label="m")
    perm = torch.tensor(data.draw(st.permutations(range(m)), label="perm"))
    head = _head("both_views", data.draw(st.sampled_from(["post", "pre"]))).train(data.draw(st.booleans()))
    x = _x(m)
    torch.testing.assert_close(head(x[perm]), head(x)[perm], rtol=1e-9, atol=1e-9)


def test_duplicating_every_token_leaves_eval_outputs_unchanged():
    # both_views attention is a softmax-weighted mean over the token set: a duplicated set gives each copy
    # half the weight and the same mean. Eval-mode BN is a fixed per-feature map, so the outputs agree too
    # (train-mode BN would not care either: duplicating rows keeps the batch mean and variance).
    head = _head("both_views").eval()
    x = _x(6)
    out = head(x)
    out2 = head(torch.cat([x[:3], x[:3], x[3:], x[3:]]))
    torch.testing.assert_close(out2[:3], out[:3], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("scope", SCOPES.names())
def test_swapping_views_permutes_outputs(scope):
    head = _head(scope).train()
    x = _x(10)
    swap = torch.cat([torch.arange(5, 10), torch.arange(5)])
    torch.testing.assert_close(head(x[swap]), head(x)[swap], rtol=1e-9, atol=1e-9)


def test_scope_changes_the_function():
    x = _x(8)
    outs = [_head(scope).eval()(x) for scope in SCOPES.names()]
    assert not torch.allclose(outs[0], outs[1]) and not torch.allclose(outs[0], outs[2])


def test_output_batchnorm_has_a_scale_and_no_bias():
    bn = BiasFreeBatchNorm1d(5)
    assert bn.bias is None and bn.weight.shape == (5,)
    head = _head()
    assert isinstance(head.bn, BiasFreeBatchNorm1d)
    out = head.train()(_x(16))
    torch.testing.assert_close(out.mean(0), torch.zeros(8, dtype=out.dtype), rtol=0, atol=1e-10)
    assert isinstance(_head(out_bn=False).bn, torch.nn.Identity)


def test_paper_defaults():
    head = TransformerHead.paper(512)
    assert (head.dim, head.depth, head.heads, head.out_dim, head.norm, head.scope, head.views) == (
        256,
        10,
        16,
        512,
        "post",
        "both_views",
        2,
    )
    assert head.blocks[0].fc1.out_features == 1024 and isinstance(head.bn, BiasFreeBatchNorm1d)


def test_dropout_is_active_only_in_training():
    head = _head(dropout=0.5)
    x = _x(8)
    head.train()
    torch.manual_seed(0)
    a = head(x)
    torch.manual_seed(1)
    assert not torch.allclose(a, head(x))
    head.eval()
    torch.testing.assert_close(head(x), head(x, return_attention=True)[0])


@pytest.mark.parametrize(
    "x,names",
    [
        (torch.zeros(IN, dtype=torch.float64), ("2-D", "1-D")),
        (torch.zeros(8, IN + 1, dtype=torch.float64), ("13", "in_dim=12")),
        (torch.zeros(7, IN, dtype=torch.float64), ("M=7", "views=2")),
    ],
)
def test_bad_inputs_raise_data_error(x, names):
    with pytest.raises(DataError) as info:
        _head()(x)
    assert all(n in str(info.value) for n in names), str(info.value)


@pytest.mark.parametrize("scope", ["per_view", "mask_pair"])
def test_batch_too_small_for_scope(scope):
    with pytest.raises(DataError) as info:
        _head(scope)(_x(2))
    assert all(n in str(info.value) for n in (f"'{scope}'", "2", "N=1")), str(info.value)
    _head(scope)(_x(4))  # N=2 works
    _head("both_views").eval()(_x(2))  # both_views: a token sees itself and its positive


def test_non_finite_features_are_caught_unless_switched_off():
    head = _head().eval()
    x = _x(8)
    x[3, 2] = float("nan")
    with pytest.raises(DataError, match="NaN or inf"):
        head(x)
    with pytest.raises(DataError, match="NaN or inf"):
        head.trace(x)
    with forward_options(check_inputs=False):
        assert torch.isnan(head(x)).any()
    with pytest.raises(DataError, match="NaN or inf"):  # the switch ends with the block
        head(x)


@pytest.mark.parametrize(
    "kw,names",
    [
        ({"norm": "mid"}, ("norm='mid'", "post", "pre")),
        ({"scope": "foo"}, ("scope='foo'",)),
        ({"heads": 5}, ("heads=5", "dim=16")),
        ({"depth": 0}, ("depth=0",)),
    ],
)
def test_bad_config_raises_config_error(kw, names):
    args = dict(dim=16, depth=2, heads=4, ffn_dim=32, out_dim=8) | kw
    with pytest.raises(ConfigError) as info:
        TransformerHead(IN, **args)
    assert all(n in str(info.value) for n in names), str(info.value)


@pytest.mark.parametrize("scope", SCOPES.names())
def test_bf16_autocast_runs_and_stays_close(scope):
    torch.manual_seed(0)
    head = TransformerHead(IN, dim=32, depth=2, heads=4, ffn_dim=64, out_dim=16, scope=scope).eval()
    x = torch.randn(16, IN)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = head(x)
    assert torch.isfinite(low).all()
    torch.testing.assert_close(low.float(), head(x), rtol=0.1, atol=0.1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("scope", SCOPES.names())
def test_cuda_fast_path_matches_explicit_path(scope):
    torch.manual_seed(0)
    head = TransformerHead(IN, dim=64, depth=2, heads=4, ffn_dim=128, out_dim=16, scope=scope).cuda().train()
    x = torch.randn(256, IN, device="cuda")
    with forward_options(check_inputs=False):
        torch.testing.assert_close(head(x), head(x, return_attention=True)[0], rtol=1e-3, atol=1e-3)
    with torch.autocast("cuda", dtype=torch.bfloat16), forward_options(check_inputs=False):
        out = head(x)
    out.float().square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in head.parameters())
