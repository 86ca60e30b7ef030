"""What the `hf-deitcxr loso` models answer on each held-out source: confusion counts (true -> predicted) of every
run's teacher and student on the held-out source's validation images, from the saved models of a loso folder.

A held-out accuracy above the source's constant answer can still be one class answered for nearly every image (cxr3's
held-out kermany is 76 % pneumonia); the counts show which. A loso.json written since `hf-deitcxr loso` stores the
counts (each subset's "confusion") is read as it is; an older one has its models re-predicted.

    python scripts/loso_heldout_confusion.py runs/loso_s0 runs/loso_s1 ... [--pixel_cache_dir CACHE]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import confusion_matrix

from hf_deitcxr.data import load_radiograph_dataset
from hf_deitcxr.evaluation import model_on_split, predict_probabilities
from hf_deitcxr.experiments.loso_report import confusion_cells


def confusions(loso_dir: Path, cache: str | None) -> list[str]:
    result = json.loads((loso_dir / "loso.json").read_text())
    args, names = result["arguments"], result["label_names"]
    split = load_radiograph_dataset(args["dataset"])[args["eval_split"]]
    labels, sources = np.asarray(split["label"]), np.asarray(split["source"])
    lines = []
    for row in result["rows"]:
        held_out = sources == row["heldout_source"]
        for run_name in ("all", row["heldout_source"]):
            run = result["runs"][run_name]
            side_key = "with" if run_name == "all" else "without"
            for role, entry, metrics in (("teacher", run, row), ("student", run.get("student"), row.get("student"))):
                if entry is None:
                    continue
                confusion = metrics[side_key]["heldout"].get("confusion")
                if confusion is None:
                    loaded = model_on_split(entry["dir"], split, cache_dir=cache)
                    predicted = predict_probabilities(loaded.model, loaded.data, loaded.collator(), 64).argmax(axis=1)
                    confusion = confusion_matrix(labels[held_out], predicted[held_out],
                                                 labels=range(len(names))).tolist()
                cells = confusion_cells(confusion, names)
                side = "with it" if run_name == "all" else "without it"
                lines.append(f"| seed {args['seed']} | {row['heldout_source']} | {role}, trained {side} | {cells} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("loso_dirs", nargs="+", type=Path)
    parser.add_argument("--pixel_cache_dir", default=None)
    args = parser.parse_args()
    print("| seed | held-out source | model | true → predicted: count |\n|---|---|---|---|")
    for loso_dir in args.loso_dirs:
        print("\n".join(confusions(loso_dir, args.pixel_cache_dir)))


if __name__ == "__main__":
    main()
