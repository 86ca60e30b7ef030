"""Decode once: grey, resized, cached pixels and the data set over them."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from hf_deitcxr.data import image_cache
from hf_deitcxr.data.image_cache import CachedImageDataset, preload_images
from tests.helpers.images import half_black_half_white, radiograph_like

MEAN3, STD3 = tuple(IMAGENET_DEFAULT_MEAN), tuple(IMAGENET_DEFAULT_STD)


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
