"""Two-view augmentation of a whole batch on its own device (CPU or CUDA), in plain torch.

``build_augment(preset, kind, input_shape)`` returns an ``Augment`` module:

- ``two_views(x, generator=None) -> (2B, ...)``: two independent augmentations of every sample,
  view-major (all first views, then all second views), float32 and normalised.
- ``eval_view(x) -> (B, ...)``: the same conversion and normalisation without augmentation.

Every random draw is per sample and vectorised (no Python loop over the batch) and comes from
``generator`` (or the global RNG of its device), so a seeded generator gives the same views. uint8
images are scaled to [0, 1] inside; float images are taken to be in [0, 1] already.

Image pipeline, in order: one affine resampling (random resized crop, horizontal flip, and for
small images rotation/zoom/shift) through ``F.grid_sample``; colour jitter (brightness, contrast,
saturation, hue) with probability ``jitter_p``; grayscale; Gaussian blur; pixel noise; normalise.
Hue is shifted by a rotation of the chroma plane in YIQ space, a close, cheap stand-in for the
HSV hue shift of torchvision. Plain torch rather than kornia: one resampling instead of several,
draws from a ``torch.Generator``, and faster on CPU for these small images.

Signal pipeline (vectors with ordered positions, preset ``signal``): shift, stretch and amplitude
scale (``augment_signal.py``), then the vector pipeline.

Vector pipeline, in order: mixing (each feature, with probability ``mix_p``, replaced by the same
feature of a random other sample of the batch, as SCARF's corruption from the empirical marginal),
additive Gaussian noise, masking (each feature zeroed with probability ``mask_p``). Runs
standardise vector features before they get here, so 0 is a feature's mean and noise is in units
of its standard deviation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from deepfusion.errors import ConfigError, DataError
from deepfusion.model.data.augment_signal import shift_stretch_scale


@dataclass(frozen=True)
class Preset:
    kind: str  # "image" or "vector"; "any" for none
    channels: int | None = None  # image channels the statistics belong to; None = any
    mean: tuple = (0.0,)  # per-channel (images, in [0, 1] units) or scalar (vectors)
    std: tuple = (1.0,)
    crop_scale: tuple | None = None  # random resized crop: area fraction range; None = whole image
    crop_ratio: tuple = (3 / 4, 4 / 3)  # aspect-ratio range of the crop
    flip: float = 0.0  # horizontal flip probability
    rotate: float = 0.0  # max rotation, degrees
    zoom: tuple = (1.0, 1.0)  # magnification range (> 1 zooms in)
    shift: float = 0.0  # max translation, fraction of the side
    jitter: tuple = (0.0, 0.0, 0.0, 0.0)  # brightness, contrast, saturation, hue strengths
    jitter_p: float = 0.0
    gray_p: float = 0.0
    blur_p: float = 0.0
    blur_sigma: tuple = (0.1, 2.0)  # in pixels; kernel ~10% of the side
    noise: float = 0.0  # additive Gaussian noise std ([0, 1] pixel units, or feature units)
    mask_p: float = 0.0  # vectors: probability of zeroing each feature
    mix_p: float = 0.0  # vectors: probability of taking each feature from a random other sample of the batch
    scale: tuple = (1.0, 1.0)  # signals: amplitude factor range (shift, zoom: along the signal)

    @property
    def geometric(self) -> bool:
        return bool(self.crop_scale or self.flip or self.rotate or self.shift or self.zoom != (1.0, 1.0))


SIMCLR_JITTER = (0.4, 0.4, 0.4, 0.1)  # SimCLR colour strength s = 0.5 (its CIFAR setting)
PRESETS = {
    # SimCLR's CIFAR recipe; no blur at 32 px (it hurts there). CIFAR-10 training-set statistics.
    "cifar": Preset(
        "image",
        3,
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
        crop_scale=(0.08, 1.0),
        flip=0.5,
        jitter=SIMCLR_JITTER,
        jitter_p=0.8,
        gray_p=0.2,
    ),
    # The same at 64 px, plus SimCLR's blur on half the views. Tiny-ImageNet training-set statistics.
    "tiny_imagenet": Preset(
        "image",
        3,
        (0.4802, 0.4481, 0.3975),
        (0.2770, 0.2691, 0.2821),
        crop_scale=(0.08, 1.0),
        flip=0.5,
        jitter=SIMCLR_JITTER,
        jitter_p=0.8,
        gray_p=0.2,
        blur_p=0.5,
    ),
    # Grey clothes: crops and flips (garments are mirror-symmetric as classes), no colour ops; the
    # crop floor is raised to 0.2 because 8% of a 28 px image is a 8 px patch with little left.
    "fashion_mnist": Preset("image", 1, (0.2860,), (0.3530,), crop_scale=(0.2, 1.0), flip=0.5),
    # The same plus brightness and contrast jitter on 80% of the views (SimCLR's strength 0.4): the grey
    # analogue of colour distortion, which keeps the intensity histogram from identifying an instance.
    "fashion_mnist_jitter": Preset(
        "image", 1, (0.2860,), (0.3530,), crop_scale=(0.2, 1.0), flip=0.5, jitter=(0.4, 0.4, 0.0, 0.0), jitter_p=0.8
    ),
    # 8x8 digits: no flips (a mirrored 2 or 3 is not a digit), no crops (a crop of 8 px loses the
    # digit); small rotations, zooms, one-pixel shifts and pixel noise. Statistics of all 1,797 images.
    "digits": Preset("image", 1, (0.3053,), (0.3759,), rotate=12.0, zoom=(0.85, 1.15), shift=0.125, noise=0.1),
    # The generated class patterns: moderate crops, flips, SimCLR colour ops. Statistics are the
    # generator's expectation (background 0.15, half the cells lit).
    "synthetic_images": Preset(
        "image",
        3,
        (0.4, 0.4, 0.4),
        (0.3, 0.3, 0.3),
        crop_scale=(0.3, 1.0),
        flip=0.5,
        jitter=SIMCLR_JITTER,
        jitter_p=0.8,
        gray_p=0.2,
    ),
    # Vectors: additive Gaussian noise and random feature masking, in the units the features have
    # when they reach the augmentation (standardised unless data.standardize=false).
    "vector": Preset("vector", noise=0.1, mask_p=0.2),
    # Ordered 1-D signals (vectors whose positions are ordered): shift by up to 15% of the length,
    # stretch 0.85-1.15x, amplitude 0.7-1.3x, then the vector noise (augment_signal.py).
    "signal": Preset("vector", shift=0.15, zoom=(0.85, 1.15), scale=(0.7, 1.3), noise=0.1),
    # Images with a channel count other than 1 or 3: crops and flips only, no colour statistics.
    "crop_flip": Preset("image", None, (0.5,), (0.25,), crop_scale=(0.3, 1.0), flip=0.5),
    # No augmentation: both views equal the eval view (images scaled to about unit spread,
    # vectors as given).
    "none": Preset("any", None, (0.5,), (0.25,)),
}
AUGMENT_PRESETS = (*PRESETS, "default")


def default_preset(kind: str, input_shape: tuple) -> str:
    """The preset ``default`` stands for: chosen from the data's kind, channels and size."""
    if kind == "vector":
        return "vector"
    C, H = input_shape[0], input_shape[1]
    if C == 1:  # grey: brightness/contrast jitter is what lifts a run above random (benchmarks/README.md)
        return "digits" if H <= 8 else "fashion_mnist_jitter"
    if C != 3:
        return "crop_flip"
    return "synthetic_images" if H <= 16 else "cifar" if H <= 32 else "tiny_imagenet"


