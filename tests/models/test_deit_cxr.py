"""The DeiT student: loss, heads, compatibility with the stock class, saving, Auto/remote-code loading, channels."""

import io
import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import (
    AutoModelForImageClassification,
    DeiTConfig,
    DeiTForImageClassificationWithTeacher,
    pipeline,
)

from hf_deitcxr import (
    DeiTCXRConfig,
    DeiTCXRForImageClassificationWithTeacher,
    fold_rgb_conv_to_grey,
    interpolate_position_embeddings,
    load_student,
    make_image_processor,
)
from hf_deitcxr.models.deit_cxr.modeling_deit_cxr import deit_distillation_loss
from tests.helpers.tiny_models import LABELS, tiny_deit_kwargs


def softmax(values):
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


def test_hard_distillation_loss_matches_hand_computation():
    cls_logits = torch.tensor([[2.0, 0.0, 0.0]])
    distillation_logits = torch.tensor([[0.0, 1.0, 0.0]])
    teacher_logits = torch.tensor([[0.0, 0.0, 3.0]])  # teacher says class 2
    labels = torch.tensor([0])
    total, ce, distill = deit_distillation_loss(
        cls_logits, distillation_logits, labels, teacher_logits, "hard", alpha=0.3, tau=1.0
    )
    expected_ce = -math.log(math.exp(2) / (math.exp(2) + 2))
    expected_distill = -math.log(1 / (2 + math.e))
    assert ce.item() == pytest.approx(expected_ce, rel=1e-6)
    assert distill.item() == pytest.approx(expected_distill, rel=1e-6)
    assert total.item() == pytest.approx(0.7 * expected_ce + 0.3 * expected_distill, rel=1e-6)


def test_soft_distillation_loss_matches_hand_computation():
    cls_logits = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    distillation_logits = torch.tensor([[0.5, 0.0, -0.5], [0.0, 2.0, 0.0]])
    teacher_logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    labels = torch.tensor([0, 2])
    tau = 2.0
    total, ce, distill = deit_distillation_loss(
        cls_logits, distillation_logits, labels, teacher_logits, "soft", alpha=0.5, tau=tau
    )
    kl_sum = 0.0
    for student_row, teacher_row in zip(distillation_logits.tolist(), teacher_logits.tolist(), strict=True):
        p_student = softmax([v / tau for v in student_row])
        p_teacher = softmax([v / tau for v in teacher_row])
        kl_sum += sum(t * math.log(t / s) for t, s in zip(p_teacher, p_student, strict=True))
    # DeiT reference: KL summed, divided by the number of logits (batch * classes), times tau^2.
    expected_distill = kl_sum / 6 * tau * tau
    expected_ce = (-math.log(softmax([1, 0, 0])[0]) - math.log(softmax([0, 0, 1])[2])) / 2
    assert distill.item() == pytest.approx(expected_distill, rel=1e-5)
    assert ce.item() == pytest.approx(expected_ce, rel=1e-6)
    assert total.item() == pytest.approx(0.5 * expected_ce + 0.5 * expected_distill, rel=1e-5)


def test_without_teacher_both_heads_learn_the_labels():
    cls_logits = torch.tensor([[1.0, 0.0, 0.0]])
    distillation_logits = torch.tensor([[0.0, 1.0, 0.0]])
    labels = torch.tensor([1])
    total, ce, distill = deit_distillation_loss(cls_logits, distillation_logits, labels, None, "hard", 0.25, 1.0)
    assert ce.item() == pytest.approx(-math.log(softmax([1, 0, 0])[1]), rel=1e-6)
    assert distill.item() == pytest.approx(-math.log(softmax([0, 1, 0])[1]), rel=1e-6)
    assert total.item() == pytest.approx(0.75 * ce.item() + 0.25 * distill.item(), rel=1e-6)


def test_class_weights_change_the_label_loss():
    cls_logits = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    labels = torch.tensor([0, 1])
    weights = torch.tensor([1.0, 3.0, 1.0])
    _, ce, _ = deit_distillation_loss(cls_logits, cls_logits, labels, None, "none", 0.5, 1.0, weights)
    per_sample = [-math.log(softmax([1, 0, 0])[0]), -math.log(softmax([0, 1, 0])[1])]
    assert ce.item() == pytest.approx((1 * per_sample[0] + 3 * per_sample[1]) / 4, rel=1e-6)


