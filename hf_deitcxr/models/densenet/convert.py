"""Convert ImageNet DenseNet weights (torchvision or timm, safetensors) into `DenseNetForImageClassification`.

Accepted source key layouts, all mapped onto `densenet.features.*` + `classifier.*`:

- torchvision / timm (e.g. `timm/densenet121.tv_in1k`): `features.denseblock1.denselayer1.norm1.weight`, ...;
- torchvision's legacy names from before PyTorch 0.4 (`...denselayer1.norm.1.weight`, `conv.2`, ...), which
  also lack the BatchNorm `num_batches_tracked` counters (filled with 0, as `nn.BatchNorm2d` itself does);
- any of the above saved from `nn.DataParallel` (`module.` prefix), or a checkpoint already in our layout.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path

import torch

from .configuration_densenet import DenseNetConfig
from .modeling_densenet import DenseNetForImageClassification

WEIGHTS_NAME = "model.safetensors"
OUR_BACKBONE_PREFIX = "densenet."
# torchvision's own fix-up regex for the legacy names (torchvision/models/densenet.py, `_load_state_dict`).
LEGACY_LAYER_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)
DENSE_LAYER_KEY = re.compile(r"^densenet\.features\.denseblock(\d+)\.denselayer(\d+)\.")


def convert_key(key: str) -> str:
    """One source key in our layout (unknown keys come out prefixed, so they surface as unexpected)."""
    if key.startswith("module."):
        key = key[len("module.") :]
    match = LEGACY_LAYER_KEY.match(key)
    if match:
        key = match.group(1) + match.group(2)
    if key.startswith(OUR_BACKBONE_PREFIX) or key.startswith("classifier."):
        return key
    return OUR_BACKBONE_PREFIX + key


def convert_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision/timm/legacy DenseNet state dict to `DenseNetForImageClassification` keys.

    Tensors are not copied. Missing BatchNorm `num_batches_tracked` counters are added as 0.
    """
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        new_key = convert_key(key)
        if new_key in converted:
            raise ValueError(f"two source keys map to {new_key!r} (one of them is {key!r})")
        converted[new_key] = tensor
    for key in list(converted):
        if key.endswith(".running_var"):
            counter = key[: -len("running_var")] + "num_batches_tracked"
            converted.setdefault(counter, torch.tensor(0, dtype=torch.long))
    return converted


def infer_config_from_state_dict(state_dict: dict[str, torch.Tensor], **kwargs) -> DenseNetConfig:
    """The `DenseNetConfig` of a checkpoint (any accepted layout), read from its keys and shapes.

    Counts the dense layers of each block, and reads growth rate, bottleneck width, stem width, input channels
    and (unless `num_labels` is in `kwargs`) the number of classes from the weight shapes.
    """
    state_dict = convert_state_dict(state_dict)
    layers_per_block: dict[int, set[int]] = defaultdict(set)
    for key in state_dict:
        match = DENSE_LAYER_KEY.match(key)
        if match:
            layers_per_block[int(match.group(1))].add(int(match.group(2)))
    if not layers_per_block:
        raise ValueError("no `features.denseblock<i>.denselayer<j>` weights found: not a DenseNet state dict")
    blocks = sorted(layers_per_block)
    if blocks != list(range(1, len(blocks) + 1)):
        raise ValueError(f"dense blocks must be numbered 1..n, found {blocks}")
    block_config = [len(layers_per_block[i]) for i in blocks]

    stem = _weight(state_dict, "densenet.features.conv0.weight")
    conv1 = _weight(state_dict, "densenet.features.denseblock1.denselayer1.conv1.weight")
    conv2 = _weight(state_dict, "densenet.features.denseblock1.denselayer1.conv2.weight")
    growth_rate = conv2.shape[0]
    if conv1.shape[0] % growth_rate:
        raise ValueError(
            f"bottleneck width {conv1.shape[0]} is not a multiple of the growth rate {growth_rate}"
        )
    if "num_labels" not in kwargs:
        classifier = state_dict.get("classifier.weight")
        kwargs["num_labels"] = 0 if classifier is None else classifier.shape[0]
    return DenseNetConfig(
        growth_rate=growth_rate,
        block_config=block_config,
        num_init_features=stem.shape[0],
        bn_size=conv1.shape[0] // growth_rate,
        num_channels=stem.shape[1],
        **kwargs,
    )


