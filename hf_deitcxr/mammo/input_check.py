"""Is an upload plausibly a mammogram? The mammography tab's input check, run on every view before any prediction.

A classifier answers for any input, so a chest X-ray or a photo would get a "malignant" score. The check refuses what
is clearly not a mammogram; it is not a mammogram detector (a grey photo or a film of another body part can pass).

- DICOM header: a Modality that is certainly not a mammogram (CT, MR, US, ...; `NON_MAMMOGRAM_MODALITIES`); and,
  unless the Modality is MG, a BodyPartExamined naming another part (CHEST, ...) or a chest ViewPosition (PA, AP,
  LL, ...). Modality CR/DX alone is not refused: computed-radiography mammography and digitised films exist.
- colour: mammograms are grey (Hasler & Suesstrunk M, the chest check's threshold);
- a frontal chest X-ray: the chest tab's learned gate (`hf_deitcxr.serving.radiograph_gate`) scores it at or above
  `max_chest_score`, 0.5 (the sigmoid's midpoint, not fitted on mammograms). The gate's own, lower threshold (what
  the chest tab accepts; `max_chest_score=None`) refused some real mammogram crops for few more chest X-rays
  (docs/RESULTS.md, "The Space's mammography tab");
- almost no contrast (a blank image), flat fills in the non-black part (a drawing, text or graphic; the black
  background of a full-field mammogram is left out) and fine-grained roughness (noise, text), on the same 224 px /
  64 px thumbnails as the chest check (`hf_deitcxr.serving.input_check`). Thresholds sit beyond the range of the
  CBIS-DDSM mass crops of the training patients (split seed 0) and of generated full-field-like mammograms.

`scripts/measure_mammo_input_check.py` measures the rejection rates on real crops, chest X-rays and generated
non-mammograms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..serving.decode import DecodedUpload
from ..serving.input_check import (
    NON_RADIOGRAPH_MODALITIES,
    InputCheckConfig,
    RadiographCheck,
    resize_for_statistics,
    thumbnail_of,
)
from ..serving.radiograph_gate import RadiographGate

# DICOM modalities that are certainly not a mammogram: the chest X-ray check's list, mammography (MG) excepted.
NON_MAMMOGRAM_MODALITIES = NON_RADIOGRAPH_MODALITIES - {"MG"}
MAMMOGRAM_BODY_PART_WORDS = ("BREAST", "MAMM")
CHEST_VIEW_POSITIONS = frozenset({"PA", "AP", "LL", "RL", "LAT", "LATERAL"})


class NotAMammogramError(ValueError):
    """The file decodes but is clearly not a mammogram; the message names the view slot and every reason."""


@dataclass(frozen=True)
class MammogramCheckConfig:
    max_colourfulness: float = InputCheckConfig().max_colourfulness
    max_chest_score: float | None = 0.5  # None: the chest gate's own threshold (what the chest tab accepts)
    min_contrast: float = 3.0  # grey-level std of the 64 px thumbnail; CBIS crops of training patients: >= 4.2
    max_tissue_flat_fill: float = 0.8  # CBIS crops of training patients: <= 0.71
    max_roughness: float = 1.1  # CBIS crops of training patients: <= 0.92
    background_level: int = 16  # thumbnail grey levels below this are background, left out of the flat fill


@dataclass(frozen=True)
class MammogramStatistics:
    colourfulness: float
    chest_score: float  # the chest gate's "frontal chest radiograph" score in (0, 1)
    contrast: float
    tissue_flat_fill: float
    roughness: float


def tissue_flat_fill(thumbnail: np.ndarray, background_level: int = 16) -> float:
    """Share of the non-background pixels of a 64 px thumbnail in its 8 most frequent grey levels.

    A mammogram's black background is one flat area by nature, so it is left out; what remains (tissue) is
    textured, while a drawing or text is flat everywhere. With (almost) no foreground, every pixel counts.
    """
    levels = np.rint(thumbnail).astype(np.uint8).ravel()
    foreground = levels[levels >= background_level]
    if foreground.size < 0.05 * levels.size:
        foreground = levels
    counts = np.bincount(foreground, minlength=256)
    return float(np.sort(counts)[-8:].sum() / foreground.size)


class MammogramCheck:
    """The mammography tab's input rule: `check(upload, slot)` raises `NotAMammogramError` naming every reason."""

    def __init__(self, config: MammogramCheckConfig | None = None, gate: RadiographGate | None = None) -> None:
        self.config = config or MammogramCheckConfig()
        # the chest check computes the shared statistics (contrast, roughness, the gate's score) the same way
        self._chest = RadiographCheck(gate=gate or RadiographGate.load())
        chest = self.config.max_chest_score
        self.max_chest_score = self.chest_gate_threshold if chest is None else float(chest)

    @property
    def chest_gate_threshold(self) -> float:
        """The chest gate's own threshold: the chest tab accepts an image scoring at least this."""
        return self._chest.gate.threshold

    def statistics(self, upload: DecodedUpload) -> MammogramStatistics:
        resized = resize_for_statistics(upload.grey)
        chest = self._chest.statistics(upload, resized)
        flat = tissue_flat_fill(thumbnail_of(resized), self.config.background_level)
        return MammogramStatistics(upload.colourfulness, float(chest.radiograph_score), chest.contrast, flat,
                                   chest.roughness)

    def dicom_failures(self, upload: DecodedUpload) -> dict[str, str]:
        """Failed DICOM header criteria -> reason; empty for non-DICOM files."""
        if not upload.is_dicom:
            return {}
        found = {}
        if upload.modality is not None and upload.modality in NON_MAMMOGRAM_MODALITIES:
            found["modality"] = f"this DICOM is modality {upload.modality}, not a mammogram (MG)"
        if upload.modality == "MG":  # the header says mammography: the other tags are not second-guessed
            return found
        body_part = upload.body_part
        if body_part is not None and not any(word in body_part for word in MAMMOGRAM_BODY_PART_WORDS):
            found["body_part"] = f"its DICOM BodyPartExamined is {body_part}, not the breast"
        if upload.view_position in CHEST_VIEW_POSITIONS:
            found["view"] = f"its DICOM ViewPosition is {upload.view_position}, a chest view (mammograms: CC, MLO)"
        return found

    def failures(self, stats: MammogramStatistics) -> dict[str, str]:
        """Failed image criteria -> reason; empty when the image passes."""
        c, found = self.config, {}
        if stats.colourfulness > c.max_colourfulness:
            found["colour"] = (f"this is a colour image (colourfulness {stats.colourfulness:.0f}); "
                               "mammograms are grey")
        if stats.chest_score >= self.max_chest_score:
            found["chest"] = "it looks like a chest X-ray (use the chest X-ray tab for those)"
        if stats.contrast < c.min_contrast:
            found["contrast"] = f"it has almost no contrast (grey-level std {stats.contrast:.1f})"
        if stats.tissue_flat_fill > c.max_tissue_flat_fill:
            found["flat_fill"] = (f"{stats.tissue_flat_fill:.0%} of it is flat areas of a few grey levels "
                                  "(a drawing, text or graphic)")
        if stats.roughness > c.max_roughness:
            found["roughness"] = "it is dominated by fine-grained noise, texture or text"
        return found

    def all_failures(self, upload: DecodedUpload) -> tuple[MammogramStatistics, dict[str, str]]:
        """(statistics, every failed criterion of the header and the image)."""
        stats = self.statistics(upload)
        return stats, {**self.dicom_failures(upload), **self.failures(stats)}

    def check(self, upload: DecodedUpload, slot: str) -> MammogramStatistics:
        stats, found = self.all_failures(upload)
        if found:
            raise NotAMammogramError(f"{slot}: this does not look like a mammogram: " + "; ".join(found.values())
                                     + ". Please upload a mammogram (DICOM, PNG or JPEG).")
        return stats


__all__ = [
    "NON_MAMMOGRAM_MODALITIES",
    "MammogramCheck",
    "MammogramCheckConfig",
    "MammogramStatistics",
    "NotAMammogramError",
    "tissue_flat_fill",
]