def test_loss_rejects_inconsistent_inputs():
    logits = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="distillation_type is 'none'"):
        deit_distillation_loss(logits, logits, torch.tensor([0, 1]), logits, "none", 0.5, 1.0)
    with pytest.raises(ValueError, match="same label set"):
        deit_distillation_loss(logits, logits, torch.tensor([0, 1]), torch.zeros(2, 4), "soft", 0.5, 1.0)
    with pytest.raises(ValueError, match="labels must have shape"):
        deit_distillation_loss(logits, logits, torch.tensor([0, 1, 2]), None, "hard", 0.5, 1.0)


def test_forward_loss_and_gradients_reach_both_heads(tiny_student):
    tiny_student.train()
    pixels = torch.randn(4, 3, 32, 32)
    labels = torch.tensor([0, 1, 2, 0])
    teacher_logits = torch.randn(4, 3)
    output = tiny_student(pixels, labels=labels, teacher_logits=teacher_logits)
    expected, _, _ = deit_distillation_loss(
        output.cls_logits, output.distillation_logits, labels, teacher_logits, "hard", 0.5, 1.0
    )
    assert output.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert output.classification_loss is not None and output.distillation_loss is not None
    output.loss.backward()
    for head in (tiny_student.cls_classifier, tiny_student.distillation_classifier):
        assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0
    assert tiny_student.deit.embeddings.distillation_token.grad.abs().sum() > 0


def test_alpha_zero_leaves_distillation_head_untrained():
    model = DeiTCXRForImageClassificationWithTeacher(DeiTCXRConfig(**tiny_deit_kwargs(distillation_alpha=0.0)))
    output = model(torch.randn(2, 3, 32, 32), labels=torch.tensor([0, 1]), teacher_logits=torch.randn(2, 3))
    output.loss.backward()
    assert model.distillation_classifier.weight.grad.abs().sum() == 0
    assert model.cls_classifier.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("head", ["average", "cls", "distillation"])
def test_inference_head_selects_logits(head):
    torch.manual_seed(0)
    model = DeiTCXRForImageClassificationWithTeacher(DeiTCXRConfig(**tiny_deit_kwargs(inference_head=head))).eval()
    output = model(torch.randn(2, 3, 32, 32))
    expected = {
        "average": (output.cls_logits + output.distillation_logits) / 2,
        "cls": output.cls_logits,
        "distillation": output.distillation_logits,
    }[head]
    assert torch.equal(output.logits, expected)
    assert output.loss is None


def test_tokens_are_initialised_apart(tiny_student):
    embeddings = tiny_student.deit.embeddings
    assert not torch.allclose(embeddings.cls_token, embeddings.distillation_token)
    assert 0.005 < embeddings.position_embeddings.std().item() < 0.05


def test_drop_path_is_stochastic_in_training_only():
    model = DeiTCXRForImageClassificationWithTeacher(DeiTCXRConfig(**tiny_deit_kwargs(drop_path_rate=0.5)))
    pixels = torch.randn(4, 3, 32, 32)
    model.train()
    assert not torch.allclose(model(pixels).logits, model(pixels).logits)
    model.eval()
    assert torch.equal(model(pixels).logits, model(pixels).logits)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("distillation_type", "medium"),
        ("distillation_alpha", 1.5),
        ("distillation_tau", 0.0),
        ("inference_head", "both"),
        ("drop_path_rate", 1.0),
        ("num_channels", 2),
    ],
)
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        DeiTCXRConfig(**{field: value})


def test_broken_config_file_fails_clearly(tmp_path):
    DeiTCXRConfig(**tiny_deit_kwargs()).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["distillation_type"] = "sideways"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="distillation_type"):
        DeiTCXRConfig.from_pretrained(tmp_path)


def test_safetensors_round_trip(tiny_student, tmp_path):
    tiny_student.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert not list(tmp_path.glob("*.bin"))
    reloaded = DeiTCXRForImageClassificationWithTeacher.from_pretrained(tmp_path).eval()
    pixels = torch.randn(2, 3, 32, 32)
    assert torch.equal(reloaded(pixels).logits, tiny_student(pixels).logits)
    assert reloaded.config.id2label == dict(enumerate(LABELS))


def test_our_checkpoint_loads_into_the_stock_class(tiny_student, tmp_path):
    tiny_student.save_pretrained(tmp_path)
    stock = DeiTForImageClassificationWithTeacher.from_pretrained(tmp_path).eval()
    pixels = torch.randn(2, 3, 32, 32)
    assert torch.equal(stock(pixels).logits, tiny_student(pixels).logits)