def _weight(state_dict: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in state_dict:
        raise ValueError(f"missing {key!r}: not a torchvision-style DenseNet state dict")
    return state_dict[key]


def check_state_dict_matches(
    model: torch.nn.Module, state_dict: dict[str, torch.Tensor], ignore_prefixes: tuple[str, ...] = ()
) -> None:
    """Raise a `ValueError` listing every missing key, unexpected key and shape mismatch."""
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith(ignore_prefixes)}
    given = {k: v for k, v in state_dict.items() if not k.startswith(ignore_prefixes)}
    missing = sorted(expected.keys() - given.keys())
    unexpected = sorted(given.keys() - expected.keys())
    mismatched = [
        f"{key}: checkpoint {tuple(given[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in sorted(expected.keys() & given.keys())
        if given[key].shape != expected[key].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {missing}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {unexpected}")
    if mismatched:
        problems.append(f"shape mismatches ({len(mismatched)}): {mismatched}")
    if problems:
        raise ValueError("checkpoint does not match DenseNetForImageClassification:\n" + "\n".join(problems))


def load_converted(
    state_dict: dict[str, torch.Tensor], num_labels: int | None = None
) -> DenseNetForImageClassification:
    """A `DenseNetForImageClassification` holding a source state dict (any accepted layout), checked strictly.

    With `num_labels` different from the checkpoint's class count, the source head is dropped and a freshly
    initialised one of the requested size is used (the usual ImageNet-to-new-task start).
    """
    state_dict = convert_state_dict(state_dict)
    source_labels = state_dict["classifier.weight"].shape[0] if "classifier.weight" in state_dict else 0
    new_head = num_labels is not None and num_labels != source_labels
    config = infer_config_from_state_dict(state_dict, num_labels=num_labels if new_head else source_labels)
    model = DenseNetForImageClassification(config)
    if new_head:
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith("classifier.")}
    check_state_dict_matches(model, state_dict, ignore_prefixes=("classifier.",) if new_head else ())
    model.load_state_dict(state_dict, strict=not new_head)
    return model.eval()


def resolve_weights_file(source: str | os.PathLike, revision: str | None = None) -> Path:
    """A local `.safetensors` file, a folder holding `model.safetensors`, or a Hub repo id (downloaded)."""
    path = Path(source)
    if path.is_file():
        if path.suffix != ".safetensors":
            raise ValueError(
                f"{path} is not a .safetensors file (convert .pth/.bin checkpoints to safetensors first)"
            )
        return path
    if path.is_dir():
        weights = path / WEIGHTS_NAME
        if not weights.is_file():
            raise FileNotFoundError(f"{path} is a folder without {WEIGHTS_NAME}")
        return weights
    if path.suffix == ".safetensors" or str(source).startswith((".", "/", "~")):
        raise FileNotFoundError(f"no such file or folder: {source}")
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(repo_id=str(source), filename=WEIGHTS_NAME, revision=revision))


def convert_checkpoint(
    source: str | os.PathLike,
    output_dir: str | os.PathLike,
    num_labels: int | None = None,
    revision: str | None = None,
) -> DenseNetForImageClassification:
    """Convert `source` (see `resolve_weights_file`) and `save_pretrained` it (safetensors) into `output_dir`.

    Returns the converted model, in eval mode.
    """
    from safetensors.torch import load_file

    weights_file = resolve_weights_file(source, revision=revision)
    model = load_converted(load_file(str(weights_file)), num_labels=num_labels)
    model.save_pretrained(output_dir)
    return model


__all__ = [
    "check_state_dict_matches",
    "convert_checkpoint",
    "convert_key",
    "convert_state_dict",
    "infer_config_from_state_dict",
    "load_converted",
    "resolve_weights_file",
]
