#!/usr/bin/env python
"""The quickstart's distillation (CPU_RECIPE, 9600 images) from a teacher ensemble instead of one teacher, and the
ensemble's own validation score (issue 15, item 3: a stronger teacher within the same budget).

    python scripts/distill_from_ensemble.py --teachers /runs/s0/teacher,/runs/s1/teacher,/runs/s2/teacher \
        --dataset ../shared/data/cxr3 --output_dir /runs/ensemble --seeds 0 1

Each seed trains `OUTPUT/seed<k>` (the student, evaluated on the validation split as every run is) and writes
`OUTPUT/summary.json`: the ensemble's and each member's accuracy / macro-F1 with patient-bootstrap intervals, and
each student's. The ensemble's logits are the mean of its members' (`hf_deitcxr/training/teacher_ensemble.py`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class EnsembleArguments:
    teachers: str = field(metadata={"help": "Teacher folders separated by commas"})
    dataset: str = field(default="../shared/data/cxr3")
    output_dir: str = field(default="outputs/ensemble_distill")
    seeds: list[int] = field(default_factory=lambda: [0], metadata={"help": "Student seeds"})
    images_seen: int = field(default=9600, metadata={"help": "The student's budget (the quickstart's 9600)"})
    split: str = field(default="validation")


def teacher_scores(teachers: list[str], dataset: str, split: str) -> dict:
    """Each member's and the ensemble's (mean logits) accuracy / macro-F1 with patient-bootstrap intervals."""
    import tempfile

    import torch
    from transformers import AutoConfig

    from hf_deitcxr.data import load_radiograph_dataset
    from hf_deitcxr.evaluation import model_on_split, predict_logits
    from hf_deitcxr.metrics.intervals import bootstrap_intervals

    config = AutoConfig.from_pretrained(teachers[0])  # the members share classes (the ensemble checks it)
    data = load_radiograph_dataset(dataset, class_names=[config.id2label[i] for i in range(config.num_labels)])[split]
    cache = tempfile.mkdtemp(prefix="ensemble_pixels_")  # the split is decoded once, for every member
    logits, scores = [], {}
    for path in teachers:
        loaded = model_on_split(path, data, cache_dir=cache)
        logits.append(predict_logits(loaded.model, loaded.data, loaded.collator(), batch_size=64))
        labels, names = loaded.data.labels.numpy(), loaded.label_names
        patients = loaded.data.extras.get("patient_id")
        scores[path] = _summary(bootstrap_intervals(torch.from_numpy(logits[-1]).softmax(-1).numpy(), labels, names,
                                                    patient_ids=patients))
    mean = torch.from_numpy(np.mean(logits, axis=0)).softmax(-1).numpy()
    scores["ensemble"] = _summary(bootstrap_intervals(mean, labels, names, patient_ids=patients))
    return scores


def _summary(intervals: dict) -> dict:
    return {key: intervals[key] for key in ("accuracy", "macro_f1")}


def main(argv: list[str] | None = None) -> int:
    from transformers import HfArgumentParser

    from hf_deitcxr.experiments.recipe import stage_arguments
    from hf_deitcxr.training.run import run_training
    from hf_deitcxr.training.teacher_ensemble import teacher_paths

    (args,) = HfArgumentParser(EnsembleArguments).parse_args_into_dataclasses(args=argv)
    teachers = teacher_paths(args.teachers)
    root = Path(args.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    summary = {"teachers": teachers, "images_seen": args.images_seen,
               "teacher_scores": teacher_scores(teachers, args.dataset, args.split), "students": {}}
    for seed in args.seeds:
        report = run_training(*stage_arguments("distill", args.dataset, root / f"seed{seed}", seed=seed,
                                               teacher_dir=",".join(teachers), images_seen=args.images_seen))
        summary["students"][seed] = {key: report["intervals"]["overall"][key] for key in ("accuracy", "macro_f1")}
        (root / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
