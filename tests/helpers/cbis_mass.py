"""A tiny generated folder shaped like `shared/data/cbis_mass/` (its manifest columns, PNG crops under `images/`).

No real image is copied: every crop is random grey noise. The folder holds each case the real one has:

- P1, left breast: two CC crops (two masses on one mammogram) and one MLO crop, all benign;
- P2, left breast: a mixed-label breast, CC and MLO each with a benign and a malignant crop (benign listed first);
- P3, right breast: a CC crop only (a single-view breast);
- P4: both breasts (four views, benign left, malignant right); its R-MLO crop has the same pixels as its R-CC crop
  (an exact duplicate, saved with another PNG compression so only the decoded pixels match);
- P5-P12: one breast each with a CC and an MLO crop, benign and malignant alternating.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

CBIS_COLUMNS = ["exam_id", "patient_id", "laterality", "view", "path", "label", "source", "breast_id", "cbis_image",
                "cbis_split", "pathology_raw"]
SIZE = 16

# (patient, laterality, view, label), in manifest order
CASES: list[tuple[str, str, str, str]] = [
    ("P1", "L", "CC", "benign"), ("P1", "L", "CC", "benign"), ("P1", "L", "MLO", "benign"),
    ("P2", "L", "CC", "benign"), ("P2", "L", "CC", "malignant"), ("P2", "L", "MLO", "malignant"),
    ("P2", "L", "MLO", "benign"),
    ("P3", "R", "CC", "malignant"),
    ("P4", "L", "CC", "benign"), ("P4", "L", "MLO", "benign"), ("P4", "R", "CC", "malignant"),
    ("P4", "R", "MLO", "malignant"),
] + [(f"P{n}", "L" if n % 2 else "R", view, "malignant" if n % 2 else "benign")
     for n in range(5, 13) for view in ("CC", "MLO")]
DUPLICATE = (10, 11)  # P4's R-CC and R-MLO rows: identical pixels

# What the manifest holds (validate-data's counts, worked out by hand from CASES).
EXPECTED_COUNTS = {
    "images": 28,
    "patients": 12,
    "breasts": 13,
    "units": {"exam": 12, "breast": 13, "patient": 12},
    "labels_per_view": {"CC": {"benign": 8, "malignant": 7}, "MLO": {"benign": 7, "malignant": 6}},
    "breasts_with_both_views": 12,
    "patients_with_both_breasts": 1,
    "breast_views_with_several_crops": 3,
    "mixed_label_units": {"exam": 2, "breast": 1, "patient": 2},
}


def write_cbis_like_folder(root: Path, seed: int = 0, with_split: dict[str, str] | None = None) -> Path:
    """Write the folder; `with_split` ({breast_id: split}) adds a `split` column (else, as in cbis_mass, none)."""
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = [rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8) for _ in CASES]
    pixels[DUPLICATE[1]] = pixels[DUPLICATE[0]]
    rows = []
    for index, ((patient, side, view, label), array) in enumerate(zip(CASES, pixels, strict=True)):
        image_name = f"Mass-Training_{patient}_{'LEFT' if side == 'L' else 'RIGHT'}_{view}"
        path = f"images/{image_name}__m{index}.png"
        Image.fromarray(array).save(root / path, compress_level=9 if index == DUPLICATE[1] else 1)
        breast = f"CBIS_{patient}_{side}"
        rows.append({"exam_id": f"CBIS_{patient}", "patient_id": patient, "laterality": side, "view": view,
                     "path": path, "label": label, "source": f"generated:{index}", "breast_id": breast,
                     "cbis_image": image_name, "cbis_split": "Training", "pathology_raw": label.upper(),
                     **({"split": with_split.get(breast, "train")} if with_split else {})})
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CBIS_COLUMNS + (["split"] if with_split else []))
        writer.writeheader()
        writer.writerows(rows)
    return root
