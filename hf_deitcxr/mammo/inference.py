"""Exam-level prediction with a saved mammography model (single- or multi-view), for the Space and scripts.

The model is loaded once; each call reads the given views (DICOM or image files), orients and resizes them exactly
as training did (settings read from the model's config) and returns exam-level class probabilities. A single-view
model scores every view and combines them (max / mean, as recorded at training); a multi-view model sees the exam at
once, with absent views masked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from transformers import AutoImageProcessor, AutoModelForImageClassification

from ..data.collate import eval_transform_for_pil
from ..data.dicom import ImageSource
from ..data.input_spec import normalization_from_image_processor
from ..models.multiview_mammo.configuration_multiview import DEFAULT_VIEW_NAMES as VIEW_SLOTS
from ..models.multiview_mammo.configuration_multiview import MultiViewMammoConfig
from ..serving.decode import decode_upload
from .dataset import orient
from .evaluation import aggregate_views
from .input_check import MammogramCheck, NotAMammogramError


@dataclass
class MammoPrediction:
    exam: dict[str, float]  # class name -> exam-level probability
    views_used: list[str]
    per_view: dict[str, dict[str, float]] = field(default_factory=dict)  # single-view models only


class MammoPredictor:
    """Load a mammography model folder / Hub id once; `predict({"L-CC": path, ...})` per exam."""

    def __init__(self, model_id: str, device: str | torch.device = "cpu", check: MammogramCheck | None = None) -> None:
        import hf_deitcxr  # noqa: F401  (registers the multi-view model with the Auto classes)

        self.check = check or MammogramCheck()  # a model answers for any input: refuse what is not a mammogram

        self.device = torch.device(device)
        self.model = AutoModelForImageClassification.from_pretrained(model_id).to(self.device).eval()
        processor = AutoImageProcessor.from_pretrained(model_id)
        self.mean, self.std, self.size = normalization_from_image_processor(processor)
        config = self.model.config
        self.multiview = isinstance(config, MultiViewMammoConfig)
        if self.multiview:
            self.view_slots, self.orientation, self.aggregation = list(config.view_names), config.orientation, None
        else:
            settings = getattr(config, "mammography", None) or {}
            self.view_slots = list(VIEW_SLOTS)
            self.orientation = settings.get("orientation", "laterality")
            self.aggregation = settings.get("exam_aggregation", "max")
        self.label_names = [config.id2label[i] for i in range(config.num_labels)]

    @torch.no_grad()
    def predict(self, views: Mapping[str, ImageSource]) -> MammoPrediction:
        """views: view slot ("L-CC", "L-MLO", "R-CC", "R-MLO") -> file path, bytes or file object; 1 to 4 of them.

        Raises ValueError for no / unknown views, `UnreadableImageError` for files that are not images and
        `NotAMammogramError` (a ValueError) for images that clearly are not mammograms (`input_check`).
        """
        given = {slot: source for slot, source in views.items() if source is not None}
        unknown = sorted(set(given) - set(self.view_slots))
        if unknown:
            raise ValueError(f"unknown view(s) {unknown}; expected some of {self.view_slots}")
        if not given:
            raise ValueError(f"no view given: provide at least one of {self.view_slots}")
        slots = [slot for slot in self.view_slots if slot in given]
        pixels = torch.cat([self._prepare(given[slot], slot) for slot in slots]).to(self.device)
        if self.multiview:
            values = pixels.new_zeros((1, len(self.view_slots), *pixels.shape[1:]))
            mask = torch.zeros((1, len(self.view_slots)), dtype=torch.bool, device=self.device)
            for row, slot in enumerate(slots):
                values[0, self.view_slots.index(slot)], mask[0, self.view_slots.index(slot)] = pixels[row], True
            exam = self.model(pixel_values=values, view_mask=mask).logits.float().softmax(-1)[0].cpu().numpy()
            return MammoPrediction(self._named(exam), slots)
        per_view = self.model(pixel_values=pixels).logits.float().softmax(-1).cpu().numpy()
        exam = aggregate_views(per_view, [0] * len(slots), 1, self.aggregation)[0]
        named = {slot: self._named(p) for slot, p in zip(slots, per_view, strict=True)}
        return MammoPrediction(self._named(exam), slots, named)

    def _prepare(self, source: ImageSource, slot: str) -> torch.Tensor:
        upload = decode_upload(source)
        self.check.check(upload, slot)
        image = orient(upload.grey, slot.split("-")[0], self.orientation)
        return eval_transform_for_pil(image, self.size, self.mean, self.std, num_channels=3)

    def _named(self, probabilities) -> dict[str, float]:
        return {name: float(p) for name, p in zip(self.label_names, probabilities, strict=True)}


__all__ = ["VIEW_SLOTS", "MammoPrediction", "MammoPredictor", "NotAMammogramError"]
