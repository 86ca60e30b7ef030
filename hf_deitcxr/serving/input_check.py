"""Is an upload plausibly a chest radiograph? A cheap rule on image statistics, run before any prediction.

A classifier answers for any input, so a photo of a cat would get a confident "pneumonia". The rule rejects what
is clearly not a radiograph; it is not a detector of every wrong image (another body part, a lateral view or a
photographed film can pass). Every statistic is computed on the grey image resized to 224 x 224 (the size of the
training radiographs), so the thresholds do not depend on the upload's resolution:

- colourfulness of the file (radiographs are grey; Hasler & Suesstrunk M), aspect ratio and size of the file;
- contrast: standard deviation of the grey levels;
- flat fills: share of pixels in the 8 most frequent grey levels of a 64 px thumbnail (drawings, text, graphics);
- roughness: mean |Laplacian| / standard deviation of the 64 px thumbnail (noise, fine textures, text);
- layout: a PCA model of 16 x 16 z-scored thumbnails of training chest radiographs (`LayoutModel`), with the two
  classic novelty scores: the residual off the PCA subspace (Q / squared prediction error) and Hotelling's T^2
  inside it. Their thresholds are the 99.9th percentiles over the training radiographs, stored with the model;
- a learned gate (`radiograph_gate.py`): a small CNN on the same 64 px thumbnail, trained against outliers
  (other modalities, partial crops, sideways views, screenshots, photographed monitors, extreme contrast/gamma),
  with a threshold that refuses a set share (0.5 %) of validation radiographs;
- DICOM: Modality must be projection radiography (CR, DX or DR); BodyPartExamined, when present, the chest;
  ViewPosition, when present, frontal (PA or AP).

`scripts/fit_radiograph_layout.py` fits the layout model, `scripts/fit_radiograph_gate.py` the gate;
`scripts/measure_input_rejection.py` measures the rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .decode import DecodedUpload
from .radiograph_gate import RadiographGate

STATISTICS_SIZE = 224
THUMBNAIL_SIZE = 64
LAYOUT_SIZE = 16
DEFAULT_LAYOUT_MODEL = Path(__file__).with_name("radiograph_layout.npz")
# DICOM modalities that are certainly not a projection radiograph (the mammography tab refuses these less MG).
NON_RADIOGRAPH_MODALITIES = frozenset(
    {"CT", "MR", "US", "NM", "PT", "MG", "OP", "OPT", "SM", "XC", "ES", "ECG", "IVUS", "OCT", "SEG", "RTSTRUCT"}
)

# What a frontal chest radiograph's DICOM header may say. DR is not a DICOM term but some vendors write it.
CHEST_MODALITIES = frozenset({"CR", "DX", "DR"})
CHEST_BODY_PART_WORDS = ("CHEST", "THORAX", "LUNG")
FRONTAL_VIEW_POSITIONS = frozenset({"PA", "AP"})


class NotARadiographError(ValueError):
    """The upload decodes but does not look like a chest radiograph; the message says why."""


@dataclass(frozen=True)
class ImageStatistics:
    width: int
    height: int
    colourfulness: float
    contrast: float
    flat_fill: float
    roughness: float
    layout_residual: float
    layout_distance: float
    radiograph_score: float | None = None  # the gate's score in (0, 1); None without a gate

    @property
    def aspect_ratio(self) -> float:
        return self.width / self.height


@dataclass(frozen=True)
class LayoutModel:
    """PCA of z-scored 16 x 16 thumbnails of chest radiographs, with novelty thresholds."""

    mean: np.ndarray  # (256,)
    components: np.ndarray  # (k, 256), orthonormal rows
    variances: np.ndarray  # (k,), variance of the training scores along each component
    residual_threshold: float
    distance_threshold: float

    @classmethod
    def fit(cls, thumbnails: np.ndarray, n_components: int = 8, percentile: float = 99.9) -> LayoutModel:
        """Fit on (N, 256) `layout_vector`s of radiographs; thresholds at `percentile` of their own scores."""
        from sklearn.decomposition import PCA  # only needed to fit

        pca = PCA(n_components=n_components, svd_solver="full").fit(thumbnails)
        model = cls(pca.mean_, pca.components_, pca.explained_variance_, np.inf, np.inf)
        residuals, distances = model.scores(thumbnails)
        return cls(
            pca.mean_, pca.components_, pca.explained_variance_,
            float(np.percentile(residuals, percentile)), float(np.percentile(distances, percentile)),
        )

    def scores(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(residual Q per pixel, Hotelling T^2) of (N, 256) or (256,) layout vectors."""
        centred = np.atleast_2d(vectors) - self.mean
        coefficients = centred @ self.components.T
        residual = centred - coefficients @ self.components
        return (residual**2).mean(axis=1), (coefficients**2 / self.variances).sum(axis=1)

    def save(self, path: str | Path) -> None:
        np.savez(
            path, mean=self.mean.astype(np.float32), components=self.components.astype(np.float32),
            variances=self.variances.astype(np.float32),
            thresholds=np.array([self.residual_threshold, self.distance_threshold], dtype=np.float64),
        )

    @classmethod
    def load(cls, path: str | Path = DEFAULT_LAYOUT_MODEL) -> LayoutModel:
        with np.load(path) as stored:
            residual, distance = (float(v) for v in stored["thresholds"])
            return cls(
                stored["mean"].astype(np.float64), stored["components"].astype(np.float64),
                stored["variances"].astype(np.float64), residual, distance,
            )


