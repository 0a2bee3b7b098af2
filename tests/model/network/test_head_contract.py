"""One contract for every registered head (heads register themselves; see model/network/registry.py).

Shapes, no NaN, the same output with and without ``return_attention``, ``trace`` consistent with
the forward pass block by block, a gradient for every parameter, and equivariance to permuting
the instances of the batch (the same permutation in every view). A new head is checked here
as soon as it registers.
"""

import pytest
import torch

from deepfusion.model.network.heads import attends, build_head
from deepfusion.model.network.registry import HEADS, NORMS, SCOPES

IN, N, VIEWS = 12, 6, 2
OPTIONS = dict(dim=16, depth=3, heads=4, ffn_dim=24, out_dim=8, mlp_hidden=20, out_bn=True)
# every head with its default options, and attention heads also with every scope and norm
CASES = [(name, {}) for name in HEADS.names()] + [
    (entry.name, {"scope": scope, "norm": norm})
    for entry in HEADS.entries()
    if entry.extra.get("attends")
    for scope in SCOPES.names()
    for norm in NORMS.names()
]
IDS = [f"{name}-{'-'.join(o.values()) or 'default'}" for name, o in CASES]


def _head(name, extra):
    torch.manual_seed(0)
    return build_head(name, IN, **OPTIONS, **extra).double()


def _x(seed=1):
    return torch.randn(VIEWS * N, IN, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def test_registry_lists_every_head_once_with_a_label():
    names = HEADS.names()
    assert len(set(names)) == len(names) >= 4
    assert all(e.label and e.summary for e in HEADS.entries())
    assert attends("transformer") and not attends("mlp")


@pytest.mark.parametrize("name,extra", CASES, ids=IDS)
def test_output_shape_and_finite(name, extra):
    out = _head(name, extra).train()(_x())
    assert out.shape == (VIEWS * N, OPTIONS["out_dim"]) and torch.isfinite(out).all()


@pytest.mark.parametrize("name,extra", CASES, ids=IDS)
def test_return_attention_gives_the_same_output(name, extra):
    head = _head(name, extra).eval()
    x = _x()
    out, attention = head(x, return_attention=True)
    torch.testing.assert_close(out, head(x), rtol=1e-10, atol=1e-10)
    if attends(name):
        assert len(attention) == OPTIONS["depth"]
        for a in attention:
            assert a.shape == (OPTIONS["heads"], VIEWS * N, VIEWS * N)
            torch.testing.assert_close(a.sum(-1), torch.ones_like(a.sum(-1)))
    else:
        assert attention == []


@pytest.mark.parametrize("name,extra", CASES, ids=IDS)
def test_trace_follows_the_forward_pass_block_by_block(name, extra):
    head = _head(name, extra).eval()
    x = _x()
    tr = head.trace(x)
    torch.testing.assert_close(tr["out"], head(x), rtol=1e-10, atol=1e-10)
    tokens = tr["tokens"]
    assert len(tokens) == len(head.blocks) + 1
    for l, block in enumerate(head.blocks):
        nxt = block(tokens[l])
        nxt = nxt[0] if isinstance(nxt, tuple) else nxt  # transformer blocks also return weights
        torch.testing.assert_close(nxt, tokens[l + 1], rtol=1e-10, atol=1e-10)
    assert len(tr["attention"]) == (len(head.blocks) if attends(name) else 0)


@pytest.mark.parametrize("name,extra", CASES, ids=IDS)
def test_every_parameter_gets_a_finite_gradient(name, extra):
    head = _head(name, extra).train()
    out = head(_x())
    (out * torch.randn_like(out)).sum().backward()
    for pname, p in head.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name,extra", CASES, ids=IDS)
def test_equivariant_to_permuting_the_instances(name, extra):
    head = _head(name, extra).train()
    x = _x()
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(3))
    rows = torch.cat([v * N + perm for v in range(VIEWS)])  # the same instance order in every view
    torch.testing.assert_close(head(x[rows]), head(x)[rows], rtol=1e-9, atol=1e-10)
