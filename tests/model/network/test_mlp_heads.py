"""Feed-forward heads: the paper baseline's layout, which heads mix samples, input errors.

The contract every head meets (shapes, trace, gradients, equivariance) is in test_head_contract.py."""

import pytest
import torch

from deepfusion.errors import ConfigError, DataError
from deepfusion.model.network.mlp_heads import FFNHead, MLPHead
from deepfusion.model.network.transformer_head import BiasFreeBatchNorm1d

IN = 12


def _heads():
    torch.manual_seed(0)
    return {
        "mlp": MLPHead(IN, hidden_dim=16, out_dim=8, batchnorm=True),
        "mlp_nobn": MLPHead(IN, hidden_dim=16, out_dim=8, batchnorm=False),
        "ffn": FFNHead(IN, dim=16, depth=3, out_dim=8),
    }


def test_ffn_layout_is_the_paper_baseline():
    head = FFNHead(IN, dim=16, depth=3, out_dim=8)
    assert len(head.blocks) == 3
    for block in head.blocks:
        assert [type(m).__name__ for m in block] == ["Linear", "BatchNorm1d", "ReLU"]
    assert isinstance(head.tail[1], BiasFreeBatchNorm1d)
    assert isinstance(FFNHead(IN, dim=16, depth=1, out_dim=8, out_bn=False).tail[1], torch.nn.Identity)


def test_mlp_without_batchnorm_treats_rows_independently():
    # Without BN nothing mixes samples: changing one row leaves every other output row untouched.
    heads = _heads()
    x = torch.randn(6, IN)
    y = x.clone()
    y[0] += 1.0
    head = heads["mlp_nobn"].train()
    torch.testing.assert_close(head(x)[1:], head(y)[1:])
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in heads["mlp_nobn"].modules())
    # With BN in train mode the batch statistics couple the rows.
    assert not torch.allclose(heads["mlp"].train()(x)[1:], heads["mlp"](y)[1:])


def test_bad_input_and_config():
    head = _heads()["ffn"]
    with pytest.raises(DataError, match="feature size 5"):
        head(torch.randn(4, 5))
    with pytest.raises(DataError, match="1-D"):
        head(torch.randn(IN))
    with pytest.raises(DataError, match="NaN or inf"):
        head(torch.full((4, IN), float("inf")))
    with pytest.raises(ConfigError, match="depth=0"):
        FFNHead(IN, depth=0)
    with pytest.raises(ConfigError, match="mlp_hidden=-1"):
        MLPHead(IN, hidden_dim=-1)
