"""The augmented view bank (hf_deitcxr/data/view_bank.py): views re-created from (seed, view), built exactly as the
training collator augments, different from one another; its collator's seeded view draw; the 64 px augmentation."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hf_deitcxr.data.augmentation import (
    AugmentationConfig,
    RadiographAugmentation,
    acquisition_augmentation,
    augmentation_preset,
    framing_augmentation,
    low_resolution_augmentation,
)
from hf_deitcxr.data.collate import RadiographCollator, derive_seed
from hf_deitcxr.data.image_cache import CachedImageDataset, preload_images
from hf_deitcxr.data.view_bank import AugmentedViewBank, ViewBankCollator, render_view
from hf_deitcxr.training.arguments import DataArguments
from hf_deitcxr.training.run import augmentation_config
from tests.helpers.images import radiograph_like

CACHE_SIZE, SIZE, CHUNK = 40, 32, 4  # a cache size other than the input size: the bank resizes as the collator does
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def dataset(count: int = 10) -> CachedImageDataset:
    pixels = preload_images([radiograph_like(i, (CACHE_SIZE, CACHE_SIZE)) for i in range(count)], CACHE_SIZE)
    return CachedImageDataset(pixels, [i % 3 for i in range(count)])


def build(num_views: int = 3, seed: int = 5, data: CachedImageDataset | None = None, **kwargs) -> AugmentedViewBank:
    return AugmentedViewBank.build(data or dataset(), num_views, size=SIZE, augmentation=RadiographAugmentation(),
                                   seed=seed, mean=MEAN, std=STD, num_channels=3, chunk_size=CHUNK, **kwargs)


def test_views_are_recreated_from_seed_and_view_alone_and_differ():
    data = dataset()
    bank = build(3, data=data)
    assert bank.views.shape == (3, 10, 1, SIZE, SIZE) and bank.views.dtype == torch.uint8
    for view in range(3):
        again = render_view(data.pixels, view, size=SIZE, augmentation=RadiographAugmentation(), seed=5,
                            chunk_size=CHUNK)
        assert torch.equal(again, bank.views[view])
    assert torch.equal(build(1, data=data).views[0], bank.views[0])  # a view does not depend on K
    for first, second in ((0, 1), (0, 2), (1, 2)):
        for image in range(10):
            assert not torch.equal(bank.views[first, image], bank.views[second, image]), (first, second, image)
    assert not torch.equal(build(3, seed=6, data=data).views, bank.views)


def test_a_view_is_the_training_collators_augmentation_quantised():
    data = dataset()
    bank = build(2, data=data)
    # mean 0, std 1, one channel: the collator's transform returns the augmented [0, 1] pixels themselves
    identity = RadiographCollator(SIZE, [0.0], [1.0], num_channels=1, augmentation=RadiographAugmentation())
    view, chunk = 1, 2  # images 8 and 9
    augmented = identity.transform(data.pixels[8:], seed=derive_seed([5, view, chunk]))
    assert torch.equal(bank.views[view, 8:], augmented.mul(255).round().to(torch.uint8))


def test_bank_refuses_no_views_an_idle_augmentation_and_too_large_a_bank():
    with pytest.raises(ValueError, match="at least one view"):
        build(0)
    with pytest.raises(ValueError, match="fewer views"):
        build(4, max_bytes=4 * 10 * SIZE * SIZE - 1)
    assert build(4, max_bytes=4 * 10 * SIZE * SIZE).num_views == 4
    with pytest.raises(ValueError, match="augmentation"):
        AugmentedViewBank.build(dataset(), 2, size=SIZE, augmentation=RadiographAugmentation().eval(), seed=0,
                                mean=MEAN, std=STD)
    with pytest.raises(TypeError, match="distinct_images"):
        AugmentedViewBank.build(torch.utils.data.Subset(dataset(), [0, 0, 1]), 2, size=SIZE,
                                augmentation=RadiographAugmentation(), seed=0, mean=MEAN, std=STD)
    described = build(2).describe()
    assert described["num_views"] == 2 and described["seed"] == 5 and described["chunk_size"] == CHUNK
    assert described["augmentation"] == dataclasses.asdict(AugmentationConfig())


def test_collator_draws_seeded_views_and_normalises_like_the_radiograph_collator():
    data = dataset()
    bank = build(3, data=data)
    collate = ViewBankCollator(bank, seed=0)
    features = [data[i] for i in (7, 2, 2, 9)]
    batch = collate(features)
    assert set(batch) == {"pixel_values", "labels", "sample_index", "view_index"}
    assert batch["sample_index"].tolist() == [7, 2, 2, 9] and batch["labels"].tolist() == [1, 2, 2, 0]
    again = collate(features)  # the same batch draws the same views, whenever it is collated
    assert torch.equal(again["view_index"], batch["view_index"]) and torch.equal(again["pixel_values"],
                                                                                 batch["pixel_values"])
    # the pixels: the chosen views, normalised exactly as RadiographCollator normalises uint8 images of that size
    plain = RadiographCollator(SIZE, MEAN, STD, num_channels=3)
    items = [{"pixels": bank.views[v, i], "labels": 0} for v, i in zip(batch["view_index"], batch["sample_index"],
                                                                       strict=True)]
    assert batch["pixel_values"].shape == (4, 3, SIZE, SIZE)
    assert torch.equal(batch["pixel_values"], plain(items)["pixel_values"])

    draws = torch.stack([collate([data[i] for i in range(b, b + 4)])["view_index"] for b in range(6)])
    assert set(draws.flatten().tolist()) == {0, 1, 2}  # every view is used
    other_seed = torch.stack([ViewBankCollator(bank, seed=1)([data[i] for i in range(b, b + 4)])["view_index"]
                              for b in range(6)])
    assert not torch.equal(draws, other_seed)
    with pytest.raises(KeyError, match="index"):
        collate([{"pixels": data.pixels[0], "labels": 0}])


def test_low_resolution_augmentation_is_sized_for_64_px():
    config = low_resolution_augmentation()
    assert (config.affine_p, config.rotation_degrees, config.translate, config.scale) == (0.5, 5.0, 0.03, (0.95, 1.05))
    assert (config.random_resized_crop_p, config.random_resized_crop_scale) == (0.3, (0.85, 1.0))
    assert (config.brightness, config.brightness_p, config.contrast, config.contrast_p) == (0.1, 0.5, 0.15, 0.5)
    assert config.gaussian_noise_p == 0.0 and config.horizontal_flip_p == 0.0
    assert config.resample_p == config.blur_p == config.gamma_p == config.equalize_p == 0.0
    assert augmentation_preset("low_resolution") == config and augmentation_preset("default") == AugmentationConfig()
    with pytest.raises(ValueError, match="preset"):
        augmentation_preset("strong")


def test_the_preset_comes_first_then_acquisition_and_framing():
    assert acquisition_augmentation() == AugmentationConfig(resample_p=0.3, blur_p=0.3, gamma_p=0.3, equalize_p=0.3)
    args = DataArguments(dataset="d", augmentation_preset="low_resolution", acquisition_augment=True,
                         framing_augment=True)
    config = augmentation_config(args)
    assert config.rotation_degrees == 5.0 and config.gaussian_noise_p == 0.0  # the preset
    assert config.gamma_p == 0.3  # acquisition on top
    assert config.random_resized_crop_scale == (0.6, 1.0) and config.random_resized_crop_p == 0.5  # framing on top
    assert config == framing_augmentation(acquisition_augmentation(base=low_resolution_augmentation()))
    assert augmentation_config(DataArguments(dataset="d")) == AugmentationConfig()
