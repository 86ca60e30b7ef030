"""Collation and normalisation: batches, one PIL image, and the saved processor's numbers."""

import pytest
import torch
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from hf_deitcxr.data.augmentation import RadiographAugmentation
from hf_deitcxr.data.collate import RadiographCollator, eval_transform_for_pil
from hf_deitcxr.data.image_cache import CachedImageDataset
from hf_deitcxr.data.input_spec import normalization_from_image_processor
from hf_deitcxr.models.deit_cxr.image_processing_deit_cxr import GREY_MEAN, GREY_STD, make_image_processor
from tests.helpers.images import items_from, radiograph_like

MEAN3, STD3 = tuple(IMAGENET_DEFAULT_MEAN), tuple(IMAGENET_DEFAULT_STD)


@pytest.mark.parametrize(("num_channels", "mean", "std"), [(1, GREY_MEAN, GREY_STD), (3, MEAN3, STD3)])
def test_collator_shapes_dtypes_and_normalisation(num_channels, mean, std):
    value = 180
    data = CachedImageDataset(torch.full((3, 1, 32, 32), value, dtype=torch.uint8), [0, 2, 1])
    batch = RadiographCollator(32, mean, std, num_channels=num_channels)([data[i] for i in range(3)])
    assert set(batch) == {"pixel_values", "labels"}
    pixels = batch["pixel_values"]
    assert pixels.shape == (3, num_channels, 32, 32) and pixels.dtype == torch.float32
    assert pixels.is_contiguous()
    assert batch["labels"].tolist() == [0, 2, 1] and batch["labels"].dtype == torch.int64
    for channel in range(num_channels):
        expected = (value / 255 - mean[channel]) / std[channel]
        torch.testing.assert_close(pixels[:, channel], torch.full((3, 32, 32), expected), atol=1e-6, rtol=0)


def test_collator_resizes_augments_and_returns_indices():
    data = items_from([radiograph_like(seed) for seed in range(4)])
    features = [data[i] for i in range(4)]
    collate = RadiographCollator(16, MEAN3, STD3, augmentation=RadiographAugmentation(), return_indices=True)
    torch.manual_seed(0)
    batch = collate(features)
    assert set(batch) == {"pixel_values", "labels", "sample_index"}
    assert batch["pixel_values"].shape == (4, 3, 16, 16) and batch["sample_index"].tolist() == [0, 1, 2, 3]
    # Replicated grey: the three channels are the same image under different statistics.
    grey = batch["pixel_values"] * torch.tensor(STD3).view(1, 3, 1, 1) + torch.tensor(MEAN3).view(1, 3, 1, 1)
    torch.testing.assert_close(grey[:, 0], grey[:, 2], atol=1e-5, rtol=0)
    eval_batch = RadiographCollator(16, MEAN3, STD3)(features)
    assert not torch.allclose(batch["pixel_values"], eval_batch["pixel_values"])
    with pytest.raises(KeyError, match="index"):
        collate([{"pixels": data.pixels[0], "labels": 0}])


def test_collator_with_dataloader_and_subset_keeps_original_indices():
    data = items_from([radiograph_like(seed) for seed in range(6)])
    subset = torch.utils.data.Subset(data, [5, 5, 1])
    loader = torch.utils.data.DataLoader(
        subset, batch_size=3, collate_fn=RadiographCollator(32, GREY_MEAN, GREY_STD, 1, return_indices=True)
    )
    batch = next(iter(loader))
    assert batch["sample_index"].tolist() == [5, 5, 1]
    assert batch["labels"].tolist() == [data.labels[5], data.labels[5], data.labels[1]]


def test_collator_rejects_mismatched_statistics():
    with pytest.raises(ValueError, match="do not fit 1 channels"):
        RadiographCollator(32, MEAN3, STD3, num_channels=1)
    with pytest.raises(ValueError, match="num_channels"):
        RadiographCollator(32, GREY_MEAN, GREY_STD, num_channels=2)


# --- inference path -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_channels", [1, 3])
def test_eval_transform_matches_collator_and_saved_processor(num_channels):
    image = radiograph_like(3, size=(70, 50), mode="RGB")
    processor = make_image_processor(32, num_channels)
    mean, std, size = normalization_from_image_processor(processor)
    single = eval_transform_for_pil(image, size, mean, std, num_channels)
    assert single.shape == (1, num_channels, 32, 32) and single.dtype == torch.float32
    data = items_from([image])
    batch = RadiographCollator(size, mean, std, num_channels)([data[0]])
    assert torch.equal(single, batch["pixel_values"])
    expected = processor(image, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(single, expected, atol=1e-5, rtol=0)


def test_normalization_from_image_processor():
    from transformers.models.deit.image_processing_pil_deit import DeiTImageProcessorPil

    assert normalization_from_image_processor(make_image_processor(64, 3)) == (MEAN3, STD3, 64)
    grey = (tuple(GREY_MEAN), tuple(GREY_STD), 48)
    assert normalization_from_image_processor(make_image_processor(48, 1)) == grey
    stock = DeiTImageProcessorPil()  # resize 256 then centre-crop 224: the model sees 224
    assert normalization_from_image_processor(stock)[2] == 224

    class Plain:
        image_mean, image_std, size, do_center_crop = 0.5, 0.25, {"shortest_edge": 96}, False

    assert normalization_from_image_processor(Plain()) == ((0.5,), (0.25,), 96)


def test_seeded_augmentation_depends_on_the_batch_not_on_the_global_rng():
    collator = RadiographCollator(32, GREY_MEAN, GREY_STD, num_channels=1, augmentation=RadiographAugmentation(),
                                  augmentation_seed=7)
    items = items_from([radiograph_like(seed) for seed in range(4)])
    batch = [items[i] for i in range(4)]
    state = torch.get_rng_state()
    first = collator(batch)["pixel_values"]
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG (dropout, stochastic depth) is untouched
    torch.manual_seed(123)  # whatever the global RNG holds, the same batch gets the same augmentation
    assert torch.equal(collator(batch)["pixel_values"], first)
    plain = RadiographCollator(32, GREY_MEAN, GREY_STD, num_channels=1)(batch)["pixel_values"]
    assert not torch.equal(first, plain)  # it does augment
    reordered = collator(batch[::-1])["pixel_values"]
    assert not torch.equal(reordered, first.flip(0))  # another batch (order) draws other parameters
    other_seed = RadiographCollator(32, GREY_MEAN, GREY_STD, num_channels=1, augmentation=RadiographAugmentation(),
                                    augmentation_seed=8)(batch)["pixel_values"]
    assert not torch.equal(other_seed, first)
    with pytest.raises(KeyError, match="index"):
        collator([{"pixels": item["pixels"], "labels": item["labels"]} for item in batch])
