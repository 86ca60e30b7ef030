"""Convert ImageNet DenseNet-121/169/201 weights (torchvision/timm, safetensors) to a transformers folder.

Examples:

    python scripts/convert_densenet_weights.py timm/densenet121.tv_in1k teachers/densenet121-in1k
    python scripts/convert_densenet_weights.py densenet121.safetensors teachers/densenet121-cxr --num-labels 3

The variant is read from the checkpoint (dense layers per block); the output folder holds `config.json`,
`model.safetensors` and the modeling code, so it loads with
`AutoModelForImageClassification.from_pretrained(..., trust_remote_code=True)` as well as with
`hf_deitcxr.DenseNetForImageClassification.from_pretrained(...)`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    from hf_deitcxr.models.densenet.convert import convert_checkpoint
except ImportError:  # run from a source checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from hf_deitcxr.models.densenet.convert import convert_checkpoint


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "source", help="a .safetensors file, a folder holding model.safetensors, or a Hub repo id"
    )
    parser.add_argument("output_dir", help="folder to write the converted model into (save_pretrained)")
    parser.add_argument(
        "--num-labels",
        type=int,
        default=None,
        help="replace the checkpoint's head by a freshly initialised one with this many classes",
    )
    parser.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit) of the source")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model = convert_checkpoint(
        args.source, args.output_dir, num_labels=args.num_labels, revision=args.revision
    )
    variant = model.config.matching_variant() or "custom DenseNet"
    num_parameters = sum(p.numel() for p in model.parameters())
    print(
        f"{variant}: {num_parameters:,} parameters, {model.config.num_channels} input channel(s), "
        f"{model.config.num_labels} classes -> {args.output_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
