"""Processing augmentation: random acquisition/processing histories applied before the saved preprocessing, as
processed variants of every training image (decoded once, seeded, cached with their own key)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from hf_deitcxr.audit.perturbations import default_perturbations
from hf_deitcxr.data import acquisition_ops as ops
from hf_deitcxr.data.image_cache import CachedImageDataset
from hf_deitcxr.data.processing_augmentation import (
    ProcessingAugmentationConfig,
    SeededProcessingVariant,
    random_processing,
    with_processing_variants,
)
from hf_deitcxr.models.deit_cxr.image_processing_deit_cxr import GreyPreprocessing
from tests.helpers.images import radiograph_like

OFF = ProcessingAugmentationConfig(border_crop_p=0, letterbox_p=0, resample_p=0, blur_p=0, gamma_p=0, contrast_p=0,
                                   brightness_p=0, equalise_p=0, clahe_p=0, jpeg_p=0)


def _grey(seed: int = 0, size=(64, 56)) -> np.ndarray:
    return np.asarray(radiograph_like(seed, size=size))


def test_every_probability_zero_is_the_identity():
    grey = _grey()
    np.testing.assert_array_equal(random_processing(grey, np.random.default_rng(0), OFF), grey)


@pytest.mark.parametrize(("only", "expected"), [
    (dict(clahe_p=1.0, clahe_clip_limit=(2.0, 2.0), clahe_grids=(8,)), lambda g: ops.clahe(g, 2.0, 8)),
    (dict(brightness_p=1.0, brightness=(1.15, 1.15)), ops.on_pil(lambda i: ops.brightness(i, 1.15))),
    (dict(contrast_p=1.0, contrast=(1.3, 1.3)), ops.on_pil(lambda i: ops.contrast(i, 1.3))),
    (dict(gamma_p=1.0, gamma=(0.6, 0.6)), lambda g: ops.gamma(g, 0.6)),
    (dict(border_crop_p=1.0, border_crop=(0.08, 0.08)), ops.on_pil(lambda i: ops.border_crop(i, 0.08))),
    (dict(letterbox_p=1.0, letterbox=(0.1, 0.1)), ops.on_pil(lambda i: ops.letterbox(i, 0.1))),
    (dict(equalise_p=1.0), ops.on_pil(ops.equalise)),
    (dict(jpeg_p=1.0, jpeg_quality=(20, 20)), ops.on_pil(lambda i: ops.jpeg(i, 20))),
])
def test_each_change_is_the_shared_operation_the_audit_probes_with(only, expected):
    grey = _grey(1)
    changed = random_processing(grey, np.random.default_rng(3), replace(OFF, **only))
    np.testing.assert_array_equal(changed, expected(grey))
    assert not np.array_equal(changed, grey)


def test_the_audits_probe_uses_the_same_operations():
    grey = _grey(2)
    probes = {p.name: p.apply for p in default_perturbations()}
    np.testing.assert_array_equal(probes["clahe"](grey), ops.clahe(grey, 2.0, 8))
    np.testing.assert_array_equal(probes["border_crop_8%"](grey), ops.on_pil(lambda i: ops.border_crop(i, 0.08))(grey))


def test_a_variant_is_reproducible_per_image_and_differs_between_images_variants_and_seeds():
    config = ProcessingAugmentationConfig()
    grey = _grey(3)
    first = SeededProcessingVariant(config, seed=0, variant=1)
    outputs = [first(index, grey) for index in range(12)]
    np.testing.assert_array_equal(outputs[5], SeededProcessingVariant(config, 0, 1)(5, grey))
    assert len({o.tobytes() for o in outputs}) > 6  # same image, other indices: other histories
    others = [SeededProcessingVariant(config, 0, 2)(i, grey) for i in range(12)]
    reseeded = [SeededProcessingVariant(config, 1, 1)(i, grey) for i in range(12)]
    assert sum(np.array_equal(a, b) for a, b in zip(outputs, others, strict=True)) < 4
    assert sum(np.array_equal(a, b) for a, b in zip(outputs, reseeded, strict=True)) < 4
    assert all(o.dtype == np.uint8 and o.shape == grey.shape for o in outputs)
    keys = {SeededProcessingVariant(config, s, v).cache_key for s in (0, 1) for v in (1, 2)}
    assert len(keys) == 4 and SeededProcessingVariant(replace(config, jpeg_p=0.5), 0, 1).cache_key not in keys


@pytest.mark.parametrize(("overrides", "message"), [
    (dict(clahe_p=1.5), "probability"),
    (dict(border_crop_p=0.7, letterbox_p=0.5), "at most 1"),
    (dict(border_crop=(0.1, 0.4)), "border_crop"),
    (dict(gamma=(0.0, 1.0)), "gamma"),
    (dict(resample=(0.5, 1.5)), "at most 1"),
    (dict(jpeg_quality=(0, 50)), "jpeg_quality"),
    (dict(clahe_grids=()), "clahe_grids"),
])
def test_broken_configs_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        ProcessingAugmentationConfig(**overrides)
    with pytest.raises(ValueError, match="variant"):
        SeededProcessingVariant(ProcessingAugmentationConfig(), seed=0, variant=0)


def _dataset(count: int = 6):
    from datasets import ClassLabel, Dataset, Features, Value
    from datasets import Image as ImageFeature

    features = Features(image=ImageFeature(), label=ClassLabel(names=["normal", "covid"]), source=Value("string"),
                        patient_id=Value("string"))
    return Dataset.from_dict(
        {"image": [radiograph_like(seed, size=(60, 52)) for seed in range(count)],
         "label": [i % 2 for i in range(count)],
         "source": ["a", "b"] * (count // 2), "patient_id": [f"p{i}" for i in range(count)]},
        features=features,
    )


def test_variants_are_the_changed_originals_through_the_preprocessing_and_are_cached(tmp_path):
    ds = _dataset()
    preprocessing = GreyPreprocessing("equalize", remove_border=True)
    cache = dict(size=24, cache_dir=tmp_path, preprocessing=preprocessing)
    base = CachedImageDataset.from_hf_dataset(ds, **cache)
    config = ProcessingAugmentationConfig(clahe_p=0.5, brightness_p=0.5)
    data = with_processing_variants(base, ds, 2, seed=7, config=config, **cache)
    assert len(data) == 18 and data.labels.tolist() == base.labels.tolist() * 3
    assert data.extras["source"] == base.extras["source"] * 3 and data.extras["patient_id"][6:12] == [
        f"p{i}" for i in range(6)]
    torch.testing.assert_close(data.pixels[:6], base.pixels)
    variant = SeededProcessingVariant(config, seed=7, variant=2)
    for index in range(6):  # change at full size first, then the run's own preprocessing
        grey = np.asarray(ds[index]["image"].convert("L"))
        expected = preprocessing.apply(variant(index, grey), 24)
        np.testing.assert_array_equal(data.pixels[12 + index, 0].numpy(), expected)
    assert not torch.equal(data.pixels[6:12], base.pixels)
    assert len(list(tmp_path.glob("pixels-*.pt"))) == 3  # the originals and one file per variant
    again = with_processing_variants(base, ds, 2, seed=7, config=config, **cache)
    torch.testing.assert_close(again.pixels, data.pixels)
    other_seed = with_processing_variants(base, ds, 2, seed=8, config=config, **cache)
    assert not torch.equal(other_seed.pixels[6:], data.pixels[6:])
    assert with_processing_variants(base, ds, 0, seed=7, **cache) is base


def test_a_perturbation_without_a_cache_key_is_not_cached_on_disk(tmp_path):
    ds = _dataset(2)
    inverted = CachedImageDataset.from_hf_dataset(ds, size=16, perturbation=lambda index, grey: 255 - grey)
    plain = CachedImageDataset.from_hf_dataset(ds, size=16)
    assert not torch.equal(inverted.pixels, plain.pixels)
    with pytest.raises(ValueError, match="cache_key"):
        CachedImageDataset.from_hf_dataset(ds, size=16, cache_dir=tmp_path, perturbation=lambda index, grey: grey)


def test_concatenate_refuses_mismatched_parts():
    one = CachedImageDataset(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), [0, 1], extras={"source": ["a", "b"]},
                             label_names=["x", "y"])
    with pytest.raises(ValueError, match="different"):
        CachedImageDataset.concatenate([one, CachedImageDataset(torch.zeros(1, 1, 9, 9, dtype=torch.uint8), [0],
                                                                extras={"source": ["a"]}, label_names=["x", "y"])])
    with pytest.raises(ValueError, match="nothing"):
        CachedImageDataset.concatenate([])
    assert len(CachedImageDataset.concatenate([one, one])) == 4


def test_a_training_run_adds_the_variants_and_records_them(tmp_path, one_torch_thread):
    from hf_deitcxr.cli import main as cli_main
    from tests.helpers.standins import save_cxr_standins
    from tests.helpers.synthetic import write_imagefolder

    data = write_imagefolder(tmp_path / "data", {"train": 8, "validation": 3})
    teacher_init, _ = save_cxr_standins(tmp_path)
    output = tmp_path / "run"
    argv = ["train", "--stage", "teacher", "--dataset", str(data), "--output_dir", str(output),
            "--model_name_or_path", str(teacher_init), "--image_size", "32", "--max_steps", "2",
            "--per_device_train_batch_size", "4", "--eval_strategy", "no", "--save_strategy", "no",
            "--processing_variants", "2", "--seed", "0", "--use_cpu", "true", "--bf16", "false",
            "--report_to", "none", "--disable_tqdm", "true"]
    assert cli_main(argv) == 0
    metrics = json.loads((output / "metrics.json").read_text())["extra"]
    args = json.loads((output / "training_args.json").read_text())
    assert args["data"]["processing_variants"] == 2
    train_images = sum(1 for path in (data / "train").rglob("*.png"))
    # the distinct images (a data-efficiency axis), and the samples the variants add to them
    assert (metrics["num_train_images"], metrics["num_train_samples"]) == (train_images, 3 * train_images)
    assert metrics["processing_variants"] == 2
    card = (output / "README.md").read_text()
    samples_line = f"- Training images: {train_images}; {3 * train_images} training samples with their processed"
    assert samples_line + " variants." in card


def test_a_negative_number_of_variants_is_refused():
    from hf_deitcxr.training.arguments import DataArguments

    with pytest.raises(ValueError, match="processing_variants"):
        DataArguments(dataset="data", processing_variants=-1)


def test_resampling_and_blur_change_the_image():
    grey = _grey(4, size=(224, 224))  # the blur sigma is given at 224 px and scales with the side
    for only in (dict(resample_p=1.0), dict(blur_p=1.0)):
        assert not np.array_equal(random_processing(grey, np.random.default_rng(0), replace(OFF, **only)), grey)