def test_stock_distilled_checkpoint_loads_as_student_with_new_head(tmp_path):
    """Stands in for facebook/deit-*-distilled-*: a stock checkpoint with 1000 ImageNet classes."""
    torch.manual_seed(1)
    stock_config = DeiTConfig(**{**tiny_deit_kwargs(), "id2label": None, "label2id": None}, num_labels=10)
    stock = DeiTForImageClassificationWithTeacher(stock_config)
    stock.save_pretrained(tmp_path)
    student = DeiTCXRForImageClassificationWithTeacher.from_pretrained(
        tmp_path,
        num_labels=3,
        id2label=dict(enumerate(LABELS)),
        label2id={n: i for i, n in enumerate(LABELS)},
        ignore_mismatched_sizes=True,
    )
    stock_state, student_state = stock.state_dict(), student.state_dict()
    assert set(stock_state) == set(student_state)
    body = [k for k in stock_state if not k.startswith(("cls_classifier", "distillation_classifier"))]
    assert all(torch.equal(stock_state[k], student_state[k]) for k in body)
    assert student.cls_classifier.weight.shape == (3, 32)
    assert student.config.distillation_type == "hard"  # our defaults fill the fields a stock config lacks


def test_load_student_changes_resolution_and_labels(tmp_path):
    stock = DeiTForImageClassificationWithTeacher(DeiTConfig(**{**tiny_deit_kwargs(), "id2label": None,
                                                               "label2id": None}, num_labels=10))
    stock.save_pretrained(tmp_path)
    student = load_student(str(tmp_path), LABELS, image_size=48, distillation_type="soft")
    assert student.config.image_size == 48 and student.config.num_labels == 3
    assert student.config.distillation_type == "soft"
    assert student.deit.embeddings.position_embeddings.shape == (1, 2 + 36, 32)
    assert student(torch.randn(1, 3, 48, 48)).logits.shape == (1, 3)
    assert torch.equal(
        student.deit.layers[0].mlp.fc1.weight, stock.deit.layers[0].mlp.fc1.weight
    )


def test_interpolate_position_embeddings_keeps_special_tokens():
    positions = torch.randn(1, 2 + 16, 8)
    assert interpolate_position_embeddings(positions, 4) is positions
    resized = interpolate_position_embeddings(positions, 6)
    assert resized.shape == (1, 2 + 36, 8)
    assert torch.equal(resized[:, :2], positions[:, :2])
    # a constant grid stays constant under bicubic resizing
    constant = torch.cat([positions[:, :2], torch.ones(1, 16, 8)], dim=1)
    assert torch.allclose(interpolate_position_embeddings(constant, 6)[:, 2:], torch.ones(1, 36, 8), atol=1e-5)


def test_fold_rgb_conv_to_grey_is_exact():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 5, 4, stride=4)
    weight, bias = fold_rgb_conv_to_grey(conv.weight, conv.bias)
    grey = torch.rand(2, 1, 16, 16)
    rgb_mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    rgb_std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    rgb_input = (grey.expand(-1, 3, -1, -1) - rgb_mean) / rgb_std
    grey_input = (grey - 0.449) / 0.226
    expected = conv(rgb_input)
    actual = torch.nn.functional.conv2d(grey_input, weight, bias, stride=4)
    assert torch.allclose(actual, expected, atol=1e-4)
    naive = torch.nn.functional.conv2d(grey_input, conv.weight.sum(1, keepdim=True), conv.bias, stride=4)
    assert not torch.allclose(naive, expected, atol=1e-3)  # the usual shortcut is not exact


def test_single_channel_student_from_rgb_checkpoint_gives_same_predictions(tiny_student, tmp_path):
    tiny_student.save_pretrained(tmp_path)
    grey_student = load_student(str(tmp_path), LABELS, num_channels=1).eval()
    grey = Image.fromarray((np.random.default_rng(0).random((40, 40)) * 255).astype(np.uint8), "L")
    rgb_pixels = make_image_processor(32, 3)(grey, return_tensors="pt")["pixel_values"]
    grey_pixels = make_image_processor(32, 1)(grey, return_tensors="pt")["pixel_values"]
    assert rgb_pixels.shape == (1, 3, 32, 32) and grey_pixels.shape == (1, 1, 32, 32)
    assert torch.allclose(grey_student(grey_pixels).logits, tiny_student(rgb_pixels).logits, atol=1e-4)


def test_wrong_input_shape_is_a_clear_error(tiny_student):
    with pytest.raises(ValueError, match="4-D"):
        tiny_student(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="channel"):
        tiny_student(torch.randn(1, 1, 32, 32))


def save_with_processor(model, folder, num_channels=3):
    model.save_pretrained(folder)
    make_image_processor(model.config.image_size, num_channels).save_pretrained(folder)


