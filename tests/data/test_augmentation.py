"""Batched radiograph augmentation: geometry, flips, intensity, reproducibility."""

import dataclasses

import pytest
import torch
from kornia.enhance import equalize
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from hf_deitcxr.data.augmentation import (
    AugmentationConfig,
    RadiographAugmentation,
    RandomAcquisition,
    acquisition_augmentation,
    framing_augmentation,
)
from hf_deitcxr.data.image_cache import preload_images
from tests.helpers.images import radiograph_like

MEAN3, STD3 = tuple(IMAGENET_DEFAULT_MEAN), tuple(IMAGENET_DEFAULT_STD)


def float_batch(n=4, size=32, channels=1) -> torch.Tensor:
    pixels = preload_images([radiograph_like(seed) for seed in range(n)], size)
    return pixels.float().div(255).expand(-1, channels, -1, -1).contiguous()


def test_augmentation_changes_pixels_but_keeps_shape_and_range():
    images = float_batch()
    config = AugmentationConfig(affine_p=1.0, brightness_p=1.0, gaussian_noise_p=1.0)
    out = RadiographAugmentation(config)(images.clone(), seed=0)
    assert out.shape == images.shape and out.dtype == torch.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert (out - images).abs().mean() > 0.01
    three = RadiographAugmentation()(float_batch(channels=3), seed=0)
    assert three.shape == (4, 3, 32, 32) and 0.0 <= three.min() and three.max() <= 1.0


def test_augmentation_is_reproducible():
    images = float_batch()
    augmentation = RadiographAugmentation()
    torch.testing.assert_close(augmentation(images, seed=7), augmentation(images, seed=7))
    assert not torch.equal(augmentation(images, seed=7), augmentation(images, seed=8))
    torch.manual_seed(1)
    first = augmentation(images)
    torch.manual_seed(1)
    torch.testing.assert_close(augmentation(images), first)
    # A seeded call leaves the global RNG alone.
    state = torch.get_rng_state()
    augmentation(images, seed=3)
    assert torch.equal(torch.get_rng_state(), state)


def only(**probabilities) -> AugmentationConfig:
    """A config with every operation off except the given probabilities."""
    names = ("affine_p", "random_resized_crop_p", "brightness_p", "contrast_p", "gaussian_noise_p")
    off = dict.fromkeys(names, 0.0)
    return AugmentationConfig(**{**off, **probabilities})


def test_geometry_identity_parameters_leave_images_unchanged():
    images = float_batch()
    still = only(random_resized_crop_p=1.0, random_resized_crop_scale=(1.0, 1.0), random_resized_crop_ratio=(1, 1),
                 affine_p=1.0, rotation_degrees=0.0, translate=0.0, scale=(1.0, 1.0))
    torch.testing.assert_close(RadiographAugmentation(still)(images, seed=0), images, atol=1e-5, rtol=0)


def horizontal_slope(images: torch.Tensor) -> float:
    """Mean left-to-right intensity step per pixel in the central region."""
    centre = images[..., 12:20, 12:20]
    return float((centre[..., 1:] - centre[..., :-1]).mean())


@pytest.mark.parametrize(
    ("config", "factor", "black_border"),
    [
        # A box of a quarter of the area (half the width) blown up to the image: magnified 2x, so the ramp
        # rises half as fast per output pixel.
        (only(random_resized_crop_p=1.0, random_resized_crop_scale=(0.25, 0.25), random_resized_crop_ratio=(1, 1)),
         0.5, False),
        # Affine scale 0.5 shrinks the image: twice as steep, inside a black border.
        (only(affine_p=1.0, rotation_degrees=0.0, translate=0.0, scale=(0.5, 0.5)), 2.0, True),
    ],
)
def test_geometry_zoom_direction(config, factor, black_border):
    ramp = torch.linspace(0.2, 0.8, 32).expand(2, 1, 32, 32).contiguous()
    out = RadiographAugmentation(config)(ramp, seed=0)
    assert horizontal_slope(out) == pytest.approx(factor * horizontal_slope(ramp), rel=1e-3)
    border = torch.cat([out[..., 0, :], out[..., -1, :], out[..., :, 0], out[..., :, -1]], dim=-1)
    assert bool((border == 0).all()) == black_border


def test_horizontal_flip_is_off_by_default():
    assert AugmentationConfig().horizontal_flip_p == 0.0
    images = float_batch()
    torch.testing.assert_close(RadiographAugmentation(only())(images, seed=0), images)
    flipped = RadiographAugmentation(only(horizontal_flip_p=1.0))(images, seed=0)
    torch.testing.assert_close(flipped, images.flip(-1))


