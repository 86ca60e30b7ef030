"""Border removal and intensity normalisation (`GreyPreprocessing`): what they do to an image, and that the saved
image processor, training's image cache, `pipeline`, a fresh `trust_remote_code` process and the Space all feed a
model the same pixels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, pipeline

from hf_deitcxr import DeiTCXRConfig, DeiTCXRForImageClassificationWithTeacher, make_image_processor
from hf_deitcxr.data.collate import RadiographCollator, eval_transform_for_pil
from hf_deitcxr.data.image_cache import CachedImageDataset, load_grey_resized
from hf_deitcxr.data.input_spec import InputSpec
from hf_deitcxr.models.deit_cxr.image_processing_deit_cxr import (
    BORDER_MAX_FRACTION,
    GreyPreprocessing,
    RadiographImageProcessor,
    crop_uniform_border,
)
from hf_deitcxr.serving.predictor import RadiographClassifier
from hf_deitcxr.training.arguments import ModelArguments
from hf_deitcxr.training.teacher import TeacherInputAdapter
from tests.helpers.tiny_models import tiny_deit_kwargs

LABELS = ("covid", "normal", "pneumonia")
NON_STOCK = [GreyPreprocessing("equalize", remove_border=True), GreyPreprocessing("clahe"),
             GreyPreprocessing("none", remove_border=True)]


def radiograph_like(height: int = 60, width: int = 50, seed: int = 0) -> np.ndarray:
    """A smooth grey picture with texture: a bright blob over a gradient, plus noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    picture = 60 + 80 * x / width + 90 * np.exp(-((y - height / 2) ** 2 + (x - width / 3) ** 2) / 200.0)
    return np.clip(picture + rng.normal(0, 6, picture.shape), 0, 255).astype(np.uint8)


def letterboxed(picture: np.ndarray, band: int, level: int = 0) -> np.ndarray:
    pad = np.full((band, picture.shape[1]), level, np.uint8)
    return np.concatenate([pad, picture, pad])


def test_uniform_bands_are_cut_and_the_picture_is_kept():
    picture = radiograph_like()
    framed = letterboxed(picture, 9)
    framed = np.concatenate([np.full((framed.shape[0], 4), 255, np.uint8), framed], axis=1)  # a white bar, left
    np.testing.assert_array_equal(crop_uniform_border(framed), picture)
    np.testing.assert_array_equal(crop_uniform_border(picture), picture)  # nothing uniform at its edges


def test_a_mostly_uniform_image_is_cut_by_at_most_the_limit_per_side():
    flat = np.full((40, 30), 17, np.uint8)
    flat[20, 15] = 200  # one bright pixel in the middle
    cropped = crop_uniform_border(flat)
    assert cropped.shape[0] >= 40 - 2 * int(40 * BORDER_MAX_FRACTION)
    assert cropped.shape[1] >= 30 - 2 * int(30 * BORDER_MAX_FRACTION)
    assert cropped.max() == 200


def test_equalisation_removes_most_of_a_monotone_intensity_change():
    picture = radiograph_like()
    darker = np.round(255.0 * (picture / 255.0) ** 1.6).astype(np.uint8)  # gamma 1.6
    plain, equalised = GreyPreprocessing(), GreyPreprocessing("equalize")

    def change(preprocessing: GreyPreprocessing) -> float:
        return float(np.abs(preprocessing.apply(picture, 32).astype(float)
                            - preprocessing.apply(darker, 32).astype(float)).mean())

    assert change(plain) > 20.0
    assert change(equalised) < 0.25 * change(plain)


def test_border_removal_undoes_a_letterbox_up_to_the_resize():
    picture = radiograph_like()
    boxed = letterboxed(np.asarray(Image.fromarray(picture).resize((50, 44), Image.Resampling.BICUBIC)), 8)
    with_removal = GreyPreprocessing(remove_border=True)
    gap = np.abs(with_removal.apply(boxed, 32).astype(float) - with_removal.apply(picture, 32).astype(float)).mean()
    stock_gap = np.abs(GreyPreprocessing().apply(boxed, 32).astype(float)
                       - GreyPreprocessing().apply(picture, 32).astype(float)).mean()
    assert gap < 6.0 < stock_gap


