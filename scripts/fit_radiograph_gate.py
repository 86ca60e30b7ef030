"""Fit the input check's gate (hf_deitcxr/serving/radiograph_gate.safetensors) and calibrate its threshold.

    python scripts/fit_radiograph_gate.py --dataset ../shared/data/cxr3 --seed 0

Training: every epoch, each training radiograph once as a benign variant (label 1) and as many outliers (label 0):
half design outliers made from training radiographs (`radiograph_outliers.DESIGN_OUTLIERS`), half programmatic
non-radiographs (`measure_input_rejection.generators()`), each drawn afresh per epoch from the seeded generator.
Calibration: the threshold is the `refuse_quantile` quantile of the scores of the (unchanged) validation
radiographs, so that share of them is refused by the gate. The validation split is used for nothing else here.
The printed figures are the design-set ones; `measure_input_rejection.py` measures the whole check.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import HfArgumentParser, set_seed

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure_input_rejection import generators  # noqa: E402
from radiograph_outliers import DESIGN_OUTLIERS, benign_variant  # noqa: E402

from hf_deitcxr.data.dicom import read_radiograph  # noqa: E402
from hf_deitcxr.serving.input_check import resize_for_statistics, thumbnail_of  # noqa: E402
from hf_deitcxr.serving.radiograph_gate import DEFAULT_GATE, RadiographGate  # noqa: E402

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass
class GateArguments:
    dataset: str = field(default="../shared/data/cxr3", metadata={"help": "Imagefolder with train/, validation/"})
    epochs: int = field(default=10)
    batch_size: int = field(default=128)
    learning_rate: float = field(default=2e-3)
    weight_decay: float = field(default=1e-4)
    refuse_quantile: float = field(default=0.005, metadata={"help": "Share of validation radiographs the gate refuses"})
    seed: int = field(default=0)
    output: str = field(default=str(DEFAULT_GATE))


def radiographs(root: Path) -> list[Image.Image]:
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images under {root}")
    return [read_radiograph(f) for f in files]


def thumbnail(image: Image.Image) -> np.ndarray:
    """The gate's input exactly as the Space computes it: grey -> 224 px bicubic -> 64 px box."""
    return thumbnail_of(resize_for_statistics(image.convert("L"))).astype(np.float32)


def epoch_examples(images: list[Image.Image], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(thumbnails (2N, 64, 64), labels (2N,)): N benign variants and N outliers, in random order."""
    outliers, pictures = list(DESIGN_OUTLIERS.values()), list(generators().values())
    positives = [thumbnail(benign_variant(rng, image)) for image in images]
    negatives = []
    for _ in images:
        if rng.random() < 0.5:
            make = outliers[int(rng.integers(len(outliers)))]
            negatives.append(thumbnail(make(rng, images[int(rng.integers(len(images)))])))
        else:
            negatives.append(thumbnail(pictures[int(rng.integers(len(pictures)))](rng)))
    x = np.stack(positives + negatives)
    y = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))]).astype(np.float32)
    order = rng.permutation(len(x))
    return x[order], y[order]


def train(gate: RadiographGate, images: list[Image.Image], args: GateArguments, rng: np.random.Generator) -> None:
    optimizer = torch.optim.AdamW(gate.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    steps = args.epochs * int(np.ceil(2 * len(images) / args.batch_size))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.learning_rate, total_steps=steps)
    for epoch in range(args.epochs):
        start = time.monotonic()
        x, y = epoch_examples(images, rng)
        made = time.monotonic() - start
        gate.train()
        losses = []
        for i in range(0, len(x), args.batch_size):
            batch = torch.from_numpy(x[i : i + args.batch_size]).unsqueeze(1)
            loss = F.binary_cross_entropy_with_logits(gate(batch), torch.from_numpy(y[i : i + args.batch_size]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
        print(f"epoch {epoch + 1}/{args.epochs}: loss {np.mean(losses):.4f} "
              f"(examples {made:.0f} s, training {time.monotonic() - start - made:.0f} s)", flush=True)


@torch.inference_mode()
def scores(gate: RadiographGate, thumbnails: np.ndarray) -> np.ndarray:
    gate.eval()
    return torch.sigmoid(gate(torch.from_numpy(thumbnails).unsqueeze(1))).numpy()


def design_rejection(gate: RadiographGate, images: list[Image.Image], seed: int, per_kind: int = 60) -> dict:
    """Share of design outliers (made from validation radiographs) the gate alone refuses, by kind."""
    rng = np.random.default_rng(seed)
    found = {}
    for kind, make in DESIGN_OUTLIERS.items():
        picks = rng.choice(len(images), per_kind, replace=False)
        values = scores(gate, np.stack([thumbnail(make(rng, images[i])) for i in picks]))
        found[kind] = float(np.mean(values < gate.threshold))
    return found


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True, cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    (args,) = HfArgumentParser(GateArguments).parse_args_into_dataclasses()
    set_seed(args.seed)  # before the gate is built: its initial weights come from this seed
    rng = np.random.default_rng(args.seed)
    root = Path(args.dataset)
    training, validation = radiographs(root / "train"), radiographs(root / "validation")
    gate = RadiographGate()
    train(gate, training, args, rng)

    validation_scores = scores(gate, np.stack([thumbnail(image) for image in validation]))
    gate.threshold = float(np.quantile(validation_scores, args.refuse_quantile))
    rejection = design_rejection(gate, validation, seed=args.seed + 1000)
    gate.metadata = {
        "fitted_on": json.dumps({"dataset": Path(args.dataset).name, "train": len(training),
                                 "validation": len(validation)}),
        "arguments": json.dumps({k: v for k, v in asdict(args).items() if k != "output"}),
        "calibration": json.dumps({"refuse_quantile": args.refuse_quantile,
                                   "validation_refused": float(np.mean(validation_scores < gate.threshold))}),
        "commit": git_commit(),
    }
    gate.save(args.output)
    print(f"threshold {gate.threshold:.4f}: validation radiographs refused by the gate "
          f"{np.mean(validation_scores < gate.threshold):.2%} of {len(validation)}")
    for kind, share in rejection.items():
        print(f"  design outliers from validation radiographs, {kind}: refused {share:.0%}")
    print(f"-> {args.output}")


if __name__ == "__main__":
    main()