def test_saved_folder_carries_auto_map_and_code(tiny_student, tmp_path):
    save_with_processor(tiny_student, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"]["AutoModelForImageClassification"].endswith(
        "DeiTCXRForImageClassificationWithTeacher"
    )
    assert (tmp_path / "modeling_deit_cxr.py").exists() and (tmp_path / "configuration_deit_cxr.py").exists()
    loaded = AutoModelForImageClassification.from_pretrained(tmp_path)  # hf_deitcxr is imported here
    assert isinstance(loaded, DeiTCXRForImageClassificationWithTeacher)


def test_fresh_process_loads_with_trust_remote_code(tiny_student, tmp_path):
    save_with_processor(tiny_student, tmp_path)
    pixels = torch.randn(2, 3, 32, 32)
    np.save(tmp_path / "pixels.npy", pixels.numpy())
    expected = tiny_student(pixels).logits.detach().numpy()
    script = textwrap.dedent(
        f"""
        import sys, numpy as np, torch
        from transformers import AutoModelForImageClassification
        model = AutoModelForImageClassification.from_pretrained({str(tmp_path)!r}, trust_remote_code=True).eval()
        assert "hf_deitcxr" not in sys.modules, "the package must not be imported"
        logits = model(torch.from_numpy(np.load({str(tmp_path / "pixels.npy")!r}))).logits
        np.save({str(tmp_path / "logits.npy")!r}, logits.detach().numpy())
        print(type(model).__name__)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "DeiTCXRForImageClassificationWithTeacher" in result.stdout
    np.testing.assert_array_equal(np.load(tmp_path / "logits.npy"), expected)


@pytest.mark.parametrize("num_channels", [3, 1])
def test_pipeline_probabilities_equal_forward(tmp_path, num_channels):
    torch.manual_seed(0)
    model = DeiTCXRForImageClassificationWithTeacher(
        DeiTCXRConfig(**tiny_deit_kwargs(num_channels=num_channels))
    ).eval()
    save_with_processor(model, tmp_path, num_channels)
    image = Image.fromarray((np.random.default_rng(1).random((50, 60)) * 255).astype(np.uint8), "L")
    classifier = pipeline("image-classification", model=str(tmp_path), trust_remote_code=True)
    predictions = classifier(image, top_k=3)
    pixels = make_image_processor(32, num_channels)(image, return_tensors="pt")["pixel_values"]
    probabilities = model(pixels).logits.softmax(-1)[0]
    by_label = {p["label"]: p["score"] for p in predictions}
    assert set(by_label) == set(LABELS)
    for index, name in enumerate(LABELS):
        assert by_label[name] == pytest.approx(probabilities[index].item(), abs=1e-6)


def test_one_picture_at_8_12_and_16_bits_gives_one_processor_output_and_prediction():
    """The 1-channel processor (and so training, which decodes with the same `to_grey_array`) maps 16-bit images
    by their stored bit depth: re-encoding a picture does not change the model input or the prediction. A
    low-contrast picture (40..200 of 255) tells this apart from min-max, which would stretch it to 0..255."""
    grey = np.linspace(40, 200, 50 * 60).reshape(50, 60).round().astype(np.uint8)
    encodings = {"8-bit": grey, "16-bit": grey.astype(np.uint16) * 257,
                 "12-bit in 16": np.rint(grey * (4095 / 255)).astype(np.uint16)}
    processor = make_image_processor(32, num_channels=1)
    torch.manual_seed(0)
    model = DeiTCXRForImageClassificationWithTeacher(DeiTCXRConfig(**tiny_deit_kwargs(num_channels=1))).eval()
    pixels, probabilities = {}, {}
    for name, values in encodings.items():
        buffer = io.BytesIO()
        Image.fromarray(values).save(buffer, format="PNG")
        with Image.open(io.BytesIO(buffer.getvalue())) as image:
            assert image.mode == ("L" if name == "8-bit" else "I;16")
            pixels[name] = processor(image, return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            probabilities[name] = model(pixels[name]).logits.softmax(-1)[0]
    one_grey_level = 1 / 255 / processor.image_std[0]
    for name in ("16-bit", "12-bit in 16"):
        torch.testing.assert_close(pixels[name], pixels["8-bit"], rtol=0, atol=one_grey_level * 1.01)
        torch.testing.assert_close(probabilities[name], probabilities["8-bit"], rtol=0, atol=1e-3)
        assert probabilities[name].argmax() == probabilities["8-bit"].argmax()
