"""Fit the layout model of the Space's input check (hf_deitcxr/serving/radiograph_layout.npz) on training radiographs.

    python scripts/fit_radiograph_layout.py --dataset ../shared/data/cxr3 --split train

Only the training split is used, so the rejection rates measured on the validation split
(`scripts/measure_input_rejection.py`) are not fitted to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from transformers import HfArgumentParser

from hf_deitcxr.data.dicom import read_radiograph
from hf_deitcxr.serving.input_check import (
    DEFAULT_LAYOUT_MODEL,
    LayoutModel,
    layout_vector,
    resize_for_statistics,
    thumbnail_of,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".bmp", ".tif", ".tiff")


@dataclass
class FitArguments:
    dataset: str = field(default="../shared/data/cxr3", metadata={"help": "Imagefolder root"})
    split: str = field(default="train")
    n_components: int = field(default=8)
    percentile: float = field(default=99.9, metadata={"help": "Threshold percentile of the training scores"})
    output: str = field(default=str(DEFAULT_LAYOUT_MODEL))


def image_files(root: Path) -> list[Path]:
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images under {root}")
    return files


def layout_vectors(files: list[Path]) -> np.ndarray:
    return np.stack([layout_vector(thumbnail_of(resize_for_statistics(read_radiograph(f)))) for f in files])


def main() -> None:
    (args,) = HfArgumentParser(FitArguments).parse_args_into_dataclasses()
    files = image_files(Path(args.dataset) / args.split)
    vectors = layout_vectors(files)
    model = LayoutModel.fit(vectors, n_components=args.n_components, percentile=args.percentile)
    model.save(args.output)
    explained = float(np.sum(model.variances) / np.sum(np.var(vectors, axis=0, ddof=1)))
    print(f"fitted on {len(files)} images of {args.dataset}/{args.split}: {args.n_components} components "
          f"explain {explained:.1%} of the variance; thresholds Q={model.residual_threshold:.4f} "
          f"T2={model.distance_threshold:.2f} (percentile {args.percentile}) -> {args.output}")


if __name__ == "__main__":
    main()
