"""Two-view augmentation: shapes, view-major order, determinism, presets, and the colour maths."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from deepfusion.errors import ConfigError, DataError
from deepfusion.model.data.augment import AUGMENT_PRESETS, PRESETS, Augment, build_augment, default_preset

SHAPES = {  # a data shape each preset is meant for
    "cifar": ("image", (3, 32, 32)),
    "tiny_imagenet": ("image", (3, 64, 64)),
    "fashion_mnist": ("image", (1, 28, 28)),
    "fashion_mnist_jitter": ("image", (1, 28, 28)),
    "digits": ("image", (1, 8, 8)),
    "synthetic_images": ("image", (3, 16, 16)),
    "vector": ("vector", (32,)),
    "signal": ("vector", (40,)),
    "crop_flip": ("image", (4, 12, 12)),
    "none": ("image", (3, 8, 8)),
}


def _batch(kind, shape, n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    if kind == "image":
        return torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)
    return torch.randn((n, *shape), generator=g)


def test_every_named_preset_has_a_test_shape():
    assert set(SHAPES) == set(PRESETS)


@pytest.mark.parametrize("preset", list(SHAPES))
def test_two_views_shape_dtype_and_finite(preset):
    kind, shape = SHAPES[preset]
    aug = build_augment(preset, kind, shape)
    out = aug.two_views(_batch(kind, shape), generator=torch.Generator().manual_seed(1))
    assert out.shape == (12, *shape) and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert aug.eval_view(_batch(kind, shape)).shape == (6, *shape)


@pytest.mark.parametrize("preset", [p for p in SHAPES if p != "none"])
def test_seeded_generator_gives_the_same_views_and_views_differ(preset):
    kind, shape = SHAPES[preset]
    aug, x = build_augment(preset, kind, shape), _batch(kind, shape)
    a = aug.two_views(x, generator=torch.Generator().manual_seed(5))
    b = aug.two_views(x, generator=torch.Generator().manual_seed(5))
    c = aug.two_views(x, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[:6], a[6:])  # the two views of a sample are different draws


def test_global_rng_is_used_without_a_generator():
    aug, x = build_augment("cifar", "image", (3, 32, 32)), _batch("image", (3, 32, 32))
    torch.manual_seed(3)
    a = aug.two_views(x)
    torch.manual_seed(3)
    assert torch.equal(a, aug.two_views(x))


def test_views_are_view_major():
    # Constant images survive crops and flips unchanged, so view k and view B+k must equal sample k.
    levels = torch.tensor([0, 40, 90, 160, 255], dtype=torch.uint8)
    x = levels.view(-1, 1, 1, 1).expand(-1, 1, 28, 28).contiguous()
    aug = build_augment("fashion_mnist", "image", (1, 28, 28))
    out = aug.two_views(x, generator=torch.Generator().manual_seed(0))
    ref = aug.eval_view(x)
    assert torch.allclose(out[:5], ref, atol=1e-5) and torch.allclose(out[5:], ref, atol=1e-5)


def test_eval_view_is_deterministic_and_normalised():
    aug, x = build_augment("cifar", "image", (3, 32, 32)), _batch("image", (3, 32, 32))
    expect = (x.float() / 255 - torch.tensor(PRESETS["cifar"].mean).view(3, 1, 1)) / torch.tensor(
        PRESETS["cifar"].std
    ).view(3, 1, 1)
    assert torch.equal(aug.eval_view(x), aug.eval_view(x)) and torch.allclose(aug.eval_view(x), expect, atol=1e-6)


def test_none_preset_repeats_the_eval_view():
    aug, x = build_augment("none", "image", (3, 8, 8)), _batch("image", (3, 8, 8))
    assert torch.equal(aug.two_views(x), torch.cat([aug.eval_view(x)] * 2))
    vec = build_augment("none", "vector", (4,))
    v = torch.randn(3, 4)
    assert torch.equal(vec.two_views(v), torch.cat([v, v])) and torch.equal(vec.eval_view(v), v)


def test_vector_preset_adds_noise_and_masks_features():
    aug = build_augment("vector", "vector", (2000,))
    x = torch.ones(2, 2000)
    out = aug.two_views(x, generator=torch.Generator().manual_seed(0))
    zero_share = float((out == 0).float().mean())
    assert abs(zero_share - PRESETS["vector"].mask_p) < 0.03
    kept = out[out != 0]
    assert abs(float(kept.std()) - PRESETS["vector"].noise) < 0.01


def test_uint8_and_float_inputs_agree():
    aug, x = build_augment("synthetic_images", "image", (3, 16, 16)), _batch("image", (3, 16, 16))
    a = aug.two_views(x, generator=torch.Generator().manual_seed(2))
    b = aug.two_views(x.float() / 255, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(a, b, atol=1e-5)


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(ConfigError) as err:
        build_augment("simclr", "image", (3, 32, 32))
    assert all(p in str(err.value) for p in AUGMENT_PRESETS)


@pytest.mark.parametrize(
    "preset, kind, shape",
    [
        ("cifar", "image", (1, 28, 28)),  # colour preset on grey images
        ("digits", "image", (3, 8, 8)),
        ("vector", "image", (3, 8, 8)),
        ("cifar", "vector", (32,)),
        ("cifar", "images", (3, 32, 32)),
        ("cifar", "image", (32, 32)),
    ],
)
def test_mismatched_preset_and_data_raise_config_error(preset, kind, shape):
    with pytest.raises(ConfigError):
        build_augment(preset, kind, shape)


def test_wrong_input_shape_or_dtype_raise_data_error():
    aug = build_augment("cifar", "image", (3, 32, 32))
    with pytest.raises(DataError, match="shape"):
        aug.two_views(torch.zeros(2, 3, 28, 28, dtype=torch.uint8))
    with pytest.raises(DataError, match="uint8 or float"):
        aug.eval_view(torch.zeros(2, 3, 32, 32, dtype=torch.int32))


@pytest.mark.parametrize(
    "kind, shape, expect",
    [
        ("vector", (10,), "vector"),
        ("image", (1, 8, 8), "digits"),
        ("image", (1, 28, 28), "fashion_mnist_jitter"),
        ("image", (3, 16, 16), "synthetic_images"),
        ("image", (3, 32, 32), "cifar"),
        ("image", (3, 64, 64), "tiny_imagenet"),
    ],
)
def test_default_preset_follows_the_data(kind, shape, expect):
    assert default_preset(kind, shape) == expect
    assert build_augment("default", kind, shape).name == expect


def test_digits_statistics_match_the_data():
    from deepfusion.model.data import load_dataset

    ds = load_dataset("digits", test_fraction=0.2)
    x = ds.x.float() / 255
    assert abs(float(x.mean()) - PRESETS["digits"].mean[0]) < 0.01
    assert abs(float(x.std()) - PRESETS["digits"].std[0]) < 0.01


def test_synthetic_image_statistics_match_the_generator_on_average():
    from deepfusion.model.data import load_dataset

    xs = torch.cat([load_dataset("synthetic_images", seed=s, samples_per_class=20).x for s in range(8)]).float() / 255
    assert abs(float(xs.mean()) - PRESETS["synthetic_images"].mean[0]) < 0.03
    assert abs(float(xs.std()) - PRESETS["synthetic_images"].std[0]) < 0.03


def _jitter_only(**changes) -> Augment:
    p = replace(PRESETS["cifar"], crop_scale=None, flip=0.0, gray_p=0.0, **changes)
    return Augment("test", p, (3, 8, 8), "image")


def test_colour_jitter_keeps_grey_pixels_grey():
    # Hue rotates the chroma plane and saturation blends toward grey: neither may colour a grey pixel.
    aug = _jitter_only(jitter=(0.0, 0.0, 0.4, 0.5), jitter_p=1.0)
    x = torch.rand(16, 1, 8, 8).expand(-1, 3, -1, -1).contiguous()
    out = aug._jitter(x, torch.Generator().manual_seed(0))
    assert torch.allclose(out, x, atol=1e-5)


def test_colour_jitter_with_zero_probability_is_the_identity():
    aug = _jitter_only(jitter_p=0.0)
    x = torch.rand(4, 3, 8, 8)
    assert torch.equal(aug.two_views(x, generator=torch.Generator().manual_seed(0)), torch.cat([aug.eval_view(x)] * 2))


def test_hue_shift_changes_colour_but_not_luma():
    aug = _jitter_only(jitter=(0.0, 0.0, 0.0, 0.1), jitter_p=1.0)
    x = torch.full((8, 3, 4, 4), 0.5)
    x[:, 0] = 0.6  # a muted red that no clamp touches
    out = aug._jitter(x, torch.Generator().manual_seed(0))
    luma = lambda t: 0.299 * t[:, 0] + 0.587 * t[:, 1] + 0.114 * t[:, 2]  # noqa: E731
    assert not torch.allclose(out, x, atol=1e-3) and torch.allclose(luma(out), luma(x), atol=1e-5)


def test_blur_smooths_half_the_images():
    aug = build_augment("tiny_imagenet", "image", (3, 64, 64))
    x = torch.rand(64, 3, 64, 64)
    out = aug._blur(x, torch.Generator().manual_seed(0))
    changed = (out - x).abs().flatten(1).amax(1) > 1e-6
    assert 16 < int(changed.sum()) < 48
    assert float(out[changed].diff(dim=-1).abs().mean()) < float(x[changed].diff(dim=-1).abs().mean())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("preset", list(SHAPES))
def test_two_views_on_cuda_with_a_cuda_generator(preset):
    kind, shape = SHAPES[preset]
    aug = build_augment(preset, kind, shape).to("cuda")
    x = _batch(kind, shape).cuda()
    a = aug.two_views(x, generator=torch.Generator(device="cuda").manual_seed(0))
    b = aug.two_views(x, generator=torch.Generator(device="cuda").manual_seed(0))
    assert a.device.type == "cuda" and torch.equal(a, b) and a.shape == (12, *shape)
    c = aug.two_views(x, generator=torch.Generator().manual_seed(0))  # a CPU generator also works
    assert c.device.type == "cuda"


# -- vector augmentation set from the config --------------------------------------------------


def test_vector_noise_mask_and_mix_replace_the_presets_values():
    aug = build_augment("vector", "vector", (16,), noise=0.0, mask=0.0, mix=0.5)
    assert (aug.preset.noise, aug.preset.mask_p, aug.preset.mix_p) == (0.0, 0.0, 0.5)
    assert build_augment("vector", "vector", (16,)).preset == PRESETS["vector"]  # None keeps the preset


def test_mixing_takes_each_feature_from_some_sample_of_the_batch():
    x = torch.arange(8 * 5, dtype=torch.float32).view(8, 5)  # every entry distinct
    aug = build_augment("vector", "vector", (5,), noise=0.0, mask=0.0, mix=0.5)
    views = aug.two_views(x, generator=torch.Generator().manual_seed(0))
    for j in range(5):
        assert set(views[:, j].tolist()) <= set(x[:, j].tolist())  # a feature only ever comes from its own column
    changed = (views != torch.cat([x, x])).float().mean()
    assert 0.2 < changed < 0.6  # about mix * (1 - 1/2B) of the entries come from another row
    none = build_augment("vector", "vector", (5,), noise=0.0, mask=0.0, mix=0.0)
    assert torch.equal(none.two_views(x, generator=torch.Generator().manual_seed(0)), torch.cat([x, x]))


def test_mask_and_mix_are_refused_for_images():
    with pytest.raises(ConfigError, match="data.aug_mask"):
        build_augment("digits", "image", (1, 8, 8), mask=0.2)
    assert build_augment("digits", "image", (1, 8, 8), noise=0.3).preset.noise == 0.3


@pytest.mark.parametrize("channels", [2, 4])
def test_images_of_other_channel_counts_get_the_channel_agnostic_preset(channels):
    assert default_preset("image", (channels, 16, 16)) == "crop_flip"
    build_augment("default", "image", (channels, 16, 16))


def test_fashion_mnist_jitter_changes_grey_levels_and_plain_preset_does_not():
    # A flat grey image survives crops and flips (away from the border); only the jitter moves its level.
    x = torch.full((64, 1, 28, 28), 128, dtype=torch.uint8)
    plain = build_augment("fashion_mnist", "image", (1, 28, 28)).two_views(x, torch.Generator().manual_seed(0))
    jitter = build_augment("fashion_mnist_jitter", "image", (1, 28, 28)).two_views(x, torch.Generator().manual_seed(0))
    plain, jitter = plain[..., 2:-2, 2:-2], jitter[..., 2:-2, 2:-2]  # a crop at the border samples the padding
    assert torch.allclose(plain, plain[:1].expand_as(plain), atol=1e-5)
    levels = jitter.mean(dim=(1, 2, 3))
    assert levels.std() > 0.1 and (jitter.amax(dim=(1, 2, 3)) - jitter.amin(dim=(1, 2, 3))).max() < 1e-4


def _bump(n=4, length=40, centre=0.0):
    t = torch.linspace(-1, 1, length)
    return torch.exp(-(((t - centre) / 0.1) ** 2)).repeat(n, 1)


def test_signal_shift_moves_the_signal_along_its_positions():
    from deepfusion.model.data.augment_signal import shift_stretch_scale

    x = _bump(centre=0.0)
    g = torch.Generator().manual_seed(0)
    y = shift_stretch_scale(x, shift=0.2, zoom=(1.0, 1.0), scale=(1.0, 1.0), g=g)
    peaks = y.argmax(1)
    assert (peaks != x.argmax(1)).any()  # moved
    assert ((peaks - x.argmax(1)).abs() <= 0.2 * 40 + 1).all()  # by at most the shift
    torch.testing.assert_close(y.max(1).values, x.max(1).values, atol=0.15, rtol=0)  # the bump kept its height


def test_signal_stretch_widens_or_narrows_and_scale_multiplies():
    from deepfusion.model.data.augment_signal import shift_stretch_scale

    x = _bump(n=1)
    wide = shift_stretch_scale(x, 0.0, (2.0, 2.0), (1.0, 1.0))  # zoom in: the bump spans more positions
    assert (wide > 0.5).sum() > (x > 0.5).sum()
    torch.testing.assert_close(shift_stretch_scale(x, 0.0, (1.0, 1.0), (3.0, 3.0)), 3 * x)
    torch.testing.assert_close(shift_stretch_scale(x, 0.0, (1.0, 1.0), (1.0, 1.0)), x)  # identity


def test_signal_preset_is_for_vectors_only():
    with pytest.raises(ConfigError, match="'signal'"):
        build_augment("signal", "image", (1, 28, 28))