def test_unknown_options_are_refused_with_the_valid_ones():
    with pytest.raises(ValueError, match="equalize"):
        GreyPreprocessing("histeq")
    with pytest.raises(ValueError, match="intensity_normalization"):
        ModelArguments(stage="teacher", intensity_normalization="histeq")
    with pytest.raises(ValueError, match="remove_border"):
        GreyPreprocessing(remove_border="yes")


def test_stock_preprocessing_keeps_the_stock_processor():
    assert type(make_image_processor(32, 3)).__name__ == "DeiTImageProcessorPil"
    for preprocessing in NON_STOCK:
        assert isinstance(make_image_processor(32, 3, preprocessing), RadiographImageProcessor)


def save_student(folder, num_channels: int, preprocessing: GreyPreprocessing):
    torch.manual_seed(0)
    model = DeiTCXRForImageClassificationWithTeacher(
        DeiTCXRConfig(**tiny_deit_kwargs(num_channels=num_channels))).eval()
    model.save_pretrained(folder)
    make_image_processor(32, num_channels, preprocessing).save_pretrained(folder)
    return model


@pytest.mark.parametrize("num_channels", [3, 1])
@pytest.mark.parametrize("preprocessing", NON_STOCK, ids=lambda p: f"{p.intensity_normalization}-{p.remove_border}")
def test_saved_preprocessing_round_trips_and_matches_training_and_the_space(tmp_path, num_channels, preprocessing):
    model = save_student(tmp_path, num_channels, preprocessing)
    config = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert config["intensity_normalization"] == preprocessing.intensity_normalization
    assert config["remove_border"] is preprocessing.remove_border
    assert config["auto_map"]["AutoImageProcessor"].endswith("RadiographImageProcessor")

    loaded = AutoImageProcessor.from_pretrained(tmp_path)
    spec = InputSpec.from_processor(loaded, num_channels)
    assert spec.preprocessing == preprocessing and spec.size == 32
    image = Image.fromarray(letterboxed(radiograph_like(seed=1), 7), "L")
    from_processor = loaded(images=image, return_tensors="pt")["pixel_values"]
    assert from_processor.shape == (1, num_channels, 32, 32)

    # training: decode once into the cache with the spec's preprocessing, then the collator
    cached = torch.from_numpy(load_grey_resized(image, 32, spec.preprocessing))[None]
    collator = RadiographCollator(size=32, mean=spec.mean, std=spec.std, num_channels=num_channels)
    from_training = collator([{"pixels": cached, "labels": 0}])["pixel_values"]
    torch.testing.assert_close(from_training, from_processor, atol=1e-5, rtol=0)
    single = eval_transform_for_pil(image, 32, spec.mean, spec.std, num_channels, spec.preprocessing)
    torch.testing.assert_close(single, from_processor, atol=1e-5, rtol=0)
    # and without the preprocessing the pixels differ: the option reaches the model
    assert (eval_transform_for_pil(image, 32, spec.mean, spec.std, num_channels) - from_processor).abs().max() > 0.1

    expected = model(from_processor).logits.softmax(-1)[0]
    by_label = {p["label"]: p["score"] for p in pipeline("image-classification", model=str(tmp_path))(image, top_k=3)}
    for index, name in enumerate(LABELS):
        assert by_label[name] == pytest.approx(expected[index].item(), abs=1e-5)
    served = RadiographClassifier.from_pretrained(tmp_path, precision="fp32").predict(image, heatmap=False)
    for index, name in enumerate(LABELS):
        assert served.probabilities[name] == pytest.approx(expected[index].item(), abs=1e-4)


