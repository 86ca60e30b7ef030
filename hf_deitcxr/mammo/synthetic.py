"""A synthetic four-view mammography task on which cross-view reasoning is necessary.

Each exam has the four views L-CC, L-MLO, R-CC, R-MLO of two breasts (a half-ellipse of textured tissue against the
chest wall; MLO views also show the pectoral muscle). Bright blobs of one common appearance are placed in them:

- malignant exam: a *lesion* seen in BOTH views of one breast, at the same depth (distance from the chest wall),
  as a real mass is seen in the CC and the MLO projection at about the same distance from the nipple;
- benign exam: *distractors* (e.g. superimposed glandular tissue) seen in ONE view only.

Both classes have the same number of blob-bearing views (2, or 3 with probability `extra_blob_p`; a benign exam with
three has two of them in one breast, at depths at least `min_depth_gap` apart), and lesions and distractors look
alike. A single view therefore cannot tell a lesion from a distractor (exam score = max or mean over views is at
chance), while a model that compares the views of a breast can. Per-view labels follow the blobs: the two lesion
views are "malignant", every other view "benign". Right-breast images are written mirrored (chest wall on the
right), as stored by mammography systems, so the loader's orientation step is exercised.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..models.multiview_mammo.configuration_multiview import DEFAULT_VIEW_NAMES as VIEW_SLOTS

LABELS = ("benign", "malignant")
VIEWS = VIEW_SLOTS


@dataclass(frozen=True)
class SyntheticMammoConfig:
    size: int = 64
    malignant_fraction: float = 0.3  # skewed, as screening data are (balancing is exercised)
    extra_blob_p: float = 0.5
    min_depth_gap: float = 0.25  # fraction of the breast depth
    blob_sigma: float = 0.06  # fraction of the image size
    blob_contrast: tuple[float, float] = (0.35, 0.5)
    exams_per_patient: int = 2
    missing_view_p: float = 0.0  # drop a view without a blob, so the label stays decidable


def _smooth_noise(rng: np.random.Generator, size: int, grid: int = 8) -> np.ndarray:
    coarse = Image.fromarray(rng.normal(0.0, 1.0, (grid, grid)).astype(np.float32), mode="F")
    return np.asarray(coarse.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float64)


def _breast(rng: np.random.Generator, size: int, view: str) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Tissue image (chest wall on the left), its mask, the breast's depth and half-height (pixels)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    depth = size * rng.uniform(0.7, 0.85)
    half_height = size * rng.uniform(0.38, 0.46)
    centre = size / 2 + rng.uniform(-0.04, 0.04) * size
    mask = (xx / depth) ** 2 + ((yy - centre) / half_height) ** 2 <= 1.0
    tissue = 0.32 + 0.12 * (1 - xx / depth) + 0.03 * _smooth_noise(rng, size) + 0.015 * _smooth_noise(rng, size, 16)
    if view == "MLO":  # pectoral muscle: a bright triangle in the upper chest-wall corner
        tissue = tissue + 0.18 * ((xx / (0.3 * size) + yy / (0.55 * size)) < 1.0)
    image = np.where(mask, tissue, 0.0) + rng.normal(0.0, 0.015, (size, size))
    return image, mask, depth, half_height


def _blob_position(rng, size: int, depth: float, half_height: float, x_fraction: float) -> tuple[float, float]:
    x = x_fraction * depth
    reach = half_height * np.sqrt(max(1.0 - (x / depth) ** 2, 0.05)) * 0.75
    return x, size / 2 + rng.uniform(-reach, reach)


def synthetic_exam(rng: np.random.Generator, malignant: bool, config: SyntheticMammoConfig = SyntheticMammoConfig()):
    """One exam: {view: uint8 image in stored orientation} and {view: label}."""
    size = config.size
    extra = rng.random() < config.extra_blob_p
    blobs: dict[str, float] = {}  # view -> blob depth as a fraction of the breast depth
    if malignant:
        side = rng.choice(["L", "R"])
        depth = rng.uniform(0.2, 0.75)
        for view in ("CC", "MLO"):
            blobs[f"{side}-{view}"] = float(np.clip(depth + rng.normal(0, 0.02), 0.15, 0.8))
        if extra:
            other = "R" if side == "L" else "L"
            blobs[f"{other}-{rng.choice(['CC', 'MLO'])}"] = rng.uniform(0.2, 0.75)
    else:
        first, second = rng.choice(["CC", "MLO"]), rng.choice(["CC", "MLO"])  # one view in each breast
        blobs["L-" + first], blobs["R-" + second] = rng.uniform(0.2, 0.75), rng.uniform(0.2, 0.75)
        if extra:  # a third blob in the other view of one breast, at a clearly different depth
            side = rng.choice(["L", "R"])
            view = ("MLO" if first == "CC" else "CC") if side == "L" else ("MLO" if second == "CC" else "CC")
            taken = blobs[f"{side}-{first if side == 'L' else second}"]
            candidates = np.linspace(0.2, 0.75, 56)
            candidates = candidates[np.abs(candidates - taken) >= config.min_depth_gap]
            blobs[f"{side}-{view}"] = float(rng.choice(candidates))
    lesion_views = {v for v in blobs if malignant and v.split("-")[0] == _lesion_side(blobs)}
    images, labels = {}, {}
    for name in VIEWS:
        side, view = name.split("-")
        if name not in blobs and rng.random() < config.missing_view_p:
            continue
        image, _, depth, half_height = _breast(rng, size, view)
        if name in blobs:
            x, y = _blob_position(rng, size, depth, half_height, blobs[name])
            yy, xx = np.mgrid[0:size, 0:size]
            sigma = config.blob_sigma * size * rng.uniform(0.85, 1.15)
            image += rng.uniform(*config.blob_contrast) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
        pixels = (np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
        images[name] = pixels[:, ::-1].copy() if side == "R" else pixels  # stored: right breasts mirrored
        labels[name] = LABELS[1] if name in lesion_views else LABELS[0]
    return images, labels


def _lesion_side(blobs: dict[str, float]) -> str | None:
    """The breast with blobs in both views (a malignant exam has exactly one)."""
    for side in ("L", "R"):
        if f"{side}-CC" in blobs and f"{side}-MLO" in blobs:
            return side
    return None


def write_synthetic_mammo(
    root: str | Path, num_exams: int, seed: int = 0, config: SyntheticMammoConfig = SyntheticMammoConfig()
) -> Path:
    """Write `num_exams` exams as PNGs plus `manifest.csv` (the manifest format of `hf_deitcxr.mammo.manifest`)."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    malignant = np.zeros(num_exams, dtype=bool)
    malignant[: max(1, round(config.malignant_fraction * num_exams))] = True
    rng.shuffle(malignant)
    rows = []
    for index in range(num_exams):
        exam_id = f"exam{index:05d}"
        images, labels = synthetic_exam(rng, bool(malignant[index]), config)
        for view, pixels in images.items():
            side, position = view.split("-")
            name = f"images/{exam_id}_{side}_{position}.png"
            Image.fromarray(pixels, mode="L").save(root / name)
            rows.append({"exam_id": exam_id, "patient_id": f"patient{index // config.exams_per_patient:05d}",
                         "laterality": side, "view": position, "path": name, "label": labels[view]})
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


__all__ = ["LABELS", "VIEWS", "SyntheticMammoConfig", "synthetic_exam", "write_synthetic_mammo"]
