"""build_head: names, options from the model config, and errors that name the bad value."""

import pytest
import torch

from deepfusion.errors import ConfigError
from deepfusion.model.network.heads import HEADS, build_head
from deepfusion.model.network.mlp_heads import FFNHead, MLPHead
from deepfusion.model.network.transformer_head import TransformerHead

SMALL = dict(
    dim=16, depth=2, heads=4, ffn_dim=32, out_dim=8, norm="pre", scope="mask_pair", out_bn=False, mlp_hidden=20, views=2
)


def test_each_name_builds_its_head_with_the_options_that_apply():
    t = build_head("transformer", 10, **SMALL)
    assert isinstance(t, TransformerHead)
    assert (t.dim, t.depth, t.heads, t.out_dim, t.norm, t.scope) == (16, 2, 4, 8, "pre", "mask_pair")
    assert isinstance(t.bn, torch.nn.Identity)
    f = build_head("ffn", 10, **SMALL)
    assert isinstance(f, FFNHead) and (f.dim, f.depth, f.out_dim) == (16, 2, 8)
    m = build_head("mlp", 10, **SMALL)
    assert isinstance(m, MLPHead) and m.batchnorm and m.blocks[0][0].out_features == 20
    assert not build_head("mlp_nobn", 10, **SMALL).batchnorm
    for name in HEADS:
        assert build_head(name, 10, **SMALL)(torch.randn(6, 10)).shape == (6, 8)


def test_none_and_config_only_keys_are_ignored():
    head = build_head("transformer", 10, dim=None, depth=1, heads=4, backbone="cnn3", head="transformer")
    assert head.dim == 256


def test_unknown_head_lists_valid_names():
    with pytest.raises(ConfigError) as info:
        build_head("vit", 10)
    assert all(n in str(info.value) for n in ("model.head='vit'", "transformer", "mlp", "mlp_nobn", "ffn")), str(
        info.value
    )


@pytest.mark.parametrize("name", ["transformer", "mlp"])
@pytest.mark.parametrize(
    "kw,match",
    [
        ({"scope": "foo"}, "model.scope='foo'"),
        ({"norm": "mid"}, "model.norm='mid'"),
        ({"dim": 30, "heads": 4}, "model.heads=4.*model.dim=30"),
        ({"depth": -1}, "model.depth=-1"),
        ({"out_bn": "yes"}, "model.out_bn='yes'"),
        ({"dimm": 3}, "unknown head option.*dimm"),
    ],
)
def test_invalid_option_names_it(name, kw, match):
    with pytest.raises(ConfigError, match=match):
        build_head(name, 10, **kw)