def test_a_fresh_process_applies_the_saved_preprocessing_with_trust_remote_code(tmp_path):
    save_student(tmp_path, 3, GreyPreprocessing("clahe", remove_border=True))
    image = Image.fromarray(letterboxed(radiograph_like(seed=2), 6), "L")
    image.save(tmp_path / "image.png")
    expected = make_image_processor(32, 3, GreyPreprocessing("clahe", remove_border=True))(
        images=image, return_tensors="np")["pixel_values"]
    script = textwrap.dedent(f"""
        import sys, numpy as np
        from PIL import Image
        from transformers import AutoImageProcessor, pipeline
        processor = AutoImageProcessor.from_pretrained({str(tmp_path)!r}, trust_remote_code=True)
        assert "hf_deitcxr" not in sys.modules, "the package must not be imported"
        image = Image.open({str(tmp_path / "image.png")!r})
        np.save({str(tmp_path / "pixels.npy")!r}, processor(images=image, return_tensors="np")["pixel_values"])
        top = pipeline("image-classification", model={str(tmp_path)!r}, trust_remote_code=True)(image)[0]
        print(type(processor).__name__, processor.intensity_normalization, top["label"])
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[:2] == ["RadiographImageProcessor", "clahe"]
    np.testing.assert_allclose(np.load(tmp_path / "pixels.npy"), expected, atol=1e-6)


def test_a_student_cannot_be_distilled_from_a_teacher_prepared_otherwise():
    stock = InputSpec.create((0.5,), (0.25,), 1, 32)
    equalised = InputSpec.create((0.5,), (0.25,), 1, 32, GreyPreprocessing("equalize"))
    assert TeacherInputAdapter(equalised, equalised).is_identity
    with pytest.raises(ValueError, match="--intensity_normalization"):
        TeacherInputAdapter(stock, equalised)


def test_the_pixel_cache_is_keyed_by_the_preprocessing(tmp_path):
    from datasets import ClassLabel, Dataset, Features
    from datasets import Image as ImageFeature

    pictures = [Image.fromarray(radiograph_like(seed=s), "L") for s in range(3)]
    ds = Dataset.from_dict({"image": pictures, "label": [0, 1, 0]},
                           features=Features({"image": ImageFeature(), "label": ClassLabel(names=["a", "b"])}))
    cache = tmp_path / "cache"
    plain = CachedImageDataset.from_hf_dataset(ds, size=16, cache_dir=cache)
    equalised = CachedImageDataset.from_hf_dataset(ds, size=16, cache_dir=cache,
                                                   preprocessing=GreyPreprocessing("equalize"))
    assert len(list(cache.iterdir())) == 2
    assert not torch.equal(plain.pixels, equalised.pixels)
    again = CachedImageDataset.from_hf_dataset(ds, size=16, cache_dir=cache,
                                               preprocessing=GreyPreprocessing("equalize"))
    assert torch.equal(again.pixels, equalised.pixels)


def test_the_space_predictor_feeds_the_saved_preprocessing_and_overlays_the_part_the_model_sees(tmp_path):
    from hf_deitcxr.serving import ChestXrayPredictor

    preprocessing = GreyPreprocessing("equalize", remove_border=True)
    model = save_student(tmp_path, 3, preprocessing)
    picture = radiograph_like(height=60, width=50, seed=3)
    boxed = letterboxed(picture, 12)  # 84 x 50, of which 60 x 50 is the picture
    Image.fromarray(boxed, "L").save(tmp_path / "upload.png")
    predictor = ChestXrayPredictor(RadiographClassifier.from_pretrained(tmp_path, precision="fp32"), check=None)
    result = predictor.predict(str(tmp_path / "upload.png"))
    pixels = make_image_processor(32, 3, preprocessing)(images=Image.fromarray(boxed, "L"),
                                                         return_tensors="pt")["pixel_values"]
    expected = model(pixels).logits.softmax(-1)[0]
    for index, name in enumerate(LABELS):
        assert result.student.probabilities[name] == pytest.approx(expected[index].item(), abs=1e-4)
    assert result.overlay.shape[:2] == picture.shape  # the overlay covers the picture, not the bands