@dataclass(frozen=True)
class InputCheckConfig:
    max_colourfulness: float = 20.0
    min_aspect_ratio: float = 0.5
    max_aspect_ratio: float = 2.0
    min_side: int = 64
    min_contrast: float = 10.0
    max_flat_fill: float = 0.6
    max_roughness: float = 1.0
    use_gate: bool = True
    chest_modalities: frozenset[str] = field(default=CHEST_MODALITIES)
    chest_body_part_words: tuple[str, ...] = CHEST_BODY_PART_WORDS
    frontal_view_positions: frozenset[str] = field(default=FRONTAL_VIEW_POSITIONS)


def resize_for_statistics(grey: Image.Image) -> Image.Image:
    """The grey image at 224 x 224 (bicubic, no crop), as the model input and the training radiographs are."""
    if grey.size == (STATISTICS_SIZE, STATISTICS_SIZE):
        return grey
    return grey.resize((STATISTICS_SIZE, STATISTICS_SIZE), Image.Resampling.BICUBIC)


def layout_vector(thumbnail: np.ndarray) -> np.ndarray:
    """64 x 64 thumbnail -> z-scored 16 x 16 block means, flattened (256,): the layout model's input."""
    factor = thumbnail.shape[0] // LAYOUT_SIZE
    blocks = thumbnail.reshape(LAYOUT_SIZE, factor, LAYOUT_SIZE, factor).mean(axis=(1, 3)).ravel()
    return (blocks - blocks.mean()) / (blocks.std() + 1e-6)


