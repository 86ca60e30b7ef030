import numpy as np
import pytest
import torch
from PIL import Image
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from hf_deitcxr.data import image_cache
from hf_deitcxr.data.augmentation import AugmentationConfig, RadiographAugmentation
from hf_deitcxr.data.collate import RadiographCollator, eval_transform_for_pil
from hf_deitcxr.data.image_cache import CachedImageDataset, preload_images
from hf_deitcxr.data.input_spec import normalization_from_image_processor
from hf_deitcxr.models.deit_cxr.image_processing_deit_cxr import GREY_MEAN, GREY_STD, make_image_processor

MEAN3, STD3 = tuple(IMAGENET_DEFAULT_MEAN), tuple(IMAGENET_DEFAULT_STD)


def radiograph_like(seed: int, size=(48, 40), mode="L") -> Image.Image:
    """A smooth random image (a blurred gradient plus blobs), so resizing and warps change it measurably."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    array = 60 + 120 * x / size[0] + 40 * np.sin(y / 5.0) + rng.normal(0, 10, (size[1], size[0]))
    grey = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))
    return grey.convert(mode)


def half_black_half_white(width=40, height=30) -> Image.Image:
    array = np.zeros((height, width), dtype=np.uint8)
    array[:, width // 2 :] = 255
    return Image.fromarray(array)


def items_from(images, labels=None):
    pixels = preload_images(images, 32)
    labels = labels if labels is not None else [i % 3 for i in range(len(pixels))]
    return CachedImageDataset(pixels, labels)


# --- decode once --------------------------------------------------------------------------------------------


def test_preload_shape_dtype_and_values():
    colour = radiograph_like(0, mode="RGB")
    constant = Image.new("L", (50, 70), 200)
    pixels = preload_images([colour, half_black_half_white(), constant], 16, num_workers=2)
    assert pixels.shape == (3, 1, 16, 16) and pixels.dtype == torch.uint8
    expected = np.asarray(colour.convert("L").resize((16, 16), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(pixels[0, 0].numpy(), expected)
    # Squashed, not cropped: both halves survive at their side, whatever the aspect ratio.
    assert (pixels[1, 0, :, :6] == 0).all() and (pixels[1, 0, :, -6:] == 255).all()
    assert (pixels[2] == 200).all()


def test_preload_threads_match_single_thread_and_handle_16_bit():
    images = [radiograph_like(seed) for seed in range(5)]
    single = preload_images(images, 24, num_workers=1)
    torch.testing.assert_close(single, preload_images(images, 24, num_workers=3))
    # A generator (length unknown) gives the same result, in chunks.
    torch.testing.assert_close(single, preload_images(iter(images), 24, chunk_size=2))
    with pytest.raises(ValueError, match="announced"):
        preload_images(iter(images), 24, length=4)
    sixteen = Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16))  # 0..65520
    grey = preload_images([sixteen], 64)[0, 0]
    assert grey.min() == 0 and grey.max() == 255  # min-max scaled, not clipped at 255 like PIL's convert("L")
    assert preload_images([], 8).shape == (0, 1, 8, 8)


def test_cached_dataset_from_hf_dataset(tmp_path, monkeypatch):
    from datasets import ClassLabel, Dataset, Features, Value
    from datasets import Image as ImageFeature

    images = [radiograph_like(seed, size=(40 + seed, 30)) for seed in range(4)]
    features = Features(image=ImageFeature(), label=ClassLabel(names=["normal", "pneumonia"]),
                        source=Value("string"), patient_id=Value("string"), note=Value("string"))
    ds = Dataset.from_dict(
        {"image": images, "label": [0, 1, 1, 0], "source": ["a", "a", "b", "b"],
         "patient_id": ["p1", "p1", "p2", "p3"], "note": ["x"] * 4},
        features=features,
    )
    data = CachedImageDataset.from_hf_dataset(ds, size=20, cache_dir=tmp_path)
    assert len(data) == 4 and data.pixels.shape == (4, 1, 20, 20) and data.image_size == 20
    assert data.labels.tolist() == [0, 1, 1, 0] and data.labels.dtype == torch.int64
    assert data.extras == {"source": ["a", "a", "b", "b"], "patient_id": ["p1", "p1", "p2", "p3"]}
    assert data.label_names == ["normal", "pneumonia"]
    torch.testing.assert_close(data.pixels, preload_images(images, 20))
    item = data[2]
    assert set(item) == {"pixels", "labels", "index"} and item["labels"] == 1 and item["index"] == 2
    assert item["pixels"].shape == (1, 20, 20) and item["pixels"].dtype == torch.uint8

    # The second run loads the saved pixels instead of decoding.
    assert len(list(tmp_path.glob("*.pt"))) == 1
    monkeypatch.setattr(image_cache, "preload_images", lambda *a, **k: pytest.fail("decoded again"))
    again = CachedImageDataset.from_hf_dataset(ds, size=20, cache_dir=tmp_path)
    torch.testing.assert_close(again.pixels, data.pixels)
    monkeypatch.undo()
    # Other rows (a new fingerprint) or another size are decoded, not served from the cache.
    reordered = CachedImageDataset.from_hf_dataset(ds.select([3, 2, 1, 0]), size=20, cache_dir=tmp_path)
    torch.testing.assert_close(reordered.pixels, data.pixels.flip(0))
    assert CachedImageDataset.from_hf_dataset(ds, size=12, cache_dir=tmp_path).image_size == 12
    assert len(list(tmp_path.glob("*.pt"))) == 3
    with pytest.raises(ValueError, match="column 'img'"):
        CachedImageDataset.from_hf_dataset(ds, size=20, image_column="img")
    with pytest.raises(ValueError, match="integer class indices"):
        CachedImageDataset.from_hf_dataset(ds, size=20, label_column="source")


def test_cached_dataset_validates_inputs():
    with pytest.raises(ValueError, match="uint8"):
        CachedImageDataset(torch.zeros(2, 1, 4, 4), [0, 1])
    with pytest.raises(ValueError, match="labels"):
        CachedImageDataset(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), [0])


# --- augmentation -------------------------------------------------------------------------------------------


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


# --- collator -----------------------------------------------------------------------------------------------


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
