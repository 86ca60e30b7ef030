"""scripts/bench_forward_ceiling.py: the replayed matmuls are exactly the forward's, and torch is left unpatched."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from hf_deitcxr.serving import RadiographClassifier
from tests.helpers.serving_models import save_tiny_models

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_forward_ceiling.py"


def load_script():
    spec = importlib.util.spec_from_file_location("bench_forward_ceiling", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_recorded_matmuls_are_the_forwards_products_and_torch_is_restored(tmp_path):
    bench = load_script()
    student, _ = save_tiny_models(tmp_path)
    classifier = RadiographClassifier.from_pretrained(student, precision="fp32")
    pixels = torch.randn(1, classifier.num_channels, classifier.size, classifier.size)
    originals = (F.linear, torch.Tensor.__matmul__, torch.addmm)
    with torch.inference_mode():
        expected = classifier.fused(pixels, output_attentions=True)[0]
        calls = bench.recorded_matmuls(lambda: classifier.fused(pixels, output_attentions=True))
        # patch embedding + per layer (QKV, Q@K, P@V, output, fc1, fc2) + the head
        assert len(calls) == 1 + 6 * classifier.model.config.num_hidden_layers + 1
        assert all(isinstance(call(), torch.Tensor) for call in calls)
        again = classifier.fused(pixels, output_attentions=True)[0]
    assert (F.linear, torch.Tensor.__matmul__, torch.addmm) == originals
    torch.testing.assert_close(again, expected, rtol=0, atol=0)  # recording did not change the forward's result
