"""The Space's prediction path without UI: decoding, input check, preprocessing, heatmaps, student + teacher."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageOps
from transformers import DeiTConfig, DeiTForImageClassification, DeiTForImageClassificationWithTeacher

from hf_deitcxr import DeiTCXRConfig, DeiTCXRForImageClassificationWithTeacher, make_image_processor
from hf_deitcxr.serving import (
    ChestXrayPredictor,
    NotARadiographError,
    RadiographCheck,
    RadiographClassifier,
    decode_upload,
)
from hf_deitcxr.serving.explain import attention_rollout, class_activation_map, overlay
from hf_deitcxr.serving.fast_deit import FusedDeiT
from hf_deitcxr.serving.input_check import LayoutModel
from tests.helpers.dicom_files import write_dicom
from tests.helpers.serving_models import (
    RADIOGRAPHS,
    colour_shapes,
    save_tiny_models,
    save_tiny_models_that_tell_apart,
)
from tests.helpers.tiny_models import LABELS, tiny_deit_kwargs


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    return save_tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def predictor(models) -> ChestXrayPredictor:
    return ChestXrayPredictor.from_pretrained(*models, precision="fp32")


def grey_text(size=(320, 256)) -> Image.Image:
    image = Image.new("L", size, 255)
    draw = ImageDraw.Draw(image)
    for row in range(0, size[1], 20):
        draw.text((4, row), "lorem ipsum dolor sit amet 0123456789", fill=0)
    return image


def grey_noise(size=(256, 256)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, size[::-1], dtype=np.uint8))


# --- decoding -------------------------------------------------------------------------------------------------


def test_decode_grey_jpeg_rgb_png_and_dicom_give_the_same_pixels(tmp_path):
    grey = Image.open(RADIOGRAPHS[0])
    grey.convert("RGB").save(tmp_path / "rgb.png")
    write_dicom(tmp_path / "x.dcm", np.asarray(grey))
    from_jpeg = decode_upload(RADIOGRAPHS[0])
    from_rgb = decode_upload(tmp_path / "rgb.png")
    from_dicom = decode_upload(tmp_path / "x.dcm")
    for decoded in (from_rgb, from_dicom):
        np.testing.assert_array_equal(np.asarray(decoded.grey), np.asarray(from_jpeg.grey))
    assert from_jpeg.colourfulness == 0.0 and not from_jpeg.is_dicom
    assert from_rgb.colourfulness < 1.0  # R = G = B
    assert from_dicom.is_dicom and from_dicom.modality == "DX"


def test_decode_measures_colour_and_names_unreadable_files(tmp_path):
    colour_shapes().save(tmp_path / "c.jpg")
    assert decode_upload(tmp_path / "c.jpg").colourfulness > 40
    (tmp_path / "junk.png").write_bytes(np.random.default_rng(1).bytes(500))
    with pytest.raises(ValueError, match=r"junk\.png: not a recognised image format"):
        decode_upload(tmp_path / "junk.png")
    (tmp_path / "empty.dcm").write_bytes(b"")
    with pytest.raises(ValueError, match="empty file"):
        decode_upload(tmp_path / "empty.dcm")


# --- input check ----------------------------------------------------------------------------------------------


def test_bundled_radiographs_pass_the_input_check():
    check = RadiographCheck()
    for path in RADIOGRAPHS:
        stats = check.check(decode_upload(path))
        assert stats.width == 224 and stats.colourfulness == 0.0


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (colour_shapes, "colour image"),
        (grey_text, "flat areas"),
        (grey_noise, "noise"),
        (lambda: Image.new("L", (256, 256), 128), "no contrast"),
        (lambda: Image.open(RADIOGRAPHS[0]).resize((600, 150)), "aspect ratio"),
        (lambda: Image.open(RADIOGRAPHS[0]).resize((40, 40)), "at least 64 px"),
        (lambda: Image.open(RADIOGRAPHS[0]).rotate(90), "layout"),
    ],
)
def test_non_radiographs_are_rejected_with_the_reason(tmp_path, make, reason):
    make().save(tmp_path / "x.png")
    with pytest.raises(NotARadiographError, match=reason):
        RadiographCheck().check(decode_upload(tmp_path / "x.png"))


def test_dicom_of_another_modality_is_rejected(tmp_path):
    write_dicom(tmp_path / "ct.dcm", np.asarray(Image.open(RADIOGRAPHS[0])), Modality="CT")
    with pytest.raises(NotARadiographError, match="modality is CT"):
        RadiographCheck().check(decode_upload(tmp_path / "ct.dcm"))


def test_layout_model_fit_thresholds_and_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(3, 256))
    data = rng.normal(size=(500, 3)) @ basis + 0.01 * rng.normal(size=(500, 256))
    model = LayoutModel.fit(data, n_components=3, percentile=99.0)
    residual, distance = model.scores(data)
    assert np.mean(residual > model.residual_threshold) == pytest.approx(0.01, abs=0.005)
    assert np.mean(distance > model.distance_threshold) == pytest.approx(0.01, abs=0.005)
    off_subspace = rng.normal(size=256)  # far from the 3-d subspace: a large residual
    assert model.scores(off_subspace)[0][0] > 10 * model.residual_threshold
    model.save(tmp_path / "m.npz")
    loaded = LayoutModel.load(tmp_path / "m.npz")
    np.testing.assert_allclose(loaded.scores(data)[0], residual, rtol=1e-4)
    assert loaded.distance_threshold == model.distance_threshold


# --- preprocessing and models ---------------------------------------------------------------------------------


def test_fast_preprocessing_equals_the_saved_image_processor(models):
    classifier = RadiographClassifier.from_pretrained(models[0], precision="fp32")
    grey = Image.open(RADIOGRAPHS[1])
    ours = classifier._fill_pixels(classifier.resize(grey)).clone()
    processor = make_image_processor(32)
    reference = processor(images=grey, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)


def test_student_probabilities_match_a_plain_forward_pass(models, predictor):
    """From the image through the saved image processor's numerics to the probabilities, with the fused forward."""
    assert predictor.student.fused is not None
    grey = Image.open(RADIOGRAPHS[2])
    prediction = predictor.student.predict(grey)
    model = DeiTCXRForImageClassificationWithTeacher.from_pretrained(models[0]).eval()
    pixels = make_image_processor(32)(images=grey, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        expected = model(pixel_values=pixels).logits.softmax(-1)[0]
    got = torch.tensor([prediction.probabilities[label] for label in LABELS])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert list(prediction.probabilities.values()) == sorted(prediction.probabilities.values(), reverse=True)


def small_data_student(spt: bool, lsa: bool) -> DeiTCXRForImageClassificationWithTeacher:
    """A student with shifted patch tokenization and/or locality self-attention; LSA temperatures that differ per
    head and from the stock scale, so a fused forward that ignored them would differ."""
    config = DeiTCXRConfig(**tiny_deit_kwargs(shifted_patch_tokenization=spt, locality_self_attention=lsa,
                                              num_channels=1 if spt else 3))
    model = DeiTCXRForImageClassificationWithTeacher(config)
    with torch.no_grad():
        for layer in model.deit.layers if lsa else ():
            layer.attention.attention_scale.uniform_(0.1, 0.6)
    return model


@pytest.mark.parametrize(
    ("make_model", "channels"),
    [
        (lambda: DeiTCXRForImageClassificationWithTeacher(DeiTCXRConfig(**tiny_deit_kwargs())), 3),
        (lambda: DeiTCXRForImageClassificationWithTeacher(DeiTCXRConfig(**tiny_deit_kwargs(inference_head="cls"))), 3),
        (lambda: DeiTCXRForImageClassificationWithTeacher(
            DeiTCXRConfig(**tiny_deit_kwargs(calibration_temperature=2.5))), 3),
        (lambda: DeiTCXRForImageClassificationWithTeacher(
            DeiTCXRConfig(**tiny_deit_kwargs(inference_head="distillation", num_channels=1))), 1),
        (lambda: DeiTForImageClassificationWithTeacher(DeiTConfig(**tiny_deit_kwargs())), 3),
        (lambda: DeiTForImageClassification(DeiTConfig(**tiny_deit_kwargs())), 3),
        (lambda: small_data_student(spt=True, lsa=True), 1),
        (lambda: small_data_student(spt=True, lsa=False), 1),
        (lambda: small_data_student(spt=False, lsa=True), 3),
    ],
    ids=["average", "cls-head", "calibrated", "distillation-head-1ch", "stock-with-teacher", "stock-single-head",
         "spt-lsa-1ch", "spt-1ch", "lsa"],
)
def test_fused_forward_equals_the_transformers_forward(make_model, channels):
    torch.manual_seed(0)
    model = make_model().eval()
    model.config._attn_implementation = "eager"  # so the reference returns its attention maps
    fused = FusedDeiT.from_model(model)
    assert fused is not None
    pixels = torch.randn(3, channels, 32, 32)  # a batch (the Space's micro-batches) and its first image alone
    with torch.inference_mode():
        expected = model(pixel_values=pixels, output_attentions=True)
        logits, attentions = fused(pixels, output_attentions=True)
        logits_sdpa, no_maps = fused(pixels, output_attentions=False)
        single, single_maps = fused(pixels[:1], output_attentions=True)
    torch.testing.assert_close(logits, expected.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits_sdpa, expected.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(single, expected.logits[:1], atol=1e-5, rtol=1e-5)
    assert no_maps is None and len(attentions) == len(expected.attentions) == 2
    for ours, alone, theirs in zip(attentions, single_maps, expected.attentions, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(alone, theirs[:1], atol=1e-6, rtol=1e-5)
    for wrong in (torch.randn(1, channels, 48, 48), torch.randn(0, channels, 32, 32), torch.randn(channels, 32, 32)):
        with pytest.raises(ValueError, match="shape"):
            fused(wrong)


def test_predictor_uses_the_fused_forward_only_where_it_matches(models, monkeypatch):
    student = RadiographClassifier.from_pretrained(models[0], precision="fp32")
    assert student.fused is not None
    assert RadiographClassifier.from_pretrained(models[1], precision="fp32").fused is None  # DenseNet teacher
    assert RadiographClassifier.from_pretrained(models[0], precision="fp32", fused=False).fused is None
    sdpa = DeiTCXRForImageClassificationWithTeacher.from_pretrained(models[0], attn_implementation="sdpa")
    with_sdpa = RadiographClassifier(sdpa, (0.5,), (0.5,), 32, precision="fp32")  # returns no attention maps itself
    assert with_sdpa.fused is not None and with_sdpa.predict(Image.open(RADIOGRAPHS[0])).heatmap.shape == (4, 4)
    model = DeiTCXRForImageClassificationWithTeacher.from_pretrained(models[0])
    model.config.hidden_act = "gelu_new"  # an activation the fused forward does not implement: not used
    assert FusedDeiT.from_model(model) is None
    original = FusedDeiT.__call__
    monkeypatch.setattr(FusedDeiT, "__call__", lambda self, x, output_attentions=False: (
        lambda out: (out[0] + 1e-2, out[1]))(original(self, x, output_attentions)))
    assert RadiographClassifier.from_pretrained(models[0], precision="fp32").fused is None  # differs: not used


def test_attention_rollout_equals_the_full_matrix_product():
    torch.manual_seed(0)
    attentions = [torch.rand(2, 3, 18, 18).softmax(-1) for _ in range(4)]
    fast = attention_rollout(attentions, (4, 4))
    full = torch.eye(18).expand(2, 18, 18)
    for layer in attentions:  # R = A_L' ... A_1', the product written out
        mixed = 0.5 * torch.eye(18) + 0.5 * layer.mean(1)
        full = (mixed / mixed.sum(-1, keepdim=True)) @ full
    expected = full[:, :2, 2:].mean(1).reshape(2, 4, 4).numpy()
    expected = (expected - expected.min((1, 2), keepdims=True)) / np.ptp(expected, axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(fast, expected, atol=1e-5)
    with pytest.raises(ValueError, match="tokens do not match"):
        attention_rollout(attentions, (5, 5))


def test_student_heatmap_is_the_patch_grid_and_teacher_cam_its_feature_map(predictor):
    result = predictor.predict(RADIOGRAPHS[3])
    assert result.student.heatmap.shape == (4, 4)  # 32 px / 8 px patches
    assert result.student.heatmap.min() == 0.0 and result.student.heatmap.max() == 1.0
    assert result.overlay.shape == (224, 224, 3) and result.overlay.dtype == np.uint8
    assert set(result.teacher.probabilities) == set(LABELS)
    assert result.teacher.heatmap is None  # the teacher is shown as probabilities only


def test_teacher_cam_is_the_class_map_whose_mean_is_the_logit(models):
    """For global-average-pool + linear, the mean of a class's (unclipped) CAM plus the bias is its logit."""
    teacher = RadiographClassifier.from_pretrained(models[1], precision="fp32")
    assert teacher.heatmap_kind == "cam"
    grey = Image.open(RADIOGRAPHS[4])
    prediction = teacher.predict(grey)
    pixels = make_image_processor(32)(images=grey, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        features = teacher.model.densenet(pixels).last_hidden_state
        logits = teacher.model(pixel_values=pixels).logits[0]
    top = int(logits.argmax())
    assert prediction.label == LABELS[top]
    head = teacher.model.classifier
    cam = torch.einsum("bchw,c->bhw", features, head.weight[top].detach())
    torch.testing.assert_close(cam.mean() + head.bias[top].detach(), logits[top], atol=1e-5, rtol=1e-5)
    assert prediction.heatmap.shape == tuple(features.shape[-2:])
    np.testing.assert_allclose(prediction.heatmap, _unit(torch.relu(cam).numpy())[0], atol=1e-5)
    np.testing.assert_allclose(class_activation_map(features, head.weight.detach(), torch.tensor([top])),
                               _unit(torch.relu(cam).numpy()), atol=1e-5)


@pytest.fixture(scope="module")
def contrasting(tmp_path_factory) -> tuple[tuple[Path, Path], list[Path]]:
    """Tiny student and teacher that tell a radiograph from its inversion, and those two images.

    The heads are set by hand (`save_tiny_models_that_tell_apart`): each image gets logits (+4, -4, 0) for its own
    labels, so its log-probabilities differ from the other image's by 8 for two classes.
    """
    root = tmp_path_factory.mktemp("contrasting")
    grey = Image.open(RADIOGRAPHS[5]).convert("L")
    images = [root / "radiograph.png", root / "inverted.png"]
    grey.save(images[0])
    ImageOps.invert(grey).save(images[1])
    folders = save_tiny_models_that_tell_apart(root, {images[0]: ("pneumonia", "covid"),
                                                      images[1]: ("covid", "normal")})
    return folders, images


def test_bf16_precision_runs_and_stays_close_to_fp32(contrasting):
    # bf16 moves each log-probability by < 0.25 (measured <= 0.07), 1/32 of the 8 an inverted input moves it by
    folders, images = contrasting
    for folder in folders:
        fp32 = RadiographClassifier.from_pretrained(folder, precision="fp32")
        bf16 = RadiographClassifier.from_pretrained(folder, precision="bf16")
        assert next(bf16.model.parameters()).dtype == torch.bfloat16
        labels = []
        for image in images:
            grey = Image.open(image)
            a, b = fp32.predict(grey), bf16.predict(grey)
            assert b.label == a.label
            for label in LABELS:
                assert math.log(b.probabilities[label]) == pytest.approx(math.log(a.probabilities[label]), abs=0.25)
            labels.append(a.label)
        assert labels[0] != labels[1]  # the models do tell the two inputs apart
        if folder == folders[0]:
            assert b.heatmap.shape == (4, 4)  # the student's rollout, on its 4 x 4 patch grid


def test_overlay_keeps_the_aspect_ratio_and_limits_the_size():
    grey = Image.new("L", (1000, 800), 100)
    image = overlay(grey, np.eye(4, dtype=np.float32))
    assert image.shape == (410, 512, 3)
    assert not np.array_equal(image[0, 0], image[0, -1])  # heat 1 at top-left, 0 at top-right: different colours


def test_predictor_without_check_accepts_anything_decodable(models, tmp_path):
    colour_shapes().save(tmp_path / "c.png")
    unchecked = ChestXrayPredictor.from_pretrained(models[0], check_input=False, precision="fp32")
    result = unchecked.predict(tmp_path / "c.png")
    assert result.statistics is None and result.teacher is None
    with pytest.raises(NotARadiographError):
        ChestXrayPredictor.from_pretrained(models[0], precision="fp32").predict(tmp_path / "c.png")


def _unit(maps: np.ndarray) -> np.ndarray:
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    return (maps - low) / np.where(span > 0, span, 1)


def test_decode_upload_reads_an_open_file_like_its_path(tmp_path):
    from hf_deitcxr.data.dicom import UnreadableImageError

    path = tmp_path / "chest.png"
    Image.fromarray(np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))).save(path)
    with path.open("rb") as handle:
        from_file = decode_upload(handle)
    from_path = decode_upload(path)
    assert np.array_equal(np.asarray(from_file.grey), np.asarray(from_path.grey))
    assert from_file.colourfulness == from_path.colourfulness
    with (tmp_path / "empty.png").open("wb+") as handle:
        with pytest.raises(UnreadableImageError, match="empty.png: empty file"):
            decode_upload(handle)
