"""A small, learnable synthetic radiograph task written as an imagefolder with metadata.csv."""

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from .tiny_models import LABELS

CLASSES = tuple(LABELS)


def synthetic_image(label: str, rng: np.random.Generator, size: int = 40) -> Image.Image:
    """normal: smooth background; pneumonia: one bright focal blob; covid: diffuse striped haze.

    The classes differ in patch content, not only in position, so a model without trained position embeddings
    can still learn them.
    """
    yy, xx = np.mgrid[0:size, 0:size] / size
    image = 0.3 + 0.2 * yy + rng.normal(0, 0.04, (size, size))
    if label == "pneumonia":
        cx, cy = rng.uniform(0.25, 0.75), rng.uniform(0.3, 0.7)
        image += 0.5 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.01)
    elif label == "covid":
        image += 0.15 + 0.15 * np.sin(2 * np.pi * (yy * rng.uniform(5, 7) + rng.uniform(0, 1)))
    return Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8), "L")


def write_imagefolder(root: Path, per_class: dict[str, int], seed: int = 0, sources=("site_a", "site_b")) -> Path:
    """Write root/<split>/<label>/*.png and root/<split>/metadata.csv; one patient per two images."""
    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        split_dir = root / split
        rows = []
        for label in CLASSES:
            (split_dir / label).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                name = f"{label}/{split}_{label}_{i:03d}.png"
                synthetic_image(label, rng).save(split_dir / name)
                rows.append({"file_name": name, "label": label, "patient_id": f"{split}-{label}-{i // 2}",
                             "source": sources[i % len(sources)]})
        with open(split_dir / "metadata.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["file_name", "label", "patient_id", "source"])
            writer.writeheader()
            writer.writerows(rows)
    return root
