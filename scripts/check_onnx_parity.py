"""Parity of the ONNX Runtime (and, where the CPU has native bf16, the bf16) student forward with the fused PyTorch
fp32 forward, on every image of a folder, through the Space's preprocessing (no input check):

    python scripts/check_onnx_parity.py --model_name_or_path outputs/quickstart/distill \
        --images ../shared/data/cxr3/validation

Prints, per forward: images, identical labels, max |p - p_torch_fp32| over all classes and images, max |heatmap
difference|, and the accuracy against the folder names. Exits 1 if the ONNX Runtime labels are not all identical or
its probabilities differ by 1e-4 or more (the issue's parity criterion).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import HfArgumentParser

import hf_deitcxr  # noqa: F401 - registers the model classes
from hf_deitcxr.data.dicom import read_radiograph
from hf_deitcxr.hardware import cpu_has_native_bf16
from hf_deitcxr.serving import RadiographClassifier

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm")
TOLERANCE = 1e-4


@dataclass
class ParityArguments:
    model_name_or_path: str = field(metadata={"help": "Saved DeiT student folder"})
    images: str = field(default="../shared/data/cxr3/validation", metadata={"help": "Folder of <label>/<file>"})
    threads: int = field(default=2)


def compare(reference: RadiographClassifier, other: RadiographClassifier, files: list[Path]) -> dict[str, float]:
    same = correct = 0
    max_prob = max_heat = 0.0
    for path in files:
        grey = read_radiograph(path)
        ours, theirs = other.predict(grey), reference.predict(grey)
        same += ours.label == theirs.label
        correct += ours.label == path.parent.name
        max_prob = max(max_prob, max(abs(ours.probabilities[k] - theirs.probabilities[k]) for k in ours.probabilities))
        if ours.heatmap is not None and theirs.heatmap is not None:
            max_heat = max(max_heat, float(np.abs(ours.heatmap - theirs.heatmap).max()))
    n = len(files)
    return {"images": n, "same_labels": same, "max_prob_diff": max_prob, "max_heatmap_diff": max_heat,
            "accuracy": correct / n}


def main() -> int:
    (args,) = HfArgumentParser(ParityArguments).parse_args_into_dataclasses()
    torch.set_num_threads(args.threads)
    files = sorted(p for p in Path(args.images).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"no images under {args.images}")
    reference = RadiographClassifier.from_pretrained(args.model_name_or_path, precision="fp32", forward="torch")
    others = {"onnxruntime fp32": RadiographClassifier.from_pretrained(args.model_name_or_path, precision="fp32",
                                                                        forward="onnx")}
    if cpu_has_native_bf16():
        others["torch bf16"] = RadiographClassifier.from_pretrained(args.model_name_or_path, precision="bf16",
                                                                    forward="torch")
    if others["onnxruntime fp32"].forward_name != "onnxruntime fp32":
        print("the ONNX Runtime forward is not usable for this model (see the log)")
        return 1
    print(f"model {args.model_name_or_path}; {len(files)} images under {args.images}; reference: torch fp32 "
          f"(accuracy {compare(reference, reference, files)['accuracy']:.2%})\n")
    print("| forward | images | identical labels | max abs prob diff | max abs heatmap diff | accuracy |")
    print("|---|---:|---:|---:|---:|---:|")
    results = {name: compare(reference, other, files) for name, other in others.items()}
    for name, r in results.items():
        print(f"| {name} | {r['images']} | {r['same_labels']} | {r['max_prob_diff']:.2e} | "
              f"{r['max_heatmap_diff']:.2e} | {r['accuracy']:.2%} |")
    onnx = results["onnxruntime fp32"]
    return 0 if onnx["same_labels"] == onnx["images"] and onnx["max_prob_diff"] < TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
