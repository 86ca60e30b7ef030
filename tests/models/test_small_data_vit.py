"""Shifted Patch Tokenization and Locality Self-Attention (Lee, Lee & Song 2021) in the DeiT student: the shift and
the patch order checked by hand, the diagonal mask and learnable temperature, saving and loading (own classes,
remote code, a stock checkpoint underneath), the Space's classifier and the attention rollout (the fused serving
forward: tests/serving/test_serving.py)."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from transformers import (
    AutoModelForImageClassification,
    DeiTConfig,
    DeiTForImageClassificationWithTeacher,
    pipeline,
)

from hf_deitcxr import DeiTCXRConfig, DeiTCXRForImageClassificationWithTeacher, load_student, make_image_processor
from hf_deitcxr.models.deit_cxr.modeling_small_data_vit import (
    LocalitySelfAttention,
    ShiftedPatchEmbeddings,
    diagonal_mask,
    shift_diagonally,
)
from hf_deitcxr.serving.explain import attention_rollout
from hf_deitcxr.serving.predictor import RadiographClassifier
from tests.helpers.tiny_models import LABELS, tiny_deit_kwargs
from tests.helpers.tolerances import SAME_FORWARD

X = torch.arange(1.0, 17.0).reshape(1, 1, 4, 4)  # rows 1-4, 5-8, 9-12, 13-16


def small_data_student(spt: bool = True, lsa: bool = True, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    config = DeiTCXRConfig(**tiny_deit_kwargs(shifted_patch_tokenization=spt, locality_self_attention=lsa,
                                              **overrides))
    model = DeiTCXRForImageClassificationWithTeacher(config).eval()
    model.set_attn_implementation("eager")
    return model


def test_four_diagonal_shifts_by_hand():
    stacked = shift_diagonally(X, 1)[0]
    assert stacked.shape == (5, 4, 4)
    expected = [
        X[0, 0].tolist(),
        [[0, 0, 0, 0], [0, 1, 2, 3], [0, 5, 6, 7], [0, 9, 10, 11]],  # content from up-left
        [[0, 0, 0, 0], [2, 3, 4, 0], [6, 7, 8, 0], [10, 11, 12, 0]],  # from up-right
        [[0, 5, 6, 7], [0, 9, 10, 11], [0, 13, 14, 15], [0, 0, 0, 0]],  # from down-left
        [[6, 7, 8, 0], [10, 11, 12, 0], [14, 15, 16, 0], [0, 0, 0, 0]],  # from down-right
    ]
    assert stacked.tolist() == expected


def test_shifted_patch_tokens_by_hand():
    """With an identity LayerNorm and projection, a token is its patch of the 5 stacked images, (row, col, channel)."""
    config = DeiTCXRConfig(**tiny_deit_kwargs(image_size=4, patch_size=2, num_channels=1, hidden_size=20,
                                              shifted_patch_tokenization=True))
    embeddings = ShiftedPatchEmbeddings(config)
    embeddings.layernorm = nn.Identity()
    with torch.no_grad():
        embeddings.projection.weight.copy_(torch.eye(20))
        embeddings.projection.bias.zero_()
        tokens = embeddings(X)
    assert tokens.shape == (1, 4, 20) and embeddings.num_patches == 4 and embeddings.shift == 1
    top_left = [1, 0, 0, 0, 6, 2, 0, 0, 5, 7, 5, 0, 2, 0, 10, 6, 1, 3, 9, 11]
    bottom_right = [11, 6, 8, 14, 16, 12, 7, 0, 15, 0, 15, 10, 12, 0, 0, 16, 11, 0, 0, 0]
    assert tokens[0, 0].tolist() == top_left and tokens[0, 3].tolist() == bottom_right


def test_shapes_and_parameters_of_both_options():
    plain, both = small_data_student(False, False), small_data_student(True, True)
    pixels = torch.randn(2, 3, 32, 32)
    out = both(pixels, output_attentions=True)
    assert out.logits.shape == (2, 3) and out.cls_logits.shape == (2, 3)
    assert len(out.attentions) == 2 and out.attentions[0].shape == (2, 2, 18, 18)
    assert isinstance(both.deit.embeddings.patch_embeddings, ShiftedPatchEmbeddings)
    assert all(isinstance(layer.attention, LocalitySelfAttention) for layer in both.deit.layers)
    count = lambda model: sum(p.numel() for p in model.parameters())  # noqa: E731
    patch_dim = 5 * 3 * 8 * 8
    conv = 3 * 8 * 8 * 32 + 32
    spt = 2 * patch_dim + patch_dim * 32 + 32  # LayerNorm + linear
    assert count(both) - count(plain) == spt - conv + 2 * 2  # + one temperature per head and layer


def test_attention_diagonal_is_masked_and_rows_sum_to_one():
    model = small_data_student(spt=False, lsa=True)
    attentions = model(torch.randn(2, 3, 32, 32), output_attentions=True).attentions
    for layer in attentions:
        assert torch.all(torch.diagonal(layer, dim1=-2, dim2=-1) == 0)
        torch.testing.assert_close(layer.sum(-1), torch.ones(layer.shape[:-1]))
    stock = small_data_student(spt=False, lsa=False)
    assert torch.all(torch.diagonal(stock(torch.randn(1, 3, 32, 32), output_attentions=True).attentions[0],
                                    dim1=-2, dim2=-1) > 0)
    mask = diagonal_mask(3, torch.bfloat16, torch.device("cpu"))
    assert mask.shape == (1, 1, 3, 3) and mask[0, 0, 1, 1] == torch.finfo(torch.bfloat16).min and mask[0, 0, 0, 1] == 0


def test_temperature_starts_at_the_stock_scale_is_learned_and_matters():
    model = small_data_student(spt=False, lsa=True).train()
    scale = model.deit.layers[0].attention.attention_scale
    assert isinstance(scale, nn.Parameter) and scale.requires_grad
    torch.testing.assert_close(scale.detach(), torch.full((2,), 16**-0.5))  # head_dim 16
    loss = model(torch.randn(4, 3, 32, 32), labels=torch.tensor([0, 1, 2, 0])).loss
    loss.backward()
    assert scale.grad is not None and bool(scale.grad.abs().sum() > 0)
    model.eval()
    pixels = torch.randn(1, 3, 32, 32)
    before = model(pixels).logits
    with torch.no_grad():
        scale.mul_(3.0)  # a sharper softmax in layer 0 (one head would do)
    assert not torch.allclose(model(pixels).logits, before)


def test_eager_and_sdpa_agree_and_flash_is_refused():
    model = small_data_student()
    pixels = torch.randn(2, 3, 32, 32)
    eager = model(pixels).logits
    model.set_attn_implementation("sdpa")
    torch.testing.assert_close(model(pixels).logits, eager, atol=1e-5, rtol=1e-5)
    attention = model.deit.layers[0].attention
    attention.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ValueError, match="eager"):
        attention(torch.randn(1, 18, 32))


def test_config_defaults_off_records_the_options_and_rejects_non_booleans():
    assert not DeiTCXRConfig().shifted_patch_tokenization and not DeiTCXRConfig().locality_self_attention
    assert not DeiTCXRConfig().uses_small_data_vit
    assert DeiTCXRConfig(locality_self_attention=True).uses_small_data_vit
    with pytest.raises(ValueError, match="shifted_patch_tokenization"):
        DeiTCXRConfig(shifted_patch_tokenization="yes")
    with pytest.raises(ValueError, match="patch"):
        DeiTCXRForImageClassificationWithTeacher(DeiTCXRConfig(**tiny_deit_kwargs(
            patch_size=1, image_size=8, shifted_patch_tokenization=True)))


def test_save_and_from_pretrained_round_trip(tmp_path):
    model = small_data_student()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["shifted_patch_tokenization"] is True and config["locality_self_attention"] is True
    loaded, info = DeiTCXRForImageClassificationWithTeacher.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info[kind] for kind in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    loaded.eval().set_attn_implementation("eager")
    pixels = torch.randn(2, 3, 32, 32)
    assert torch.equal(loaded(pixels).logits, model(pixels).logits)
    auto = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    assert isinstance(auto, DeiTCXRForImageClassificationWithTeacher)
    torch.testing.assert_close(auto(pixels).logits, model(pixels).logits, atol=1e-6, rtol=1e-5)
    processor = make_image_processor(32, 3)
    processor.save_pretrained(tmp_path)
    grey = Image.fromarray((np.random.default_rng(1).random((40, 40)) * 255).astype(np.uint8), "L")
    scores = {r["label"]: r["score"] for r in pipeline("image-classification", model=str(tmp_path))(grey, top_k=3)}
    expected = model(processor(grey, return_tensors="pt")["pixel_values"]).logits.softmax(-1)[0]
    np.testing.assert_allclose([scores[label] for label in LABELS], expected.detach().numpy(), atol=1e-5)


def test_fresh_process_loads_it_with_trust_remote_code(tmp_path):
    model = small_data_student()
    model.save_pretrained(tmp_path)
    make_image_processor(32, 3).save_pretrained(tmp_path)
    pixels = torch.randn(2, 3, 32, 32)
    np.save(tmp_path / "pixels.npy", pixels.numpy())
    script = textwrap.dedent(f"""
        import sys, numpy as np, torch
        from transformers import AutoModelForImageClassification
        model = AutoModelForImageClassification.from_pretrained({str(tmp_path)!r}, trust_remote_code=True,
                                                                attn_implementation="eager").eval()
        assert "hf_deitcxr" not in sys.modules, "the package must not be imported"
        logits = model(torch.from_numpy(np.load({str(tmp_path / "pixels.npy")!r}))).logits
        np.save({str(tmp_path / "logits.npy")!r}, logits.detach().numpy())
        print(type(model.deit.embeddings.patch_embeddings).__name__, type(model.deit.layers[0].attention).__name__)
        """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ShiftedPatchEmbeddings LocalitySelfAttention" in result.stdout
    np.testing.assert_allclose(np.load(tmp_path / "logits.npy"), model(pixels).logits.detach().numpy(),
                               **SAME_FORWARD)


def test_stock_checkpoint_underneath_keeps_every_weight_the_options_do_not_replace(tmp_path):
    """Stands in for facebook/deit-*-distilled-*: SPT starts fresh (a convolution does not fit it), LSA at the stock
    scale, the rest is the checkpoint's."""
    torch.manual_seed(1)
    stock = DeiTForImageClassificationWithTeacher(DeiTConfig(**{**tiny_deit_kwargs(), "id2label": None,
                                                               "label2id": None}, num_labels=10))
    stock.save_pretrained(tmp_path)
    student = load_student(str(tmp_path), LABELS, num_channels=1, shifted_patch_tokenization=True,
                           locality_self_attention=True)
    assert student.config.shifted_patch_tokenization and student.config.num_channels == 1
    assert student.deit.embeddings.patch_embeddings.projection.weight.shape == (32, 5 * 1 * 8 * 8)
    torch.testing.assert_close(student.deit.layers[1].attention.attention_scale.detach(), torch.full((2,), 0.25))
    stock_state, state = stock.state_dict(), student.state_dict()
    kept = [k for k in state if k in stock_state and not k.startswith(("cls_classifier", "distillation_classifier",
                                                                        "deit.embeddings.patch_embeddings"))]
    assert len(kept) > 20 and all(torch.equal(state[k], stock_state[k]) for k in kept)
    assert student(torch.randn(1, 1, 32, 32)).logits.shape == (1, 3)


