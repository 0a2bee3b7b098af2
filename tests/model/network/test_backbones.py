"""Backbones: contract on small inputs, the CIFAR stem, and errors for bad names and shapes."""

import pytest
import torch

from deepfusion.errors import ConfigError
from deepfusion.model.network.backbones import build_backbone
from deepfusion.model.network.registry import BACKBONES

CASES = [
    ("resnet18", (3, 8, 8), 512),
    ("resnet18", (1, 9, 12), 512),  # one channel, odd non-square size
    ("resnet50", (3, 8, 8), 2048),
    ("cnn3", (1, 8, 8), 128),  # digits
    ("cnn3", (1, 28, 28), 128),  # Fashion-MNIST
    ("cnn3", (3, 32, 32), 128),
    ("mlp", (20,), 512),
    ("cnn1d", (40,), 256),  # MNIST-1D signals
    ("cnn1d", (9,), 256),
]


@pytest.mark.parametrize("name,shape,out_dim", CASES)
def test_contract_shape_finite_and_every_parameter_gets_a_gradient(name, shape, out_dim):
    torch.manual_seed(0)
    net = build_backbone(name, shape).train()
    assert net.out_dim == out_dim
    out = net(torch.randn(3, *shape))
    assert out.shape == (3, out_dim) and torch.isfinite(out).all()
    (out * torch.randn_like(out)).sum().backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_resnets_use_the_cifar_stem(name):
    net = build_backbone(name, (3, 32, 32))
    first = net.stem[0]
    assert first.kernel_size == (3, 3) and first.stride == (1, 1)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in net.modules())


def test_resnet_blocks():
    r18 = build_backbone("resnet18", (3, 8, 8))
    r50 = build_backbone("resnet50", (3, 8, 8))
    assert [type(b).__name__ for b in r18.stages] == ["BasicBlock"] * 8
    assert [type(b).__name__ for b in r50.stages] == ["Bottleneck"] * 16


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ConfigError) as info:
        build_backbone("vgg", (3, 32, 32))
    assert all(n in str(info.value) for n in ("model.backbone='vgg'", *BACKBONES.names())), str(info.value)


@pytest.mark.parametrize(
    "name,shape,match",
    [
        ("resnet18", (64,), "needs image input"),
        ("cnn3", (1, 7, 8), "at least 8x8"),
        ("resnet50", (0, 32, 32), "at least 1 channel"),
        ("mlp", (3, 8, 8), "needs vector input"),
        ("cnn1d", (1, 28, 28), "needs signals"),
        ("cnn1d", (7,), "at least 8 positions"),
    ],
)
def test_bad_input_shapes(name, shape, match):
    with pytest.raises(ConfigError, match=match):
        build_backbone(name, shape)


def test_resnet_reinitialisation_uses_its_own_conv_init():
    """The random-backbone baseline re-draws a ResNet with the He init it was built with
    (PyTorch's default conv init would give about twice this std here)."""
    from deepfusion.model.runs.head_probes import reinitialise_

    net = build_backbone("resnet18", (3, 8, 8))
    reinitialise_(net, seed=0)
    conv = net.stem[0].weight  # (64, 3, 3, 3): fan-out = 64 * 9
    expected_std = (2.0 / (64 * 9)) ** 0.5
    assert abs(conv.std().item() - expected_std) / expected_std < 0.1


def test_mlp_width_and_depth_come_from_the_config_keys():
    from torch import nn

    net = build_backbone("mlp", (7,), backbone_width=24, backbone_depth=3)
    assert net.out_dim == 24 and sum(isinstance(m, nn.Linear) for m in net.modules()) == 3
    assert net(torch.randn(4, 7)).shape == (4, 24)
    default = build_backbone("mlp", (7,), backbone_width=None, backbone_depth=None)
    assert default.out_dim == 512 and sum(isinstance(m, nn.Linear) for m in default.modules()) == 2


def test_width_for_a_backbone_without_it_is_a_config_error():
    with pytest.raises(ConfigError) as info:
        build_backbone("cnn3", (1, 8, 8), backbone_width=64)
    assert all(n in str(info.value) for n in ("model.backbone_width", "'cnn3'", "mlp")), str(info.value)
    with pytest.raises(ConfigError, match="backbone_depth=0"):
        build_backbone("mlp", (7,), backbone_depth=0)


def test_cnn1d_reads_positions_in_order():
    """A shifted signal gives nearly the same features (pooling), a shuffled one does not."""
    torch.manual_seed(0)
    net = build_backbone("cnn1d", (64,)).eval()
    t = torch.linspace(-1, 1, 64)
    x = torch.exp(-(((t - 0.2) / 0.1) ** 2))[None]  # one bump
    shifted, shuffled = torch.roll(x, 4, 1), x[:, torch.randperm(64)]
    with torch.no_grad():
        f, fs, fp = net(x), net(shifted), net(shuffled)
    assert (f - fs).norm() < 0.5 * (f - fp).norm()