OVERRIDES = {"noise": "noise", "mask": "mask_p", "mix": "mix_p"}  # build_augment keyword -> Preset field


def build_augment(
    preset: str, kind: str, input_shape, noise: float | None = None, mask: float | None = None, mix: float | None = None
) -> "Augment":
    """The augmentation module of ``preset`` for data of ``kind`` ("image"/"vector") and ``input_shape``.

    ``noise``, ``mask`` and ``mix`` replace the preset's values when given (``mask`` and ``mix``
    act on vectors only).
    """
    if preset not in AUGMENT_PRESETS:
        raise ConfigError(f"unknown augmentation preset {preset!r}; choose from {', '.join(AUGMENT_PRESETS)}")
    if kind not in ("image", "vector"):
        raise ConfigError(f"data kind {kind!r} is not valid; choose from image, vector")
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != (3 if kind == "image" else 1) or min(shape) < 1:
        raise ConfigError(f"input_shape {shape} does not fit {kind} data; expected (C, H, W) or (d,)")
    name = default_preset(kind, shape) if preset == "default" else preset
    p = PRESETS[name]
    if p.kind not in ("any", kind):
        fits = [n for n, q in PRESETS.items() if q.kind in ("any", kind)]
        raise ConfigError(
            f"augmentation preset {name!r} is for {p.kind} data but the dataset holds {kind}s; "
            f"choose from {', '.join(fits)}"
        )
    if kind == "image" and p.channels is not None and p.channels != shape[0]:
        fits = [n for n, q in PRESETS.items() if q.kind == "any" or q.channels == shape[0]]
        raise ConfigError(
            f"augmentation preset {name!r} is for {p.channels}-channel images but the data has "
            f"{shape[0]} channel(s); choose from {', '.join(fits)}"
        )
    given = {OVERRIDES[k]: v for k, v in (("noise", noise), ("mask", mask), ("mix", mix)) if v is not None}
    if kind == "image" and any(given.get(f) for f in ("mask_p", "mix_p")):
        raise ConfigError(
            "data.aug_mask and data.aug_mix act on vectors only; the dataset holds images (set them to null)"
        )
    return Augment(name, replace(p, **given) if given else p, shape, kind)


