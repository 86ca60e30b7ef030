"""The ONNX Runtime forward of the DeiT student and the start-up choice of the serving forward."""

from __future__ import annotations

import logging

import pytest
import torch
from PIL import Image

from hf_deitcxr import DeiTCXRConfig, DeiTCXRForImageClassificationWithTeacher, hardware
from hf_deitcxr.serving import RadiographClassifier, onnx_deit
from hf_deitcxr.serving import forward_choice as choice_module
from hf_deitcxr.serving.fast_deit import FusedDeiT
from hf_deitcxr.serving.forward_choice import FORWARD_ENV, choose_forward, resolve_forward
from hf_deitcxr.serving.onnx_deit import OnnxDeiT, graph_key
from tests.helpers.serving_models import RADIOGRAPHS, save_tiny_models
from tests.helpers.tiny_models import tiny_deit_kwargs

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def make_student(**overrides) -> DeiTCXRForImageClassificationWithTeacher:
    """A tiny student; LSA temperatures that differ per head, so an export that ignored them would differ."""
    torch.manual_seed(0)
    model = DeiTCXRForImageClassificationWithTeacher(DeiTCXRConfig(**tiny_deit_kwargs(**overrides))).eval()
    with torch.no_grad():
        for layer in model.deit.layers if overrides.get("locality_self_attention") else ():
            layer.attention.attention_scale.uniform_(0.1, 0.6)
    model.config._attn_implementation = "eager"
    return model


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx_cache")


@pytest.mark.parametrize(
    "overrides",
    [{}, {"calibration_temperature": 2.5}, {"num_channels": 1, "inference_head": "distillation"},
     {"shifted_patch_tokenization": True, "locality_self_attention": True, "num_channels": 1}],
    ids=["average-3ch", "calibrated", "distillation-head-1ch", "spt-lsa-1ch"],
)
def test_onnx_forward_equals_the_pytorch_forward(overrides, cache):
    model = make_student(**overrides)
    fused = FusedDeiT.from_model(model)
    onnx = OnnxDeiT.from_fused(fused, model, cache_dir=cache)
    assert onnx is not None
    channels = model.config.num_channels
    pixels = torch.randn(3, channels, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = model(pixel_values=pixels, output_attentions=True)
        logits, attentions = onnx(pixels, output_attentions=True)
        only_logits, no_maps = onnx(pixels[:1])
    probabilities, expected_probabilities = logits.softmax(-1), expected.logits.softmax(-1)
    assert (probabilities - expected_probabilities).abs().max() < 1e-4
    assert torch.equal(probabilities.argmax(-1), expected_probabilities.argmax(-1))
    torch.testing.assert_close(only_logits, logits[:1])
    assert no_maps is None and len(attentions) == len(expected.attentions) == 2
    for ours, theirs in zip(attentions, expected.attentions, strict=True):
        assert ours.shape == theirs.shape == (3, 2, 18, 18)
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="shape"):
        onnx(torch.randn(1, channels, 48, 48))


def test_exported_graph_is_cached_by_weights(tmp_path, monkeypatch):
    model = make_student()
    fused = FusedDeiT.from_model(model)
    first = onnx_deit.cached_graph(fused, model, tmp_path)
    monkeypatch.setattr(onnx_deit, "export_graph", lambda *args: pytest.fail("exported again"))
    assert onnx_deit.cached_graph(fused, model, tmp_path) == first  # a restart loads the file
    other = make_student(calibration_temperature=2.0)
    assert graph_key(other) != graph_key(model)
    with torch.no_grad():
        other = make_student()
        other.cls_classifier.bias.add_(1.0)
    assert graph_key(other) != graph_key(model)


def test_missing_onnxruntime_or_failed_export_fall_back(cache, monkeypatch, caplog):
    model = make_student()
    fused = FusedDeiT.from_model(model)
    monkeypatch.setattr(onnx_deit, "cached_graph", lambda *args: (_ for _ in ()).throw(RuntimeError("no export")))
    with caplog.at_level(logging.WARNING):
        assert OnnxDeiT.from_fused(fused, model, cache_dir=cache) is None
        chosen = choose_forward(model, fused, precision="fp32", forward="onnx", cache_dir=cache)
    assert "no export" in caplog.text
    assert chosen.forward is fused and chosen.name == "torch fp32"
    monkeypatch.undo()
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    assert OnnxDeiT.from_fused(fused, model, cache_dir=cache) is None
    assert choose_forward(model, fused, precision="fp32", forward="auto", cache_dir=cache).name == "torch fp32"


