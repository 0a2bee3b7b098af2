"""Backbones: images or vectors -> feature vectors of size ``out_dim``.

The ResNets use the CIFAR stem (3x3 conv, stride 1, no max-pool): the ImageNet
stem (7x7 stride 2 and a max-pool) throws away most of a 32 px image before the
first block and costs about ten points of accuracy on CIFAR. Three stride-2
stages bring any input of at least 8x8 down to at least 1x1 before the global
average pool, so the same network runs on 8x8 digits and 64 px images.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from deepfusion.errors import ConfigError
from deepfusion.model.network.registry import BACKBONES

MIN_SIDE = 8


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 3, stride, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.skip = _shortcut(cin, cout, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.body(x) + self.skip(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.skip = _shortcut(cin, cout, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.body(x) + self.skip(x))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ResNet(nn.Module):
    """CIFAR-stem ResNet: (B, C, H, W) -> (B, 512 * expansion)."""

    def __init__(self, block, layers: tuple[int, ...], in_channels: int):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True)
        )
        stages, cin = [], 64
        for i, (width, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            for j in range(blocks):
                stages.append(block(cin, width, 2 if (i > 0 and j == 0) else 1))
                cin = width * block.expansion
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_dim = cin
        self.reset_parameters()

    def reset_parameters(self):
        """He (fan-out) init of every convolution; also what a re-initialised (random) baseline gets."""
        for mod in self.modules():
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        return self.pool(self.stages(self.stem(x)))


class CNN3(nn.Module):
    """Three 3x3 conv layers (BN, ReLU; max-pool after the first two) and a global average pool."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int] = (32, 64, 128)):
        super().__init__()
        layers, cin = [], in_channels
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(cin, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            if i < 2:
                layers.append(nn.MaxPool2d(2))  # 8x8 -> 4x4 -> 2x2, 28x28 -> 14x14 -> 7x7
            cin = w
        self.net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_dim = cin

    def forward(self, x):
        return self.net(x)


class MLPBackbone(nn.Module):
    """Vector data: ``layers`` Linear-BN-ReLU layers of width ``hidden`` (default two of 512)."""

    def __init__(self, in_dim: int, hidden: int = 512, layers: int = 2):
        super().__init__()
        mods, cin = [], in_dim
        for _ in range(layers):
            mods += [nn.Linear(cin, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
            cin = hidden
        self.net = nn.Sequential(*mods)
        self.out_dim = hidden

    def forward(self, x):
        return self.net(x)


class CNN1D(nn.Module):
    """Ordered 1-D signals ``(B, L)``: three conv layers (kernel 5, 5, 3; BN, ReLU; max-pool after the
    first two) over the positions, then global average and max pools side by side."""

    def __init__(self, widths: tuple[int, int, int] = (32, 64, 128)):
        super().__init__()
        layers, cin = [], 1
        for i, (w, k) in enumerate(zip(widths, (5, 5, 3))):
            layers += [nn.Conv1d(cin, w, k, 1, k // 2, bias=False), nn.BatchNorm1d(w), nn.ReLU(inplace=True)]
            if i < 2:
                layers.append(nn.MaxPool1d(2))  # 40 -> 20 -> 10 positions
            cin = w
        self.net = nn.Sequential(*layers)
        self.out_dim = 2 * cin

    def forward(self, x):
        h = self.net(x[:, None, :])  # (B, 1, L) -> (B, C, L / 4)
        return torch.cat([h.mean(-1), h.amax(-1)], 1)  # (B, 2C)


def _image_shape(name: str, input_shape: tuple) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ConfigError(
            f"backbone {name!r} needs image input (C, H, W), got input shape {tuple(input_shape)}; "
            "use backbone 'mlp' for vector data"
        )
    c, h, w = (int(s) for s in input_shape)
    if c < 1 or min(h, w) < MIN_SIDE:
        raise ConfigError(
            f"backbone {name!r} needs at least 1 channel and images of at least "
            f"{MIN_SIDE}x{MIN_SIDE}, got input shape {tuple(input_shape)}"
        )
    return c, h, w


@BACKBONES.register(
    "resnet18",
    label="ResNet-18 (CIFAR stem)",
    inputs="image",
    summary="ResNet-18 with the CIFAR stem (3x3 conv, stride 1, no max-pool)",
)
def _resnet18(input_shape) -> nn.Module:
    return ResNet(BasicBlock, (2, 2, 2, 2), _image_shape("resnet18", input_shape)[0])


@BACKBONES.register("resnet50", label="ResNet-50 (CIFAR stem)", inputs="image", summary="ResNet-50 with the CIFAR stem")
def _resnet50(input_shape) -> nn.Module:
    return ResNet(Bottleneck, (3, 4, 6, 3), _image_shape("resnet50", input_shape)[0])


@BACKBONES.register("cnn3", label="3-layer CNN", inputs="image", summary="a small 3-layer CNN for CPU runs")
def _cnn3(input_shape) -> nn.Module:
    return CNN3(_image_shape("cnn3", input_shape)[0])


@BACKBONES.register(
    "mlp",
    label="MLP",
    inputs="vector",
    summary="Linear-BN-ReLU layers for vector data",
    options={"backbone_width": "hidden", "backbone_depth": "layers"},
)
def _mlp(input_shape, hidden: int = 512, layers: int = 2) -> nn.Module:
    if len(input_shape) != 1 or int(input_shape[0]) < 1:
        raise ConfigError(
            f"backbone 'mlp' needs vector input (d,), got input shape {tuple(input_shape)}; "
            f"use one of {', '.join(b.name for b in BACKBONES.entries() if b.extra['inputs'] == 'image')} "
            "for images"
        )
    for key, value in (("backbone_width", hidden), ("backbone_depth", layers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"model.{key}={value!r} must be a positive integer")
    return MLPBackbone(int(input_shape[0]), hidden, layers)


@BACKBONES.register(
    "cnn1d",
    label="1-D CNN",
    inputs="vector",
    summary="a small 1-D CNN for ordered signals (time series, spectra), x of shape (N, L)",
)
def _cnn1d(input_shape) -> nn.Module:
    if len(input_shape) != 1 or int(input_shape[0]) < MIN_SIDE:
        raise ConfigError(
            f"backbone 'cnn1d' needs signals (L,) of at least {MIN_SIDE} positions, got input shape "
            f"{tuple(input_shape)}"
        )
    return CNN1D()


class Identity(nn.Module):
    """Vectors as they are: the head sees the data's own features (the theory's generator)."""

    def __init__(self, dim: int):
        super().__init__()
        self.out_dim = dim

    def forward(self, x):
        return x


class PCAWhiten(nn.Module):
    """A fixed feature map: flatten, centre, project on the top principal directions of the training
    inputs, scale each to unit variance. ``fit`` sets it from data; the buffers travel in checkpoints."""

    def __init__(self, in_dim: int, components: int = 128, eps: float = 1e-5):
        super().__init__()
        self.out_dim = min(components, in_dim)
        self.eps = eps
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("proj", torch.eye(in_dim)[:, : self.out_dim].clone())

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> "PCAWhiten":
        flat = x.reshape(len(x), -1).to(torch.float64)
        mean = flat.mean(0)
        cov = torch.cov((flat - mean).T)
        values, vectors = torch.linalg.eigh(cov)  # ascending
        top = torch.argsort(values, descending=True)[: self.out_dim]
        proj = vectors[:, top] / torch.sqrt(values[top].clamp(min=0) + self.eps)
        self.mean.copy_(mean.to(self.mean.dtype))
        self.proj.copy_(proj.to(self.proj.dtype))
        return self

    def forward(self, x):
        return (x.reshape(len(x), -1) - self.mean) @ self.proj


@BACKBONES.register(
    "identity",
    label="identity (the data's features)",
    inputs="vector",
    summary="no backbone: the head sees the input vectors (use with train.freeze_backbone)",
)
def _identity(input_shape) -> nn.Module:
    if len(input_shape) != 1:
        raise ConfigError(f"backbone 'identity' needs vector input (d,), got input shape {tuple(input_shape)}")
    return Identity(int(input_shape[0]))


@BACKBONES.register(
    "pca",
    label="PCA-whitened inputs",
    inputs="any",
    fits_data=True,
    summary="a fixed map: the top 128 principal directions of the training inputs, whitened",
)
def _pca(input_shape) -> nn.Module:
    return PCAWhiten(int(np.prod(input_shape)))


def build_backbone(name: str, input_shape, **options) -> nn.Module:
    """The registered backbone ``name`` for inputs of shape ``(C, H, W)`` (images) or ``(d,)`` (vectors);
    has ``out_dim``.

    ``options`` are model config keys (``backbone_width``, ``backbone_depth``); None means the
    backbone's default, and a value for a backbone that does not take it is a ``ConfigError``.
    """
    entry = BACKBONES.get(name)
    given = {k: v for k, v in options.items() if v is not None}
    foreign = sorted(set(given) - set(entry.options))
    if foreign:
        takers = [e.name for e in BACKBONES.entries() if set(foreign) <= set(e.options)]
        raise ConfigError(
            f"model.{foreign[0]} does not apply to backbone {name!r} (it applies to "
            f"{', '.join(takers) or 'no backbone'}); set it to null"
        )
    return entry.build(tuple(input_shape), **{entry.options[k]: v for k, v in given.items()})