def _uniform(lo, hi, n: int, g, device) -> torch.Tensor:
    """(n,) draws from U(lo, hi), made on the generator's device and moved to ``device``."""
    u = torch.rand(n, generator=g, device=g.device if g is not None else device)
    return (lo + (hi - lo) * u).to(device)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) luma of RGB images (ITU-R BT.601 weights, as torchvision)."""
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]) if x.shape[1] == 3 else x


_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


class Augment(nn.Module):
    def __init__(self, name: str, preset: Preset, input_shape: tuple, kind: str):
        super().__init__()
        self.name, self.preset, self.input_shape, self.kind = name, preset, tuple(input_shape), kind
        C = input_shape[0] if kind == "image" else 1
        mean, std = torch.tensor(preset.mean, dtype=torch.float32), torch.tensor(preset.std, dtype=torch.float32)
        view = (-1, 1, 1) if kind == "image" else (-1,)
        self.register_buffer(
            "mean", mean.expand(C).clone().view(view) if len(mean) == 1 else mean.view(view), persistent=False
        )
        self.register_buffer(
            "std", std.expand(C).clone().view(view) if len(std) == 1 else std.view(view), persistent=False
        )
        self.register_buffer("yiq", _RGB2YIQ.clone(), persistent=False)
        # Inverted once here: torch.linalg.inv on every batch would also sync a CUDA device (its error check).
        self.register_buffer("yiq_inv", torch.linalg.inv(_RGB2YIQ), persistent=False)

    def extra_repr(self) -> str:
        return f"preset={self.name!r}, kind={self.kind!r}, input_shape={self.input_shape}"

    # -- entry points -------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.two_views(x, generator)

    def two_views(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(2B, ...) float32: two augmentations of each sample, view-major, normalised."""
        x = self._unit(x)
        x = torch.cat([x, x])  # (2B, ...): one vectorised pass draws both views
        x = self._image(x, generator) if self.kind == "image" else self._vector(x, generator)
        return self._normalise(x, inplace=True)  # x is a fresh tensor here

    def eval_view(self, x: torch.Tensor) -> torch.Tensor:
        """(B, ...) float32: the sample converted and normalised, no randomness."""
        return self._normalise(self._unit(x))

    # -- pieces -------------------------------------------------------------------------------
    def _unit(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or tuple(x.shape[1:]) != self.input_shape:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise DataError(
                f"augmentation {self.name!r} expects a tensor of shape (B, {', '.join(map(str, self.input_shape))}), "
                f"got {shape}"
            )
        if x.dtype == torch.uint8:
            return x.float().div_(255.0)
        if not x.is_floating_point():
            raise DataError(f"augmentation {self.name!r} expects uint8 or float input, got {x.dtype}")
        return x.float()

    def _normalise(self, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        if self.kind == "vector":  # vectors arrive standardised by the run (or as given): nothing to do
            return x.contiguous()
        x = x.contiguous() if inplace else x.clone(memory_format=torch.contiguous_format)
        return x.sub_(self.mean).div_(self.std)

    def _vector(self, x: torch.Tensor, g) -> torch.Tensor:
        """Signals: shift, stretch, scale; then mix (each feature from a random other row with
        probability ``mix_p``), noise, mask."""
        p, dev = self.preset, x.device
        if p.geometric or p.scale != (1.0, 1.0):
            x = shift_stretch_scale(x, p.shift, p.zoom, p.scale, g)
        gdev = g.device if g is not None else dev
        if p.mix_p:
            rows = torch.randint(len(x), x.shape, generator=g, device=gdev).to(dev)  # (2B, d) donor row per entry
            take = torch.rand(x.shape, generator=g, device=gdev).to(dev) < p.mix_p
            x = torch.where(take, x.gather(0, rows), x)
        if p.noise:
            x = x + p.noise * torch.randn(x.shape, generator=g, device=gdev).to(dev)
        if p.mask_p:
            keep = torch.rand(x.shape, generator=g, device=gdev).to(dev) >= p.mask_p
            x = x * keep
        return x

    def _image(self, x: torch.Tensor, g) -> torch.Tensor:
        p, dev = self.preset, x.device
        if p.geometric:
            x = self._affine(x, g)
        if p.jitter_p and any(p.jitter):
            x = self._jitter(x, g)
        if p.gray_p and x.shape[1] == 3:
            apply = (_uniform(0, 1, len(x), g, dev) < p.gray_p).view(-1, 1, 1, 1)
            x = torch.where(apply, _gray(x).expand_as(x), x)
        if p.blur_p:
            x = self._blur(x, g)
        if p.noise:
            noise = torch.randn(x.shape, generator=g, device=g.device if g is not None else dev).to(dev)
            x = (x + p.noise * noise).clamp_(0, 1)
        return x

    def _affine(self, x: torch.Tensor, g) -> torch.Tensor:
        """Crop, flip, rotate, zoom and shift in one bilinear resampling; output keeps the input size."""
        p, dev, B = self.preset, x.device, x.shape[0]
        H, W = x.shape[-2:]
        if p.crop_scale:
            tries = 10  # torchvision's rejection sampling, vectorised: first fitting try per sample wins
            area = _uniform(p.crop_scale[0], p.crop_scale[1], B * tries, g, dev).view(B, tries)
            logr = _uniform(math.log(p.crop_ratio[0]), math.log(p.crop_ratio[1]), B * tries, g, dev).view(B, tries)
            ratio = logr.exp()
            w = torch.sqrt(area * ratio * H / W)  # crop width as a fraction of W
            h = torch.sqrt(area / ratio * W / H)
            fits = (w <= 1) & (h <= 1)
            first = torch.where(fits.any(1), fits.float().argmax(1), torch.zeros(B, dtype=torch.long, device=dev))
            w = torch.where(fits.any(1), w.gather(1, first[:, None])[:, 0], torch.ones(B, device=dev))
            h = torch.where(fits.any(1), h.gather(1, first[:, None])[:, 0], torch.ones(B, device=dev))
            tx = (1 - w) * _uniform(-1, 1, B, g, dev)  # crop centre, normalised coordinates
            ty = (1 - h) * _uniform(-1, 1, B, g, dev)
        else:
            w, h = torch.ones(B, device=dev), torch.ones(B, device=dev)
            tx, ty = torch.zeros(B, device=dev), torch.zeros(B, device=dev)
        if p.zoom != (1.0, 1.0):
            z = _uniform(p.zoom[0], p.zoom[1], B, g, dev)
            w, h = w / z, h / z
        if p.shift:
            tx = tx + 2 * p.shift * _uniform(-1, 1, B, g, dev)
            ty = ty + 2 * p.shift * _uniform(-1, 1, B, g, dev)
        if p.flip:
            w = torch.where(_uniform(0, 1, B, g, dev) < p.flip, -w, w)
        a = torch.deg2rad(_uniform(-p.rotate, p.rotate, B, g, dev)) if p.rotate else torch.zeros(B, device=dev)
        cos, sin = torch.cos(a), torch.sin(a)
        theta = torch.stack(
            [torch.stack([w * cos, -h * sin, tx], 1), torch.stack([w * sin, h * cos, ty], 1)], 1
        )  # (B, 2, 3): output -> input coords
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def _jitter(self, x: torch.Tensor, g) -> torch.Tensor:
        """Brightness, contrast, saturation and hue with per-sample factors, on a ``jitter_p`` share.

        Saturation and hue are both linear maps of RGB, so they are applied as one per-sample 3x3
        matrix (no clamp between them); samples left alone get factors of exactly 1 and the identity.
        """
        p, dev, B = self.preset, x.device, x.shape[0]
        bs, cs, ss, hs = p.jitter
        apply = _uniform(0, 1, B, g, dev) < p.jitter_p
        one = torch.ones(B, device=dev)
        b = torch.where(apply, _uniform(1 - bs, 1 + bs, B, g, dev), one).view(-1, 1, 1, 1)
        c = torch.where(apply, _uniform(1 - cs, 1 + cs, B, g, dev), one).view(-1, 1, 1, 1)
        s = _uniform(1 - ss, 1 + ss, B, g, dev)
        ang = 2 * math.pi * _uniform(-hs, hs, B, g, dev)
        y = (x * b).clamp_(0, 1)
        m = _gray(y).mean(dim=(1, 2, 3), keepdim=True)
        y = (y * c).add_((1 - c) * m).clamp_(0, 1)
        if x.shape[1] != 3:
            return y
        eye = torch.eye(3, device=dev).expand(B, 3, 3)
        luma = self.yiq[0].expand(3, 3)  # every row the luma weights (the Y row of YIQ)
        sat = s.view(-1, 1, 1) * eye + (1 - s).view(-1, 1, 1) * luma  # blend with the grey image
        rot = torch.zeros(B, 3, 3, device=dev)  # rotation of the (I, Q) chroma plane
        rot[:, 0, 0] = 1
        rot[:, 1, 1], rot[:, 1, 2] = torch.cos(ang), -torch.sin(ang)
        rot[:, 2, 1], rot[:, 2, 2] = torch.sin(ang), torch.cos(ang)
        mat = self.yiq_inv @ rot @ self.yiq @ sat  # (B, 3, 3), RGB -> RGB
        mat = torch.where(apply.view(-1, 1, 1), mat, eye)
        return torch.bmm(mat, y.reshape(B, 3, -1)).view_as(y).clamp_(0, 1)

    def _blur(self, x: torch.Tensor, g) -> torch.Tensor:
        """Separable Gaussian blur with a per-sample sigma, on a ``blur_p`` share of the images."""
        p, dev = self.preset, x.device
        B, C, H, W = x.shape
        k = max(3, int(0.1 * min(H, W)) // 2 * 2 + 1)  # odd kernel, ~10% of the side (SimCLR)
        apply = (_uniform(0, 1, B, g, dev) < p.blur_p).view(-1, 1, 1, 1)
        sigma = _uniform(p.blur_sigma[0], p.blur_sigma[1], B, g, dev)
        r = torch.arange(k, device=dev, dtype=x.dtype) - k // 2
        kern = torch.exp(-(r[None] ** 2) / (2 * sigma[:, None] ** 2))
        kern = (kern / kern.sum(1, keepdim=True)).repeat_interleave(C, 0)  # (B*C, k)
        y = x.reshape(1, B * C, H, W)
        y = F.conv2d(F.pad(y, (k // 2, k // 2, 0, 0), mode="reflect"), kern.view(B * C, 1, 1, k), groups=B * C)
        y = F.conv2d(F.pad(y, (0, 0, k // 2, k // 2), mode="reflect"), kern.view(B * C, 1, k, 1), groups=B * C)
        return torch.where(apply, y.view(B, C, H, W), x)
