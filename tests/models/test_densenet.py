"""The DenseNet teacher: torchvision-exact architecture, conversion, outputs, saving, remote-code loading."""

import ast
import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from hf_deitcxr.models.densenet import (
    DenseNetConfig,
    DenseNetForImageClassification,
    DenseNetModel,
    convert_checkpoint,
    convert_state_dict,
    infer_config_from_state_dict,
    modeling_densenet,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
# Published torchvision parameter counts (torchvision.models.DenseNet121_Weights.IMAGENET1K_V1.meta etc.).
TORCHVISION_NUM_PARAMS = {"densenet121": 7_978_856, "densenet169": 14_149_480, "densenet201": 20_013_928}
TORCHVISION_PRESETS = {
    "densenet121": (32, (6, 12, 24, 16), 64),
    "densenet169": (32, (6, 12, 32, 32), 64),
    "densenet201": (32, (6, 12, 48, 32), 64),
}
RUNNING_STATS = ("running_mean", "running_var", "num_batches_tracked")


def torchvision_densenet_shapes(
    growth_rate=32,
    block_config=(6, 12, 24, 16),
    num_init_features=64,
    bn_size=4,
    num_classes=1000,
    in_channels=3,
) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of torchvision's `DenseNet` state dict, written from its definition, not our code."""
    shapes = {}

    def batch_norm(prefix, channels):
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (channels,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    shapes["features.conv0.weight"] = (num_init_features, in_channels, 7, 7)
    batch_norm("features.norm0", num_init_features)
    channels = num_init_features
    for i, num_layers in enumerate(block_config, start=1):
        for j in range(1, num_layers + 1):
            layer = f"features.denseblock{i}.denselayer{j}"
            layer_in = channels + (j - 1) * growth_rate
            batch_norm(f"{layer}.norm1", layer_in)
            shapes[f"{layer}.conv1.weight"] = (bn_size * growth_rate, layer_in, 1, 1)
            batch_norm(f"{layer}.norm2", bn_size * growth_rate)
            shapes[f"{layer}.conv2.weight"] = (growth_rate, bn_size * growth_rate, 3, 3)
        channels += num_layers * growth_rate
        if i != len(block_config):
            batch_norm(f"features.transition{i}.norm", channels)
            shapes[f"features.transition{i}.conv.weight"] = (channels // 2, channels, 1, 1)
            channels //= 2
    batch_norm("features.norm5", channels)
    shapes["classifier.weight"] = (num_classes, channels)
    shapes["classifier.bias"] = (num_classes,)
    return shapes


def random_state_dict(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Distinct random tensors, scaled so that even a 121-layer forward pass stays finite."""
    generator = torch.Generator().manual_seed(seed)
    state_dict = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state_dict[key] = torch.tensor(7, dtype=torch.long)
        elif key.endswith("running_var") or (".norm" in key and key.endswith(".weight")):
            state_dict[key] = torch.rand(shape, generator=generator) + 0.5
        elif len(shape) > 1:  # conv / linear weight: fan-in scaling
            state_dict[key] = torch.randn(shape, generator=generator) / np.prod(shape[1:]) ** 0.5
        else:
            state_dict[key] = 0.1 * torch.randn(shape, generator=generator)
    return state_dict


def to_legacy_names(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision's pre-0.4 layout: `denselayer1.norm.1` instead of `norm1`, and no `num_batches_tracked`."""
    legacy = {}
    for key, tensor in state_dict.items():
        if key.endswith("num_batches_tracked"):
            continue
        if ".denselayer" in key:
            for old in ("norm1", "conv1", "norm2", "conv2"):
                key = key.replace(f".{old}.", f".{old[:-1]}.{old[-1]}.")
        legacy[key] = tensor
    return legacy


def num_trainable(shapes: dict[str, tuple[int, ...]]) -> int:
    return sum(int(np.prod(shape)) for key, shape in shapes.items() if not key.endswith(RUNNING_STATS))


def tiny_config(**overrides) -> DenseNetConfig:
    kwargs = dict(growth_rate=4, block_config=[1, 1], num_init_features=8, num_labels=3)
    kwargs.update(overrides)
    return DenseNetConfig(**kwargs)


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return DenseNetForImageClassification(tiny_config()).eval()


# Architecture: exact torchvision names, shapes and parameter counts.


@pytest.mark.parametrize("variant", sorted(TORCHVISION_NUM_PARAMS))
def test_reference_shapes_have_torchvision_parameter_count(variant):
    growth_rate, block_config, num_init_features = TORCHVISION_PRESETS[variant]
    shapes = torchvision_densenet_shapes(growth_rate, block_config, num_init_features)
    assert num_trainable(shapes) == TORCHVISION_NUM_PARAMS[variant]


@pytest.mark.parametrize("variant", sorted(TORCHVISION_NUM_PARAMS))
def test_model_matches_torchvision_names_shapes_and_counts(variant):
    model = DenseNetForImageClassification(DenseNetConfig.from_variant(variant, num_labels=1000))
    assert sum(p.numel() for p in model.parameters()) == TORCHVISION_NUM_PARAMS[variant]
    expected = {
        ("densenet." + key if key.startswith("features.") else key): shape
        for key, shape in torchvision_densenet_shapes(*TORCHVISION_PRESETS[variant]).items()
    }
    assert {key: tuple(t.shape) for key, t in model.state_dict().items()} == expected
    assert model.config.matching_variant() == variant


def test_initialisation_follows_torchvision():
    model = DenseNetForImageClassification(tiny_config(num_init_features=64))
    conv0 = model.densenet.features.conv0.weight
    assert conv0.std().item() == pytest.approx((2 / (3 * 7 * 7)) ** 0.5, rel=0.1)  # kaiming_normal, fan_in
    norm = model.densenet.features.norm5
    assert torch.equal(norm.weight, torch.ones_like(norm.weight)) and not norm.bias.any()
    assert not model.classifier.bias.any()


# Weight conversion.


def test_convert_torchvision_densenet121_loads_exactly():
    shapes = torchvision_densenet_shapes()
    source = random_state_dict(shapes)
    converted = convert_state_dict(source)
    config = infer_config_from_state_dict(source)
    assert config.matching_variant() == "densenet121" and config.num_labels == 1000
    model = DenseNetForImageClassification(config)
    result = model.load_state_dict(converted, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    loaded = model.state_dict()
    for key, tensor in source.items():
        our_key = "densenet." + key if key.startswith("features.") else key
        assert torch.equal(loaded[our_key], tensor), key


def test_convert_legacy_and_data_parallel_names():
    source = random_state_dict(torchvision_densenet_shapes(block_config=(2, 3), num_classes=5))
    legacy = {"module." + key: t for key, t in to_legacy_names(source).items()}
    assert "module.features.denseblock1.denselayer1.norm.1.weight" in legacy
    converted = convert_state_dict(legacy)
    expected = convert_state_dict(source)
    assert converted.keys() == expected.keys()
    for key, tensor in expected.items():
        if key.endswith("num_batches_tracked"):
            assert converted[key].item() == 0  # absent in legacy files; BatchNorm2d fills it with 0 too
        else:
            assert torch.equal(converted[key], tensor), key
    config = infer_config_from_state_dict(legacy)
    assert config.block_config == [2, 3] and config.num_labels == 5 and config.matching_variant() is None


def test_infer_config_reads_channels_growth_and_bottleneck():
    shapes = torchvision_densenet_shapes(
        growth_rate=12, block_config=(3, 1, 2), num_init_features=24, bn_size=2, num_classes=14, in_channels=1
    )
    config = infer_config_from_state_dict(random_state_dict(shapes))
    assert (config.growth_rate, config.block_config, config.num_init_features) == (12, [3, 1, 2], 24)
    assert (config.bn_size, config.num_channels, config.num_labels) == (2, 1, 14)


def test_convert_checkpoint_end_to_end(tmp_path):
    source = random_state_dict(torchvision_densenet_shapes())
    save_file(source, str(tmp_path / "densenet121.safetensors"))

    model = convert_checkpoint(tmp_path / "densenet121.safetensors", tmp_path / "out")
    assert (tmp_path / "out" / "model.safetensors").exists()
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["model_type"] == "deitcxr_densenet" and config["block_config"] == [6, 12, 24, 16]
    reloaded = DenseNetForImageClassification.from_pretrained(tmp_path / "out").eval()
    loaded = reloaded.state_dict()
    for key, tensor in source.items():
        our_key = "densenet." + key if key.startswith("features.") else key
        assert torch.equal(loaded[our_key], tensor), key
    pixels = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        logits = reloaded(pixels).logits
        assert torch.isfinite(logits).all() and torch.equal(logits, model(pixels).logits)


def test_convert_checkpoint_from_folder_with_new_head(tmp_path):
    source = random_state_dict(torchvision_densenet_shapes(block_config=(2, 2), num_classes=1000))
    (tmp_path / "src").mkdir()
    save_file(source, str(tmp_path / "src" / "model.safetensors"))
    model = convert_checkpoint(tmp_path / "src", tmp_path / "out", num_labels=3)
    assert model.classifier.weight.shape == (3, source["features.norm5.weight"].shape[0])
    assert torch.equal(model.densenet.features.norm5.weight, source["features.norm5.weight"])
    assert DenseNetForImageClassification.from_pretrained(tmp_path / "out").config.num_labels == 3


def test_conversion_script_cli(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        "convert_script", REPO_ROOT / "scripts/convert_densenet_weights.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    save_file(
        random_state_dict(torchvision_densenet_shapes(block_config=(1, 2))), str(tmp_path / "w.safetensors")
    )
    assert script.main([str(tmp_path / "w.safetensors"), str(tmp_path / "out"), "--num-labels", "2"]) == 0
    assert "custom DenseNet" in capsys.readouterr().out
    assert DenseNetForImageClassification.from_pretrained(tmp_path / "out").config.num_labels == 2


def test_conversion_errors_list_the_offending_keys(tmp_path):
    source = random_state_dict(torchvision_densenet_shapes(block_config=(1, 1), num_classes=2))
    extra = {**source, "features.extra.weight": torch.zeros(1)}
    save_file(extra, str(tmp_path / "extra.safetensors"))
    with pytest.raises(ValueError, match=r"unexpected keys \(1\).*densenet\.features\.extra\.weight"):
        convert_checkpoint(tmp_path / "extra.safetensors", tmp_path / "out")

    partial = {k: v for k, v in source.items() if not k.startswith("features.norm5.")}
    save_file(partial, str(tmp_path / "partial.safetensors"))
    with pytest.raises(ValueError, match=r"missing keys \(5\).*norm5"):
        convert_checkpoint(tmp_path / "partial.safetensors", tmp_path / "out")

    reshaped = {**source, "features.norm0.bias": torch.zeros(3)}
    save_file(reshaped, str(tmp_path / "reshaped.safetensors"))
    with pytest.raises(ValueError, match="shape mismatches.*norm0.bias"):
        convert_checkpoint(tmp_path / "reshaped.safetensors", tmp_path / "out")

    with pytest.raises(ValueError, match="not a DenseNet"):
        infer_config_from_state_dict({"conv.weight": torch.zeros(1)})
    with pytest.raises(FileNotFoundError):
        convert_checkpoint(tmp_path / "absent.safetensors", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# Forward pass, loss, gradients.


@pytest.mark.parametrize("num_channels", [1, 3])
def test_output_shapes(num_channels):
    model = DenseNetForImageClassification(tiny_config(num_channels=num_channels)).eval()
    pixels = torch.randn(2, num_channels, 64, 64)
    outputs = model(pixels, output_hidden_states=True)
    assert outputs.logits.shape == (2, 3)
    # Stem output (1/4 resolution), then each dense block: 8 + 4 channels, transition to 6, + 4 channels.
    assert [tuple(h.shape) for h in outputs.hidden_states] == [(2, 8, 16, 16), (2, 12, 16, 16), (2, 10, 8, 8)]
    base = model.densenet(pixels)
    assert base.last_hidden_state.shape == (2, 10, 8, 8) and (base.last_hidden_state >= 0).all()
    assert torch.allclose(base.pooler_output, base.last_hidden_state.mean(dim=(2, 3)), atol=1e-6)
    assert model(pixels).hidden_states is None


def reference_densenet_logits(state: dict[str, torch.Tensor], block_config, pixels: torch.Tensor) -> torch.Tensor:
    """torchvision's DenseNet forward (torchvision/models/densenet.py), written out in torch.nn.functional and read
    from torchvision parameter names: conv0-norm0-relu0-pool0; per dense layer BN-ReLU-conv1x1-BN-ReLU-conv3x3 on
    the concatenation of all earlier maps; per transition BN-ReLU-conv1x1-avgpool 2x2; norm5, ReLU, global average
    pool, linear classifier. Batch norms in inference mode (running statistics, eps 1e-5)."""

    def bn(x, name):
        return F.batch_norm(x, state[f"{name}.running_mean"], state[f"{name}.running_var"], state[f"{name}.weight"],
                            state[f"{name}.bias"], training=False, eps=1e-5)

    x = F.conv2d(pixels, state["features.conv0.weight"], stride=2, padding=3)
    x = F.max_pool2d(F.relu(bn(x, "features.norm0")), kernel_size=3, stride=2, padding=1)
    for block, layers in enumerate(block_config, start=1):
        maps = [x]
        for layer in range(1, layers + 1):
            name = f"features.denseblock{block}.denselayer{layer}"
            y = F.conv2d(F.relu(bn(torch.cat(maps, 1), f"{name}.norm1")), state[f"{name}.conv1.weight"])
            maps.append(F.conv2d(F.relu(bn(y, f"{name}.norm2")), state[f"{name}.conv2.weight"], padding=1))
        x = torch.cat(maps, 1)
        if block < len(block_config):
            name = f"features.transition{block}"
            x = F.avg_pool2d(F.conv2d(F.relu(bn(x, f"{name}.norm")), state[f"{name}.conv.weight"]), 2, stride=2)
    x = F.adaptive_avg_pool2d(F.relu(bn(x, "features.norm5")), 1).flatten(1)
    return F.linear(x, state["classifier.weight"], state["classifier.bias"])


def test_forward_matches_an_independent_functional_torchvision_forward():
    torch.manual_seed(0)
    config = DenseNetConfig(growth_rate=8, block_config=[2, 3, 2], num_init_features=16, num_labels=3)
    model = DenseNetForImageClassification(config).double().eval()
    with torch.no_grad():  # non-trivial batch norms: at initialisation they are identities, which would hide them
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.2)
    state = {name.removeprefix("densenet."): tensor for name, tensor in model.state_dict().items()}
    pixels = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        logits = model(pixel_values=pixels).logits
        expected = reference_densenet_logits(state, config.block_config, pixels)
    assert expected.std() > 0.1  # logits that differ between classes and images
    torch.testing.assert_close(logits, expected, rtol=1e-10, atol=1e-10)


def test_return_dict_false_gives_tuples(tiny_model):
    pixels = torch.randn(2, 3, 64, 64)
    loss, logits = tiny_model(pixels, labels=torch.tensor([0, 2]), return_dict=False)
    assert loss.ndim == 0 and torch.equal(logits, tiny_model(pixels).logits)
    assert len(tiny_model.densenet(pixels, return_dict=False)) == 2


def test_loss_and_gradients(tiny_model):
    tiny_model.train()
    pixels = torch.randn(4, 3, 64, 64)
    labels = torch.tensor([0, 1, 2, 1])
    outputs = tiny_model(pixels, labels=labels)
    expected = torch.nn.functional.cross_entropy(outputs.logits, labels)
    assert torch.allclose(outputs.loss, expected)
    outputs.loss.backward()
    for name, parameter in tiny_model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert tiny_model.densenet.features.norm0.num_batches_tracked.item() == 1
    assert tiny_model(pixels).loss is None


def test_multi_label_loss_uses_bce(tiny_model):
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    outputs = tiny_model(torch.randn(2, 3, 64, 64), labels=targets)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(outputs.logits, targets)
    assert torch.allclose(outputs.loss, expected)


def test_drop_rate_is_active_in_training_only():
    model = DenseNetForImageClassification(tiny_config(drop_rate=0.5))
    pixels = torch.randn(2, 3, 64, 64)
    model.eval()
    assert torch.equal(model(pixels).logits, model(pixels).logits)
    model.train()
    torch.manual_seed(1)
    first = model(pixels).logits
    assert not torch.equal(first, model(pixels).logits)


def test_memory_efficient_and_gradient_checkpointing_give_the_same_gradients():
    pixels = torch.randn(2, 3, 64, 64)
    labels = torch.tensor([0, 1])
    gradients = []
    for memory_efficient, checkpointing in ((False, False), (True, False), (False, True)):
        torch.manual_seed(0)
        model = DenseNetForImageClassification(tiny_config(memory_efficient=memory_efficient)).train()
        if checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": True})
        model(pixels, labels=labels).loss.backward()
        gradients.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert torch.allclose(gradients[0], gradients[1], atol=1e-6)
    assert torch.allclose(gradients[0], gradients[2], atol=1e-6)


def test_densenet121_at_64_pixels_channels_last_and_bf16():
    torch.manual_seed(0)
    model = DenseNetForImageClassification(DenseNetConfig.from_variant("densenet121", num_labels=2)).eval()
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        reference = model(pixels).logits
        channels_last = model.to(memory_format=torch.channels_last)
        logits = channels_last(pixels.contiguous(memory_format=torch.channels_last)).logits
        assert torch.allclose(logits, reference, atol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16_logits = channels_last(pixels).logits
    assert bf16_logits.dtype == torch.bfloat16
    assert torch.allclose(bf16_logits.float(), reference, atol=0.1 * reference.abs().max().item() + 0.05)


# Input validation.


@pytest.mark.parametrize(
    "shape, match",
    [((2, 1, 64, 64), "3 \\(config.num_channels\\)"), ((3, 64, 64), "4-D"), ((2, 3, 64, 64, 1), "4-D")],
)
def test_wrong_input_shape_is_a_clear_error(tiny_model, shape, match):
    with pytest.raises(ValueError, match=match):
        tiny_model(torch.randn(*shape))


def test_labels_without_head_is_an_error():
    model = DenseNetForImageClassification(tiny_config(num_labels=0))
    assert model(torch.randn(1, 3, 64, 64)).logits.shape == (1, 10)  # pooled features
    with pytest.raises(ValueError, match="num_labels=0"):
        model(torch.randn(1, 3, 64, 64), labels=torch.tensor([0]))


# Configuration.


@pytest.mark.parametrize(
    "field, value",
    [
        ("growth_rate", 0),
        ("growth_rate", 2.5),
        ("block_config", []),
        ("block_config", [6, 0]),
        ("num_init_features", -1),
        ("bn_size", 0),
        ("drop_rate", 1.0),
        ("drop_rate", -0.1),
        ("num_channels", 2),
        ("image_size", 0),
    ],
)
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        DenseNetConfig(**{field: value})


def test_from_variant():
    config = DenseNetConfig.from_variant("densenet169", num_labels=14, num_channels=1)
    assert (config.block_config, config.num_labels, config.num_channels) == ([6, 12, 32, 32], 14, 1)
    assert DenseNetConfig.from_variant("densenet201", growth_rate=32).block_config == [6, 12, 48, 32]
    with pytest.raises(ValueError, match="variant"):
        DenseNetConfig.from_variant("densenet264")
    with pytest.raises(ValueError, match="block_config"):
        DenseNetConfig.from_variant("densenet121", block_config=[1, 1])


def test_config_json_round_trip(tmp_path):
    tiny_config(drop_rate=0.2, num_channels=1).save_pretrained(tmp_path)
    config = DenseNetConfig.from_pretrained(tmp_path)
    assert (config.block_config, config.drop_rate, config.num_channels) == ([1, 1], 0.2, 1)
    raw = json.loads((tmp_path / "config.json").read_text())
    raw["growth_rate"] = -4
    (tmp_path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="growth_rate"):
        DenseNetConfig.from_pretrained(tmp_path)


# Saving and loading.


def test_safetensors_round_trip(tiny_model, tmp_path):
    tiny_model.train()
    tiny_model(torch.randn(4, 3, 64, 64))  # move the BatchNorm running statistics away from their init
    tiny_model.eval()
    tiny_model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and not list(tmp_path.glob("*.bin"))
    reloaded = DenseNetForImageClassification.from_pretrained(tmp_path).eval()
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(reloaded(pixels).logits, tiny_model(pixels).logits)
    base = DenseNetModel.from_pretrained(tmp_path)  # the backbone alone, head dropped
    assert torch.equal(base.features.norm0.running_mean, tiny_model.densenet.features.norm0.running_mean)


def test_modeling_files_import_only_torch_transformers_and_sibling():
    for name in ("modeling_densenet.py", "configuration_densenet.py"):
        tree = ast.parse((Path(modeling_densenet.__file__).parent / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {"." + node.module if node.level else node.module.split(".")[0]}
            else:
                continue
            allowed = {"__future__", "math", "collections", "transformers"}
            if name == "modeling_densenet.py":
                allowed |= {"torch", ".configuration_densenet"}
            assert roots <= allowed, f"{name} imports {roots}"


def test_fresh_process_loads_with_trust_remote_code(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    assert (tmp_path / "modeling_densenet.py").exists() and (tmp_path / "configuration_densenet.py").exists()
    pixels = torch.randn(2, 3, 64, 64)
    np.save(tmp_path / "pixels.npy", pixels.numpy())
    with torch.no_grad():
        expected = tiny_model(pixels).logits.numpy()
    script = textwrap.dedent(
        f"""
        import sys, numpy as np, torch
        from transformers import AutoModelForImageClassification
        model = AutoModelForImageClassification.from_pretrained({str(tmp_path)!r}, trust_remote_code=True)
        model.eval()
        assert "hf_deitcxr" not in sys.modules, "the package must not be imported"
        with torch.no_grad():
            logits = model(torch.from_numpy(np.load({str(tmp_path / "pixels.npy")!r}))).logits
        np.save({str(tmp_path / "logits.npy")!r}, logits.numpy())
        print(type(model).__name__)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "DenseNetForImageClassification" in result.stdout
    np.testing.assert_array_equal(np.load(tmp_path / "logits.npy"), expected)