def test_attention_rollout_of_a_locality_model_is_a_patch_map():
    model = small_data_student()
    with torch.no_grad():
        attentions = model(torch.randn(2, 3, 32, 32), output_attentions=True).attentions
    maps = attention_rollout(attentions, (4, 4))
    assert maps.shape == (2, 4, 4) and np.isfinite(maps).all()
    assert maps.min() == 0.0 and maps.max() == 1.0 and not np.allclose(maps[0], maps[0].mean())


def test_the_space_classifier_serves_it_fused_with_its_heatmap(tmp_path):
    model = small_data_student(num_channels=1)
    model.save_pretrained(tmp_path)
    make_image_processor(32, 1).save_pretrained(tmp_path)
    grey = Image.fromarray((np.random.default_rng(0).random((48, 40)) * 255).astype(np.uint8), "L")
    served = RadiographClassifier.from_pretrained(tmp_path, precision="fp32")
    unfused = RadiographClassifier.from_pretrained(tmp_path, precision="fp32", fused=False)
    assert served.fused is not None and unfused.fused is None
    prediction, reference = served.predict(grey), unfused.predict(grey)
    assert prediction.heatmap.shape == (4, 4) and list(prediction.probabilities) == list(reference.probabilities)
    np.testing.assert_allclose(list(prediction.probabilities.values()), list(reference.probabilities.values()),
                               atol=1e-5)
    np.testing.assert_allclose(prediction.heatmap, reference.heatmap, atol=1e-5)
