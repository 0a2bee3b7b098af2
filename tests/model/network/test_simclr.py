"""SimCLRModel: composition, the attention pass-through, and a few steps that lower the loss."""

import torch

from deepfusion.model.network.backbones import build_backbone
from deepfusion.model.network.heads import build_head
from deepfusion.model.network.losses import nt_xent
from deepfusion.model.network.simclr import SimCLRModel


def _model(head="transformer"):
    torch.manual_seed(0)
    backbone = build_backbone("cnn3", (1, 8, 8))
    return SimCLRModel(
        backbone, build_head(head, backbone.out_dim, dim=16, depth=2, heads=4, ffn_dim=32, out_dim=8, mlp_hidden=16)
    )


def test_forward_is_head_of_backbone_and_embed_is_backbone():
    model = _model().eval()
    x = torch.randn(8, 1, 8, 8)
    torch.testing.assert_close(model.embed(x), model.backbone(x))
    torch.testing.assert_close(model(x), model.head(model.backbone(x)))
    out, attn = model(x, return_attention=True)
    torch.testing.assert_close(out, model(x))
    assert len(attn) == 2 and attn[0].shape == (4, 8, 8)


def test_every_parameter_gets_a_gradient_through_the_loss():
    model = _model().train()
    loss = nt_xent(model(torch.randn(8, 1, 8, 8)), torch.arange(4).repeat(2), 0.5)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_a_few_steps_lower_the_loss_on_a_fixed_batch():
    model = _model().train()
    x = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    ids = torch.arange(8).repeat(2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        loss = nt_xent(model(x), ids, 0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1