def thumbnail_of(resized: Image.Image) -> np.ndarray:
    """The 64 x 64 box-filtered thumbnail (float64) of a grey image."""
    small = resized.resize((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float64)


class RadiographCheck:
    """The rejection rule: `check(upload)` raises `NotARadiographError` naming every failed criterion."""

    def __init__(
        self, config: InputCheckConfig | None = None, layout: LayoutModel | None = None,
        gate: RadiographGate | None = None,
    ) -> None:
        self.config = config or InputCheckConfig()
        self.layout = layout or LayoutModel.load()
        self.gate = (gate or RadiographGate.load()) if self.config.use_gate else None

    def statistics(self, upload: DecodedUpload, resized: Image.Image | None = None) -> ImageStatistics:
        """Statistics of an upload; `resized`: its grey image already at 224 px, if the caller has it."""
        thumbnail = thumbnail_of(resized if resized is not None else resize_for_statistics(upload.grey))
        contrast = float(thumbnail.std())
        counts = np.bincount(np.rint(thumbnail).astype(np.uint8).ravel(), minlength=256)
        flat_fill = float(np.sort(counts)[-8:].sum() / thumbnail.size)
        laplacian = (
            4 * thumbnail[1:-1, 1:-1] - thumbnail[:-2, 1:-1] - thumbnail[2:, 1:-1]
            - thumbnail[1:-1, :-2] - thumbnail[1:-1, 2:]
        )
        roughness = float(np.abs(laplacian).mean() / (contrast + 1e-6))
        residual, distance = self.layout.scores(layout_vector(thumbnail))
        score = self.gate.score(thumbnail) if self.gate is not None else None
        width, height = upload.size
        return ImageStatistics(
            width, height, upload.colourfulness, contrast, flat_fill, roughness, float(residual[0]), float(distance[0]),
            score,
        )

    def dicom_failures(self, upload: DecodedUpload) -> dict[str, str]:
        """Failed DICOM header criteria -> reason; empty for a chest radiograph's header and for non-DICOM files."""
        if not upload.is_dicom:
            return {}
        c, found = self.config, {}
        if upload.modality is None:
            found["modality"] = "its DICOM header names no Modality (a chest radiograph is CR or DX)"
        elif upload.modality not in c.chest_modalities:
            found["modality"] = f"its DICOM modality is {upload.modality}, not a radiograph (CR or DX)"
        body_part = upload.body_part
        if body_part is not None and not any(word in body_part for word in c.chest_body_part_words):
            found["body_part"] = f"its DICOM BodyPartExamined is {body_part}, not the chest"
        if upload.view_position is not None and upload.view_position not in c.frontal_view_positions:
            found["view"] = (
                f"its DICOM ViewPosition is {upload.view_position}, not a frontal view (PA or AP); "
                "lateral and oblique views are not supported"
            )
        return found

    def failures(self, stats: ImageStatistics) -> dict[str, str]:
        """Failed image criteria -> human-readable reason; empty when the image passes."""
        c, layout, found = self.config, self.layout, {}
        if stats.colourfulness > c.max_colourfulness:
            found["colour"] = f"it is a colour image (colourfulness {stats.colourfulness:.0f}; radiographs are grey)"
        if min(stats.width, stats.height) < c.min_side:
            found["size"] = f"it is only {stats.width}x{stats.height} px (at least {c.min_side} px a side needed)"
        if not c.min_aspect_ratio <= stats.aspect_ratio <= c.max_aspect_ratio:
            found["aspect"] = (
                f"its aspect ratio {stats.aspect_ratio:.2f} is outside {c.min_aspect_ratio}-{c.max_aspect_ratio}"
            )
        if stats.contrast < c.min_contrast:
            found["contrast"] = f"it has almost no contrast (grey-level std {stats.contrast:.1f})"
        if stats.flat_fill > c.max_flat_fill:
            found["flat_fill"] = (
                f"{stats.flat_fill:.0%} of it is flat areas of a few grey levels (a drawing, text or graphic)"
            )
        if stats.roughness > c.max_roughness:
            found["roughness"] = "it is dominated by fine-grained noise, texture or text"
        if stats.layout_residual > layout.residual_threshold or stats.layout_distance > layout.distance_threshold:
            found["layout"] = "its overall layout does not look like a frontal chest X-ray"
        score = stats.radiograph_score
        if self.gate is not None and score is not None and score < self.gate.threshold:
            found["gate"] = (
                "it looks unlike the frontal chest radiographs the model knows (another modality or view, a partial "
                "crop, a screenshot or photo of a screen, or extreme contrast)"
            )
        return found

    def all_failures(
        self, upload: DecodedUpload, resized: Image.Image | None = None
    ) -> tuple[ImageStatistics, dict[str, str]]:
        """(statistics, every failed criterion of the header and the image)."""
        stats = self.statistics(upload, resized)
        return stats, {**self.dicom_failures(upload), **self.failures(stats)}

    def check(self, upload: DecodedUpload, resized: Image.Image | None = None) -> ImageStatistics:
        stats, found = self.all_failures(upload, resized)
        if found:
            raise NotARadiographError(
                "This does not look like a chest X-ray: " + "; ".join(found.values())
                + ". Please upload a frontal chest radiograph (PNG, JPEG or DICOM)."
            )
        return stats


__all__ = [
    "DEFAULT_LAYOUT_MODEL",
    "ImageStatistics",
    "InputCheckConfig",
    "LayoutModel",
    "NotARadiographError",
    "RadiographCheck",
    "layout_vector",
    "resize_for_statistics",
    "thumbnail_of",
]