def test_contrast_stretches_about_the_mean():
    images = float_batch()
    out = RadiographAugmentation(only(contrast_p=1.0, contrast=0.5))(images, seed=0)
    torch.testing.assert_close(out.mean(dim=(1, 2, 3)), images.mean(dim=(1, 2, 3)), atol=0.02, rtol=0)
    assert not torch.allclose(out.std(dim=(1, 2, 3)), images.std(dim=(1, 2, 3)), rtol=0.05)


def test_augmentation_identity_when_disabled_or_eval():
    images = float_batch()
    torch.testing.assert_close(RadiographAugmentation(AugmentationConfig(enabled=False))(images), images)
    torch.testing.assert_close(RadiographAugmentation().eval()(images), images)
    with pytest.raises(ValueError, match="probability"):
        AugmentationConfig(affine_p=1.5)
    with pytest.raises(ValueError, match="float images"):
        RadiographAugmentation()(torch.zeros(2, 1, 8, 8, dtype=torch.uint8))


# --- acquisition/processing changes (issue 14's remedy; off by default) -----------------------------------------


def _high_frequency(images: torch.Tensor) -> float:
    return float((images[..., 1:, :] - images[..., :-1, :]).abs().mean())


def test_acquisition_changes_are_off_by_default_and_draw_nothing():
    images = float_batch(size=64)
    torch.manual_seed(5)
    state = torch.get_rng_state()
    out = RandomAcquisition(AugmentationConfig())(images)
    assert out is images and torch.equal(torch.get_rng_state(), state)  # so default runs keep their RNG stream


@pytest.mark.parametrize(
    ("overrides", "check"),
    [
        ({"gamma_p": 1.0, "gamma": (1.5, 1.5)}, lambda x, y: torch.allclose(y, x**1.5, atol=1e-6)),
        ({"equalize_p": 1.0, "equalize_strength": (1.0, 1.0)}, lambda x, y: torch.allclose(y, equalize(x), atol=1e-6)),
        ({"blur_p": 1.0, "blur_sigma": (5.0, 5.0)}, lambda x, y: _high_frequency(y) < 0.7 * _high_frequency(x)),
        ({"resample_p": 1.0, "resample_scale": (0.4, 0.4)}, lambda x, y: _high_frequency(y) < 0.7 * _high_frequency(x)),
    ],
)
def test_each_acquisition_change_does_what_it_says(overrides, check):
    images = float_batch(size=64)
    out = RandomAcquisition(AugmentationConfig(**overrides))(images)
    assert out.shape == images.shape and check(images, out)


def test_acquisition_augmentation_is_seeded_and_stays_in_range():
    augment = RadiographAugmentation(acquisition_augmentation(probability=1.0)).train()
    images = float_batch(8, size=64)
    first, second = augment(images, seed=3), augment(images, seed=3)
    assert torch.equal(first, second) and not torch.equal(first, augment(images, seed=4))
    assert float(first.min()) >= 0.0 and float(first.max()) <= 1.0


@pytest.mark.parametrize("overrides", [{"resample_scale": (0.5, 1.2)}, {"gamma": (0.0, 1.0)},
                                       {"equalize_strength": (0.8, 0.2)}, {"blur_p": 1.5}])
def test_bad_acquisition_settings_are_refused(overrides):
    with pytest.raises(ValueError):
        AugmentationConfig(**overrides)


def test_framing_augmentation_crops_wider_and_keeps_the_random_stream():
    framing = framing_augmentation()
    assert framing.random_resized_crop_scale == (0.6, 1.0) and framing.random_resized_crop_p == 0.5
    assert framing.scale == AugmentationConfig().scale  # only the crop changes
    assert framing_augmentation(acquisition_augmentation()).gamma_p == 0.3  # composes with the acquisition changes
    images = float_batch(n=16, size=32)
    torch.manual_seed(3)
    RadiographAugmentation(AugmentationConfig())(images.clone())
    after_default = torch.get_rng_state()
    torch.manual_seed(3)
    out = RadiographAugmentation(framing)(images.clone())
    assert torch.equal(torch.get_rng_state(), after_default)  # the same numbers drawn: later batches unchanged
    assert out.shape == images.shape
    # crops alone, on every image: the wider range (zooms up to 1.29, the default's up to 1.12) moves pixels more
    only_crops = dict(affine_p=0.0, brightness_p=0.0, contrast_p=0.0, gaussian_noise_p=0.0, random_resized_crop_p=1.0)
    change = {}
    for name, config in (("default", AugmentationConfig()), ("framing", framing)):
        cropped = RadiographAugmentation(dataclasses.replace(config, **only_crops))(images.clone(), seed=0)
        change[name] = float((cropped - images).abs().mean())
    assert change["framing"] > 1.3 * change["default"] > 0
