"""`hf-deitcxr loso`: leave-one-source-out evaluation of the DenseNet teacher (issue 14) and, with `--students`,
of the DeiT student distilled from each run's teacher (issue 15: is the student off-source at least level with it?).

A source can be held out when every class it contains also has another source in the training split (in cxr3:
kermany and nih, which both hold normal and pneumonia; armiro is all of covid and cannot). The teacher is trained
once on every source and once without each held-out source (the `exclude_sources` data option), at one small
budget (`max_steps` optimiser steps, the CPU recipe otherwise), each run seeded with `seed`. Both are evaluated on
the held-out source's validation images and on the in-distribution validation images (all of them for the run
with every source; those of the sources it was trained on for the run without one). With `students`, each run's
teacher is followed by the recipe's distill stage from it (`student_images_seen` training images, the student's own
input size `CPU_RECIPE.image_size`, the same exclusion and seed), evaluated the same way; the student's held-out
accuracy minus the teacher's gets a paired patient-bootstrap interval (`paired_accuracy_difference`).

Accuracy intervals are `bootstrap_intervals` (patients resampled). Macro-F1 is over the classes present in the
evaluated images (a held-out nih has no covid; a covid prediction there is an error of the true class, not a class
of its own), with a patient bootstrap of the same design and seed. Writes `loso.json` and `loso.md`
(`loso_report.loso_markdown`), with each evaluated subset's confusion counts. The teachers' entries keep their
keys; a student's are under `"student"` in its run's `runs` entry and in each row.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..metrics.intervals import DEFAULT_CONFIDENCE, DEFAULT_NUM_RESAMPLES, bootstrap_intervals, interval_bounds
from ..models.deit_cxr.image_processing_deit_cxr import INTENSITY_NORMALIZATIONS
from ..training.arguments import BALANCING, configure_logging
from .loso_report import loso_markdown
from .quickstart import QUICKSTART_IMAGES_SEEN
from .recipe import CPU_RECIPE, Recipe, stage_arguments

logger = logging.getLogger(__name__)

ALL_SOURCES = "all"
# The quickstart teacher's budget: 4800 training images = 150 steps of 32.
DEFAULT_MAX_STEPS = 150


@dataclass
class LosoArguments:
    dataset: str = field(default="../shared/data/cxr3", metadata={"help": "Dataset with train + validation splits "
                                                                          "and a `source` column"})
    output_dir: str = field(default="outputs/loso")
    seed: int = field(default=0, metadata={"help": "Seeds every run (weights, data order, augmentation) and the "
                                                   "bootstrap"})
    max_steps: int = field(default=DEFAULT_MAX_STEPS, metadata={"help": "Teacher optimiser steps per run (the "
                                                                        "budget; same for every run)"})
    batch_size: int = field(default=CPU_RECIPE.teacher_batch_size, metadata={"help": "Teacher batch size"})
    image_size: int = field(default=CPU_RECIPE.image_size_for("teacher"), metadata={"help": "The teachers' input size"})
    balancing: str = field(default=CPU_RECIPE.balancing, metadata={"help": "Class balancing of every run",
                                                                   "choices": list(BALANCING)})
    holdout_sources: str | None = field(default=None, metadata={
        "help": "Comma-separated sources to hold out (default: every source whose classes all have another source)"})
    eval_split: str = field(default="validation")
    num_resamples: int = field(default=DEFAULT_NUM_RESAMPLES, metadata={"help": "Bootstrap replicates"})
    pixel_cache_dir: str | None = field(default=None, metadata={"help": "Default: <output_dir>/pixel_cache"})
    intensity_normalization: str = field(default=CPU_RECIPE.intensity_normalization, metadata={
        "help": "Grey intensity normalisation of every run (a shortcut remedy)",
        "choices": list(INTENSITY_NORMALIZATIONS)})
    remove_border: bool = field(default=CPU_RECIPE.remove_border, metadata={"help": "Border removal in every run"})
    acquisition_augment: bool = field(default=CPU_RECIPE.acquisition_augment, metadata={
        "help": "Acquisition/processing augmentation in every run"})
    framing_augment: bool = field(default=CPU_RECIPE.framing_augment, metadata={
        "help": "Wider random crops in every run"})
    processing_variants: int = field(default=CPU_RECIPE.teacher_processing_variants, metadata={
        "help": "Processed variants of every training image in every teacher run (0: off)"})
    student_processing_variants: int = field(default=CPU_RECIPE.processing_variants, metadata={
        "help": "Processed variants of every training image in every student run (0: off; their distillation "
                "targets are the recipe's `variant_targets`)"})
    students: bool = field(default=False, metadata={
        "help": "Also distil a student from each run's teacher (same exclusion; the recipe's distill stage at its own "
                "input size, budget `student_images_seen`)"})
    student_images_seen: int = field(default=QUICKSTART_IMAGES_SEEN["distill"], metadata={
        "help": "Training images each student sees (optimiser steps x the recipe's student batch; the quickstart's)"})

    def __post_init__(self) -> None:
        if self.max_steps <= 0:
            raise ValueError(f"max_steps must be positive, got {self.max_steps}")
        if self.student_images_seen <= 0:
            raise ValueError(f"student_images_seen must be positive, got {self.student_images_seen}")
        if self.balancing not in BALANCING:
            raise ValueError(f"balancing must be one of {BALANCING}, got {self.balancing!r}")

    def recipe(self) -> Recipe:
        """`CPU_RECIPE` with these options; `image_size` is the teacher's, a student keeps the recipe's own."""
        return CPU_RECIPE.with_overrides(teacher_image_size=self.image_size, balancing=self.balancing,
                                         teacher_batch_size=self.batch_size,
                                         intensity_normalization=self.intensity_normalization,
                                         remove_border=self.remove_border, acquisition_augment=self.acquisition_augment,
                                         framing_augment=self.framing_augment,
                                         teacher_processing_variants=self.processing_variants,
                                         processing_variants=self.student_processing_variants)

    @property
    def holdout_list(self) -> list[str]:
        return [s.strip() for s in (self.holdout_sources or "").split(",") if s.strip()]


def holdout_candidates(labels: Sequence[str], sources: Sequence[str]) -> list[str]:
    """Sources every one of whose classes also comes from another source (sorted): those a model can be trained
    without and still see every class."""
    sources_of_class: dict[str, set[str]] = {}
    for label, source in zip(labels, sources, strict=True):
        sources_of_class.setdefault(label, set()).add(source)
    return sorted(
        source for source in set(sources)
        if all(len(sources_of_class[label]) >= 2 for label, s in zip(labels, sources, strict=True) if s == source)
    )


def run_loso(args: LosoArguments) -> dict[str, Any]:
    from ..data import load_radiograph_dataset

    start = time.perf_counter()
    root = Path(args.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    # one folder for every stage: a pixel cache file is named by the data, the preprocessing and the size
    # (data.image_cache), so the teachers' and the students' sizes do not collide
    cache = args.pixel_cache_dir or str(root / "pixel_cache")
    datasets = load_radiograph_dataset(args.dataset)
    train, names = datasets["train"], datasets["train"].features["label"].names
    if args.eval_split not in datasets:
        raise ValueError(f"evaluation split {args.eval_split!r} not found; splits: {list(datasets)}")
    candidates = holdout_candidates([names[i] for i in train["label"]], train["source"])
    holdouts = args.holdout_list or candidates
    refused = sorted(set(holdouts) - set(candidates))
    if refused:
        raise ValueError(f"cannot hold out {refused}: a class of theirs has no other training source "
                         f"(or they are not training sources); candidates: {candidates}")
    if not holdouts:
        raise ValueError("no source can be held out: every class has a single source")
    eval_sources = set(datasets[args.eval_split]["source"])
    missing = sorted(set(holdouts) - eval_sources)
    if missing:
        raise ValueError(f"held-out source(s) {missing} have no {args.eval_split} images to test on")

    recipe = args.recipe()
    runs: dict[str, dict[str, Any]] = {}
    for run_name in [ALL_SOURCES, *holdouts]:
        suffix = ALL_SOURCES if run_name == ALL_SOURCES else f"without-{run_name}"
        excluded = None if run_name == ALL_SOURCES else run_name
        runs[run_name] = _train_run("teacher", root / f"teacher-{suffix}", args, recipe, cache, excluded)
        if args.students:
            runs[run_name]["student"] = _train_run("distill", root / f"student-{suffix}", args, recipe, cache,
                                                   excluded, teacher_dir=runs[run_name]["dir"])

    evaluation = datasets[args.eval_split]
    probabilities = {name: _predict(Path(run["dir"]), evaluation, cache) for name, run in runs.items()}
    students = ({name: _predict(Path(run["student"]["dir"]), evaluation, cache) for name, run in runs.items()}
                if args.students else None)
    # the split's own columns, in the order the predictions come in (no pixels needed for them)
    labels, sources, patients = (np.asarray(evaluation[column]) for column in ("label", "source", "patient_id"))
    options = dict(label_names=names, seed=args.seed, num_resamples=args.num_resamples)
    rows = []
    for source in holdouts:
        held_out = sources == source
        row = {"heldout_source": source, "classes": sorted({names[i] for i in labels[held_out]}),
               "num_images": int(held_out.sum()), "num_patients": int(len(set(patients[held_out]))),
               "constant_answer": constant_answer(labels[held_out], names),
               **_sides(probabilities, source, labels, patients, held_out, **options)}
        if students is not None:
            row["student"] = _sides(students, source, labels, patients, held_out, **options)
            row["student_minus_teacher"] = _student_minus_teacher(students, probabilities, source, labels, patients,
                                                                  held_out, seed=args.seed,
                                                                  num_resamples=args.num_resamples)
        rows.append(row)
    result = {"arguments": asdict(args), "label_names": list(names), "candidates": candidates, "runs": runs,
              "rows": rows, "wall_s": round(time.perf_counter() - start, 1)}
    (root / "loso.json").write_text(json.dumps(result, indent=2, allow_nan=False))
    (root / "loso.md").write_text(loso_markdown(result))
    return result


def _train_run(stage: str, run_dir: Path, args: LosoArguments, recipe: Recipe, cache: str, excluded: str | None,
               teacher_dir: str | None = None) -> dict[str, Any]:
    """One seeded `run_training` of `stage` without the source `excluded` (None: every source); its summary."""
    from transformers import set_seed

    from ..training.run import run_training

    images_seen = args.max_steps * args.batch_size if stage == "teacher" else args.student_images_seen
    model_args, data_args, training_args = stage_arguments(
        stage, args.dataset, run_dir, recipe, images_seen=images_seen, seed=args.seed, teacher_dir=teacher_dir,
        pixel_cache_dir=cache, progress_bars=False,
    )
    data_args.eval_split = args.eval_split
    if excluded is not None:
        data_args.exclude_sources = excluded
    set_seed(args.seed)
    tick = time.perf_counter()
    report = run_training(model_args, data_args, training_args)
    wall = time.perf_counter() - tick
    extra = report.get("extra", {})
    accuracy = report["overall"]["accuracy"]
    print(f"[loso] {run_dir.name}: {wall:.0f} s, {args.eval_split} accuracy {accuracy:.3f}", flush=True)
    return {"dir": str(run_dir), "excluded": [] if excluded is None else [excluded],
            **({"teacher_dir": teacher_dir} if teacher_dir is not None else {}),
            "image_size": extra.get("image_size"), "num_train_images": extra.get("num_train_images"),
            "global_step": extra.get("global_step"),
            "train_runtime_s": extra.get("train_runtime_s"), "wall_s": round(wall, 1), "full_eval_accuracy": accuracy}


def _sides(probabilities: dict[str, np.ndarray], source: str, labels: np.ndarray, patients: np.ndarray,
           held_out: np.ndarray, **options) -> dict[str, dict[str, Any]]:
    """The held-out and in-distribution metrics of the run with every source and of the run without `source`."""
    everything = np.ones(len(labels), dtype=bool)
    return {
        "with": {"heldout": subset_metrics(probabilities[ALL_SOURCES], labels, patients, held_out, **options),
                 "in_distribution": subset_metrics(probabilities[ALL_SOURCES], labels, patients, everything,
                                                   **options)},
        "without": {"heldout": subset_metrics(probabilities[source], labels, patients, held_out, **options),
                    "in_distribution": subset_metrics(probabilities[source], labels, patients, ~held_out,
                                                      **options)},
    }


def _student_minus_teacher(students: dict[str, np.ndarray], teachers: dict[str, np.ndarray], source: str,
                           labels: np.ndarray, patients: np.ndarray, held_out: np.ndarray, *, seed: int,
                           num_resamples: int) -> dict[str, dict[str, Any]]:
    """The student's held-out accuracy minus its teacher's, for the run with every source and the run without
    `source`: {"with" / "without": {"accuracy", "accuracy_ci"}}."""
    differences = {}
    for side, run in (("with", ALL_SOURCES), ("without", source)):
        estimate, bounds = paired_accuracy_difference(
            students[run].argmax(axis=1)[held_out], teachers[run].argmax(axis=1)[held_out], labels[held_out],
            patients[held_out], seed=seed, num_resamples=num_resamples)
        differences[side] = {"accuracy": estimate, "accuracy_ci": bounds}
    return differences


def constant_answer(labels: np.ndarray, label_names: Sequence[str]) -> dict[str, Any]:
    """What answering the most frequent class for every image scores on `labels`: the floor a held-out figure must
    clear (an imbalanced held-out source rewards a model that answers one class; cxr3's held-out kermany is 76 %
    pneumonia). Macro-F1 over the present classes, as `present_class_macro_f1`."""
    counts = np.bincount(labels, minlength=len(label_names))
    majority = int(counts.argmax())
    present = int((counts > 0).sum())
    f1_majority = 2 * counts[majority] / (2 * counts[majority] + (len(labels) - counts[majority]))
    return {"class": label_names[majority], "accuracy": float(counts[majority] / len(labels)),
            "macro_f1": float(f1_majority / present)}


def subset_metrics(probabilities: np.ndarray, labels: np.ndarray, patients: np.ndarray, rows: np.ndarray, *,
                   label_names: Sequence[str], seed: int, num_resamples: int) -> dict[str, Any]:
    """Accuracy (with `bootstrap_intervals`), macro-F1 over the classes present (same patient bootstrap) and the
    confusion counts (rows true, columns predicted, in `label_names` order) of the images `rows`."""
    from sklearn.metrics import confusion_matrix

    probs, truth, ids = probabilities[rows], labels[rows], patients[rows]
    intervals = bootstrap_intervals(probs, truth, label_names, patient_ids=ids.tolist(), seed=seed,
                                    num_resamples=num_resamples)
    accuracy = intervals["accuracy"]
    f1, f1_bounds = present_class_macro_f1(probs.argmax(axis=1), truth, ids, seed=seed, num_resamples=num_resamples,
                                           min_clusters=10)
    return {"num_images": int(len(truth)), "num_patients": intervals["num_clusters"],
            "accuracy": accuracy["estimate"], "accuracy_ci": interval_bounds(accuracy), "accuracy_ci_reason":
            accuracy.get("reason"), "macro_f1": f1, "macro_f1_ci": f1_bounds,
            "classes": [label_names[i] for i in sorted(set(truth.tolist()))],
            # which class a held-out source is answered with: an accuracy near the constant answer's may be it
            "confusion": confusion_matrix(truth, probs.argmax(axis=1), labels=range(len(label_names))).tolist()}


def present_class_macro_f1(predictions: np.ndarray, labels: np.ndarray, patients: np.ndarray, *, seed: int = 0,
                           num_resamples: int = DEFAULT_NUM_RESAMPLES, confidence: float = DEFAULT_CONFIDENCE,
                           min_clusters: int = 10) -> tuple[float, list[float] | None]:
    """Macro-F1 over the classes present in `labels` (sklearn `f1_score(labels=present, average="macro")`) and its
    percentile patient-bootstrap interval (None below `min_clusters` patients). A prediction of an absent class
    counts as a miss of the true class and adds no F1 term of its own."""
    present = np.unique(labels)

    def macro_f1(weights: np.ndarray) -> np.ndarray:  # weights: (replicates, images)
        scores = []
        for c in present:
            tp = weights @ ((labels == c) & (predictions == c))
            fp = weights @ ((labels != c) & (predictions == c))
            fn = weights @ ((labels == c) & (predictions != c))
            denominator = 2 * tp + fp + fn
            scores.append(np.divide(2 * tp, denominator, out=np.full(len(tp), np.nan), where=denominator > 0))
        return np.nanmean(np.stack(scores), axis=0)

    estimate = float(macro_f1(np.ones((1, len(labels))))[0])
    if len(np.unique(patients.astype(str))) < min_clusters:
        return estimate, None
    return estimate, _percentiles(macro_f1(_patient_resample_weights(patients, seed, num_resamples)), confidence)


def paired_accuracy_difference(first: np.ndarray, second: np.ndarray, labels: np.ndarray, patients: np.ndarray, *,
                               seed: int = 0, num_resamples: int = DEFAULT_NUM_RESAMPLES,
                               confidence: float = DEFAULT_CONFIDENCE,
                               min_clusters: int = 10) -> tuple[float, list[float] | None]:
    """Accuracy of the predictions `first` minus that of `second` on the same images, and its percentile interval
    from one patient bootstrap resampling both (paired: the two models' errors on a patient move together, which
    two separate intervals ignore); None below `min_clusters` patients."""
    if not len(first) == len(second) == len(labels) == len(patients) or not len(labels):
        raise ValueError("paired_accuracy_difference needs two predictions, labels and patients of the same images")
    difference = (first == labels).astype(np.float64) - (second == labels).astype(np.float64)
    estimate = float(difference.mean())
    if len(np.unique(patients.astype(str))) < min_clusters:
        return estimate, None
    weights = _patient_resample_weights(patients, seed, num_resamples)
    return estimate, _percentiles(weights @ difference / weights.sum(axis=1), confidence)


def _patient_resample_weights(patients: np.ndarray, seed: int, num_resamples: int) -> np.ndarray:
    """(num_resamples, images) weights of a patient bootstrap: how often each image's patient was drawn."""
    _, cluster = np.unique(patients.astype(str), return_inverse=True)
    num_clusters = int(cluster.max()) + 1
    draws = np.random.default_rng(seed).integers(0, num_clusters, size=(num_resamples, num_clusters))
    counts = np.stack([np.bincount(row, minlength=num_clusters) for row in draws])
    return counts[:, cluster].astype(np.float64)


def _percentiles(values: np.ndarray, confidence: float) -> list[float]:
    alpha = (1 - confidence) / 2
    return [float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))]


def _predict(model_dir: Path, split, cache: str) -> np.ndarray:
    """The saved model's probabilities on `split`, prepared as its own image processor says."""
    from ..evaluation import model_on_split, predict_probabilities

    loaded = model_on_split(model_dir, split, cache_dir=cache)
    return predict_probabilities(loaded.model, loaded.data, loaded.collator(), batch_size=64)


def loso_main(argv: Sequence[str] | None = None) -> int:
    from transformers import HfArgumentParser

    configure_logging()
    (args,) = HfArgumentParser(LosoArguments).parse_args_into_dataclasses(
        args=list(sys.argv[1:] if argv is None else argv)
    )
    result = run_loso(args)
    print((Path(args.output_dir) / "loso.md").read_text())
    print(f"[loso] wrote {Path(args.output_dir) / 'loso.json'} ({result['wall_s']:.0f} s)")
    return 0


__all__ = ["LosoArguments", "holdout_candidates", "loso_main", "paired_accuracy_difference", "present_class_macro_f1",
           "run_loso"]