def test_onnx_forward_that_differs_is_not_used(cache, monkeypatch):
    model = make_student()
    fused = FusedDeiT.from_model(model)
    original = OnnxDeiT.__call__
    monkeypatch.setattr(OnnxDeiT, "__call__", lambda self, x, output_attentions=False: (
        lambda out: (out[0] + 1e-2 * torch.arange(3.0), out[1]))(original(self, x, output_attentions)))
    assert choose_forward(model, fused, precision="fp32", forward="onnx", cache_dir=cache).name == "torch fp32"


def test_choice_respects_the_override_and_picks_the_fastest(cache, monkeypatch):
    model = make_student()
    fused = FusedDeiT.from_model(model)
    monkeypatch.setattr(hardware, "cpu_flags", lambda: {"avx512_bf16"})
    assert choose_forward(model, fused, forward="onnx", cache_dir=cache).name == "onnxruntime fp32"
    assert choose_forward(model, fused, forward="torch", cache_dir=cache).name == "torch fp32"  # no AMX: fp32
    bf16 = choose_forward(model, fused, precision="bf16", forward="auto", cache_dir=cache)
    assert bf16.name == "torch bf16" and bf16.dtype == torch.bfloat16
    # auto: every candidate timed, the lowest median kept
    speeds = {"torch fp32": 3.0, "onnxruntime fp32": 1.0, "torch bf16": 2.0}
    monkeypatch.setattr(choice_module, "time_candidates", lambda candidates, *args: {
        name: speeds[name] for name in candidates})
    auto = choose_forward(model, fused, forward="auto", cache_dir=cache)
    assert auto.name == "onnxruntime fp32" and set(auto.median_ms) == set(speeds)
    assert isinstance(auto.forward, OnnxDeiT)
    speeds["torch bf16"] = 0.5
    assert choose_forward(model, fused, forward="auto", cache_dir=cache).name == "torch bf16"
    assert set(choose_forward(model, fused, precision="fp32", forward="auto", cache_dir=cache).median_ms) == {
        "torch fp32", "onnxruntime fp32"}  # fp32: bf16 is no candidate
    monkeypatch.setenv(FORWARD_ENV, "torch")
    assert resolve_forward(None) == "torch" and resolve_forward("onnx") == "onnx"
    with pytest.raises(ValueError, match="forward must be one of"):
        resolve_forward("tensorrt")


def test_time_candidates_measures_each_within_the_budget():
    calls = {"a": 0, "b": 0}

    def counted(name):
        def call(pixels, output_attentions=False):
            calls[name] += 1
            return pixels, None
        return call

    medians = choice_module.time_candidates({name: (counted(name), torch.float32) for name in calls},
                                            torch.zeros(1, 3, 4, 4), True, budget_s=0.05)
    assert set(medians) == {"a", "b"} and calls["a"] == calls["b"] >= 4  # a warm-up call + at least 3 rounds


def test_classifier_with_the_onnx_forward_predicts_as_the_pytorch_one(tmp_path, monkeypatch):
    monkeypatch.setenv(onnx_deit.CACHE_ENV, str(tmp_path / "cache"))
    student_dir, _ = save_tiny_models(tmp_path)
    onnx = RadiographClassifier.from_pretrained(student_dir, precision="fp32", forward="onnx")
    torch_forward = RadiographClassifier.from_pretrained(student_dir, precision="fp32", forward="torch")
    assert onnx.forward_name == "onnxruntime fp32" and torch_forward.forward_name == "torch fp32"
    auto = RadiographClassifier.from_pretrained(student_dir, precision="fp32", forward="auto")
    assert auto.forward_name in auto.forward_choice.median_ms
    for path in RADIOGRAPHS[:3]:
        grey = Image.open(path)
        ours, theirs = onnx.predict(grey), torch_forward.predict(grey)
        assert ours.label == theirs.label
        assert max(abs(ours.probabilities[k] - theirs.probabilities[k]) for k in ours.probabilities) < 1e-4
        assert abs(ours.heatmap - theirs.heatmap).max() < 1e-3
    # a micro-batch of several goes through the fused PyTorch forward in one pass (the ONNX graph is batch-1), a
    # batch of one through ONNX Runtime; both give what one-by-one predictions give
    greys = [Image.open(path) for path in RADIOGRAPHS[:3]]
    calls = {"onnx": 0}
    original = type(onnx.fused).__call__
    monkeypatch.setattr(type(onnx.fused), "__call__",
                        lambda self, *a, **k: calls.__setitem__("onnx", calls["onnx"] + 1) or original(self, *a, **k))
    batch = onnx.predict_batch(greys)
    assert calls["onnx"] == 0
    assert onnx.predict_batch(greys[:1])[0].label == batch[0].label and calls["onnx"] == 1
    for grey, got in zip(greys, batch, strict=True):
        want = torch_forward.predict(grey)
        assert max(abs(got.probabilities[k] - want.probabilities[k]) for k in got.probabilities) < 1e-4
        assert abs(got.heatmap - want.heatmap).max() < 1e-3
