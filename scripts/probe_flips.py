"""Where a probe's changed predictions go: on one source's validation images, count (true label, prediction before,
prediction after) for each prediction an audit perturbation changes, through the model's own saved preprocessing.

    python scripts/probe_flips.py MODEL_DIR [--source nih] [--probes clahe border_crop_8%]
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np
import torch
from transformers import AutoImageProcessor, AutoModelForImageClassification

import hf_deitcxr  # noqa: F401  (registers the Auto classes)
from hf_deitcxr.audit.perturbations import default_perturbations
from hf_deitcxr.data import load_radiograph_dataset
from hf_deitcxr.data.input_spec import InputSpec
from hf_deitcxr.models.deit_cxr.image_processing_deit_cxr import to_grey_array


def predictions(model, spec: InputSpec, greys: list[np.ndarray]) -> np.ndarray:
    mean, std = torch.tensor(spec.mean).view(-1, 1, 1), torch.tensor(spec.std).view(-1, 1, 1)
    pixels = torch.stack([torch.from_numpy(spec.preprocessing.apply(grey, spec.size)).float().div(255)
                          .expand(spec.num_channels, -1, -1) for grey in greys])
    with torch.inference_mode():
        return model(pixel_values=(pixels - mean) / std).logits.argmax(-1).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--dataset", default="../shared/data/cxr3")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--source", default="nih")
    parser.add_argument("--probes", nargs="+", default=["clahe", "border_crop_8%", "brightness_1.15"])
    args = parser.parse_args()
    model = AutoModelForImageClassification.from_pretrained(args.model).eval()
    spec = InputSpec.from_processor(AutoImageProcessor.from_pretrained(args.model), model.config.num_channels)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    split = load_radiograph_dataset(args.dataset, class_names=names)[args.split]
    rows = [i for i, source in enumerate(split["source"]) if source == args.source]
    greys = [to_grey_array(split[i]["image"])[0] for i in rows]
    labels = [names[split[i]["label"]] for i in rows]
    clean = predictions(model, spec, greys)
    probes = {probe.name: probe.apply for probe in default_perturbations()}
    for name in args.probes:
        changed = predictions(model, spec, [probes[name](grey) for grey in greys])
        flips = Counter((labels[k], names[clean[k]], names[changed[k]]) for k in range(len(rows))
                        if changed[k] != clean[k])
        to_class = Counter(after for (_, _, after), count in flips.items() for _ in range(count))
        print(f"{name}: {sum(flips.values())} of {len(rows)} {args.source} predictions changed; to "
              + ", ".join(f"{label} {count}" for label, count in to_class.most_common()))


if __name__ == "__main__":
    main()
