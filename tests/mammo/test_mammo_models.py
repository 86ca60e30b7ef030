"""Mammography models: ViT/DeiT/Swin/PVT/PVT-v2 transfer from local checkpoints; the multi-view transformer."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import (
    AutoModelForImageClassification,
    DeiTConfig,
    PvtConfig,
    PvtV2Config,
    SwinConfig,
)

import hf_deitcxr  # noqa: F401  (registers the Auto classes)
from hf_deitcxr.mammo import MultiViewMammoConfig, MultiViewMammoForExamClassification
from hf_deitcxr.mammo.builders import build_multiview_model, build_single_view_model
from tests.helpers.mammo_models import IMAGENET, LABELS, multiview_model, save_standin, tiny_vit_config

BACKBONES = {
    "vit": tiny_vit_config,
    "deit": lambda: DeiTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                               image_size=32, patch_size=8, num_labels=IMAGENET,
                               architectures=["DeiTForImageClassificationWithTeacher"]),
    "swin": lambda: SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 2],
                               window_size=4, num_labels=IMAGENET),
    "pvt": lambda: PvtConfig(image_size=32, num_encoder_blocks=2, depths=[1, 1], sequence_reduction_ratios=[2, 1],
                             hidden_sizes=[16, 32], patch_sizes=[4, 2], strides=[4, 2], num_attention_heads=[1, 2],
                             mlp_ratios=[2, 2], num_labels=IMAGENET),
    "pvt_v2": lambda: PvtV2Config(image_size=32, num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1],
                                  hidden_sizes=[16, 32], patch_sizes=[7, 3], strides=[4, 2],
                                  num_attention_heads=[1, 2], mlp_ratios=[2, 2], num_labels=IMAGENET),
}
CLASSES = {"vit": "ViTForImageClassification", "deit": "DeiTForImageClassification",
           "swin": "SwinForImageClassification", "pvt": "PvtForImageClassification",
           "pvt_v2": "PvtV2ForImageClassification"}


@pytest.mark.parametrize("kind", list(BACKBONES))
def test_single_view_backbones_fine_tune_from_a_local_checkpoint(kind, tmp_path):
    source = save_standin(BACKBONES[kind](), tmp_path / kind)
    model = build_single_view_model(str(tmp_path / kind), LABELS, image_size=32)
    assert type(model).__name__ == CLASSES[kind]
    assert model.config.id2label == {0: "benign", 1: "malignant"} and model.config.num_labels == 2
    state = model.state_dict()
    kept = [name for name in state if name in source and state[name].shape == source[name].shape]
    body = [name for name in kept if "classifier" not in name]
    assert body and all(torch.equal(state[name], source[name]) for name in body)  # pretrained body kept
    assert state["classifier.weight"].shape[0] == 2  # new head
    logits = model(pixel_values=torch.randn(2, 3, 32, 32)).logits
    assert logits.shape == (2, 2)
    logits.sum().backward()  # trainable end to end


@pytest.mark.parametrize("kind", ["vit", "deit", "swin", "pvt_v2"])
def test_single_view_input_size_is_adapted(kind, tmp_path):
    source = save_standin(BACKBONES[kind](), tmp_path / kind)
    model = build_single_view_model(str(tmp_path / kind), LABELS, image_size=48)
    assert model.config.image_size == 48
    assert model(pixel_values=torch.randn(1, 3, 48, 48)).logits.shape == (1, 2)
    if kind in ("vit", "deit"):  # position embeddings interpolated: special tokens kept, grid resized
        key = next(k for k in source if k.endswith("embeddings.position_embeddings"))
        special = 1 if kind == "vit" else 2
        resized = model.state_dict()[key]
        assert resized.shape[1] == special + 36
        assert torch.equal(resized[:, :special], source[key][:, :special])


def test_pvt_v1_refuses_another_size_and_unknown_backbones_are_refused(tmp_path):
    save_standin(BACKBONES["pvt"](), tmp_path / "pvt")
    with pytest.raises(ValueError, match="PVT \\(v1\\) position embeddings"):
        build_single_view_model(str(tmp_path / "pvt"), LABELS, image_size=64)
    from hf_deitcxr import DenseNetConfig, DenseNetForImageClassification

    DenseNetForImageClassification(DenseNetConfig(growth_rate=4, block_config=[1], num_init_features=8)) \
        .save_pretrained(tmp_path / "densenet")
    with pytest.raises(ValueError, match="single-view mammography supports"):
        build_single_view_model(str(tmp_path / "densenet"), LABELS)
    with pytest.raises(ValueError, match="must be a ViT or DeiT"):
        build_multiview_model(str(tmp_path / "pvt"), LABELS, image_size=32)


def test_config_validation():
    with pytest.raises(ValueError, match="ViT or DeiT"):
        MultiViewMammoConfig(encoder=SwinConfig())
    with pytest.raises(ValueError, match="not <L\\|R>-<CC\\|MLO>"):
        MultiViewMammoConfig(encoder=tiny_vit_config(), view_names=["L-CC", "L-XX"])
    with pytest.raises(ValueError, match="num_global_attention_heads"):
        MultiViewMammoConfig(encoder=tiny_vit_config(), num_global_attention_heads=5)
    with pytest.raises(ValueError, match="global_tokens"):
        MultiViewMammoConfig(encoder=tiny_vit_config(), global_tokens="some")


@pytest.mark.parametrize("global_tokens", ["all", "cls"])
def test_masked_views_cannot_change_the_output(global_tokens):
    model = multiview_model(global_tokens=global_tokens)
    torch.manual_seed(1)
    pixels = torch.randn(4, 4, 3, 32, 32)
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 1, 0], [0, 0, 0, 1], [0, 1, 1, 1]], dtype=torch.bool)  # 1-4 views
    with torch.no_grad():
        reference = model(pixels, mask).logits
        for filler in (torch.randn_like(pixels) * 10, torch.full_like(pixels, float("nan"))):
            changed = torch.where(mask[:, :, None, None, None], pixels, filler)
            assert torch.equal(model(changed, mask).logits, reference)
        alone = torch.cat([model(pixels[i : i + 1], mask[i : i + 1]).logits for i in range(4)])
        assert torch.allclose(alone, reference, atol=1e-5)  # no exam attends to another exam's views
        present = pixels.clone()
        present[1, 2] += 1.0  # a present view does matter
        assert not torch.allclose(model(present, mask).logits[1], reference[1])
        # view and laterality embeddings: the same image in another slot gives another result
        moved = torch.zeros_like(pixels[:1])
        moved[0, 3] = pixels[2, 3]
        assert not torch.allclose(model(moved, mask[2:3].roll(1, dims=1)).logits, reference[2:3])
    with pytest.raises(ValueError, match="no view"):
        model(pixels[:1], torch.zeros(1, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="4 views"):
        model(pixels[:, :3])


def test_multiview_trains_with_labels_and_class_weights():
    model = multiview_model().train()
    pixels, mask = torch.randn(3, 4, 3, 32, 32), torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 1, 0]]).bool()
    output = model(pixels, mask, labels=torch.tensor([0, 1, 1]), class_weights=torch.tensor([1.0, 3.0]))
    output.loss.backward()
    assert model.multiview.encoder.embeddings.patch_embeddings.projection.weight.grad.abs().sum() > 0
    assert model.multiview.laterality_embeddings.grad.abs().sum() > 0
    assert output.exam_embedding.shape == (3, 32)


def test_encoder_starts_from_a_vit_or_deit_checkpoint(tmp_path):
    vit = save_standin(tiny_vit_config(), tmp_path / "vit")
    model = build_multiview_model(str(tmp_path / "vit"), LABELS, image_size=32, num_global_layers=1)
    encoder = model.multiview.encoder.state_dict()
    assert all(torch.equal(encoder[name], vit[f"vit.{name}"]) for name in encoder)
    assert model.config.num_global_layers == 1 and model.config.id2label[1] == "malignant"

    deit = save_standin(BACKBONES["deit"](), tmp_path / "deit")
    model = build_multiview_model(str(tmp_path / "deit"), LABELS, image_size=48)
    positions = model.multiview.encoder.embeddings.position_embeddings
    assert positions.shape == (1, 2 + 36, 32)
    assert torch.equal(model.multiview.encoder.embeddings.cls_token, deit["deit.embeddings.cls_token"])
    assert model(torch.randn(1, 4, 3, 48, 48)).logits.shape == (1, 2)


def test_save_load_roundtrip_and_fresh_process_remote_code(tmp_path):
    model = multiview_model()
    pixels = torch.randn(2, 4, 3, 32, 32)
    mask = torch.tensor([[1, 0, 1, 1], [0, 0, 1, 0]], dtype=torch.bool)
    with torch.no_grad():
        expected = model(pixels, mask).logits
    model.save_pretrained(tmp_path / "mv")
    config = json.loads((tmp_path / "mv" / "config.json").read_text())
    assert config["auto_map"]["AutoModelForImageClassification"].endswith(
        "modeling_multiview.MultiViewMammoForExamClassification")
    assert (tmp_path / "mv" / "modeling_multiview.py").is_file()
    assert (tmp_path / "mv" / "configuration_multiview.py").is_file()

    loaded = AutoModelForImageClassification.from_pretrained(tmp_path / "mv").eval()
    assert type(loaded) is MultiViewMammoForExamClassification
    with torch.no_grad():
        assert torch.equal(loaded(pixels, mask).logits, expected)
    continued = build_multiview_model(str(tmp_path / "mv"), LABELS, image_size=32)
    with torch.no_grad():
        assert torch.equal(continued.eval()(pixels, mask).logits, expected)

    torch.save({"pixels": pixels, "mask": mask, "expected": expected}, tmp_path / "case.pt")
    script = (
        "import sys, torch\n"
        "from transformers import AutoModelForImageClassification\n"
        f"case = torch.load({str(tmp_path / 'case.pt')!r})\n"
        f"model = AutoModelForImageClassification.from_pretrained({str(tmp_path / 'mv')!r}, trust_remote_code=True)\n"
        "assert 'hf_deitcxr' not in sys.modules, 'the package must not be needed'\n"
        "logits = model.eval()(case['pixels'], case['mask']).logits\n"
        "assert torch.allclose(logits, case['expected'], atol=1e-6), (logits, case['expected'])\n"
        "print(type(model).__module__)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "transformers_modules" in result.stdout
