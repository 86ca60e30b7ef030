"""A small CNN that scores how much a 64 px thumbnail looks like a frontal chest radiograph: the input check's
learned criterion, for what image statistics cannot see (another modality, a partial crop, a sideways or pasted-in
radiograph, a screenshot, a photographed monitor, extreme contrast or gamma).

Trained with outlier exposure (Hendrycks et al., ICLR 2019): training radiographs under benign changes (small crops
and rotations, blur, JPEG, mild contrast and gamma, equalisation) against generated outliers
(`scripts/fit_radiograph_gate.py`). The threshold is a low quantile of the scores of the validation radiographs,
stored with the weights, so a known share of real radiographs is refused. It sees the same 64 px box thumbnail of
the 224 px grey image as the other statistics (`input_check.thumbnail_of`), on the 0..255 scale and without
per-image normalisation, so brightness and contrast count.

The checkpoint is a safetensors file beside this module (a few hundred kB) with its threshold and provenance in
the file's metadata; it is model-independent, like the layout model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

GATE_INPUT_SIZE = 64
DEFAULT_GATE = Path(__file__).with_name("radiograph_gate.safetensors")
_CHANNELS = (1, 16, 32, 64, 64)


class RadiographGate(nn.Module):
    """(N, 1, 64, 64) thumbnails on 0..255 -> (N,) logits of "a frontal chest radiograph"."""

    def __init__(self, threshold: float = 0.5, metadata: dict[str, str] | None = None) -> None:
        super().__init__()
        blocks = []
        for cin, cout in zip(_CHANNELS[:-1], _CHANNELS[1:], strict=True):
            blocks += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*blocks)
        side = GATE_INPUT_SIZE // 2 ** (len(_CHANNELS) - 1)
        # flattened, not pooled: where things are in the picture is what tells a crop or a rotation apart
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(_CHANNELS[-1] * side * side, 1))
        self.threshold = float(threshold)  # on the sigmoid score; set by calibration
        self.metadata = dict(metadata or {})

    def forward(self, thumbnails: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(thumbnails / 255.0 - 0.5)).squeeze(1)

    @torch.inference_mode()
    def score(self, thumbnail: np.ndarray) -> float:
        """Radiograph-likeness in (0, 1) of one (64, 64) thumbnail on 0..255."""
        if thumbnail.shape != (GATE_INPUT_SIZE, GATE_INPUT_SIZE):
            raise ValueError(f"expected a {GATE_INPUT_SIZE}x{GATE_INPUT_SIZE} thumbnail, got {thumbnail.shape}")
        pixels = torch.as_tensor(np.asarray(thumbnail, dtype=np.float32)).view(1, 1, *thumbnail.shape)
        if not self.training:  # serving: no mode switch (a recursive `train()` on every call was a tenth of its cost)
            return float(torch.sigmoid(self(pixels))[0])
        self.eval()  # a gate being fitted is scored as it will serve, then put back
        try:
            return float(torch.sigmoid(self(pixels))[0])
        finally:
            self.train()

    def save(self, path: str | Path) -> None:
        tensors = {name: tensor.detach().contiguous() for name, tensor in self.state_dict().items()}
        save_file(tensors, str(path), metadata={"threshold": repr(self.threshold), **self.metadata})

    @classmethod
    def load(cls, path: str | Path = DEFAULT_GATE) -> RadiographGate:
        with safe_open(str(path), framework="pt") as stored:
            metadata = dict(stored.metadata() or {})
            tensors = {name: stored.get_tensor(name) for name in stored.keys()}  # noqa: SIM118 - not a dict
        threshold = float(metadata.pop("threshold", "0.5"))
        gate = cls(threshold, metadata)
        gate.load_state_dict(tensors)
        return gate.eval()

    def provenance(self) -> dict:
        """What the checkpoint says about how it was fitted (data, seed, commit, calibration)."""
        return {key: _maybe_json(value) for key, value in self.metadata.items()}


def _maybe_json(value: str):
    try:
        return json.loads(value)
    except ValueError:
        return value


__all__ = ["DEFAULT_GATE", "GATE_INPUT_SIZE", "RadiographGate"]
