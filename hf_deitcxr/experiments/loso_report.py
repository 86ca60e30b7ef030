"""`loso.md`: the markdown of a `hf-deitcxr loso` result (hf_deitcxr/experiments/loso.py).

The teacher table; when students were distilled, the same table for the students and, per held-out source, the
student's held-out accuracy minus the teacher's (paired patient bootstrap); what each model answers on each
held-out source (confusion counts); then one line per training run.
"""

from __future__ import annotations

from typing import Any

from ..metrics.intervals import format_interval

TABLE_HEADER = [
    "| held-out source | classes | images (patients) | trained with it: acc (CI) | trained without it: acc (CI) "
    "| with it: macro-F1 (CI) | without it: macro-F1 (CI) | in-distribution macro-F1, with all | "
    "in-distribution macro-F1, without it |",
    "|---|---|---|---|---|---|---|---|---|",
]


def _student_variants_text(args: dict[str, Any]) -> str:
    # before the per-stage field, a run's students had the teachers' variants
    variants = args.get("student_processing_variants", args.get("processing_variants", 0))
    return f" (the students': {variants})" if args.get("students") else ""


def loso_markdown(result: dict[str, Any]) -> str:
    args = result["arguments"]
    lines = [
        f"Leave-one-source-out, DenseNet teacher from scratch, {args['max_steps']} steps of {args['batch_size']} at "
        f"{args['image_size']} px, balancing `{args['balancing']}`, intensity normalisation "
        f"`{args.get('intensity_normalization', 'none')}`, border removal {args.get('remove_border', False)}, "
        f"acquisition augmentation {args.get('acquisition_augment', False)}, framing augmentation "
        f"{args.get('framing_augment', False)}, processed variants {args.get('processing_variants', 0)}"
        f"{_student_variants_text(args)}, seed {args['seed']}; evaluated on the "
        f"`{args['eval_split']}` split. Accuracy: value (95 % patient-bootstrap interval, {args['num_resamples']} "
        "resamples); macro-F1 over the classes present in the evaluated images. In-distribution: the run with every "
        "source on all evaluation images; the run without the source on the images of the sources it was trained on.",
        "",
        *TABLE_HEADER,
        *(_table_row(row, row) for row in result["rows"]),
    ]
    lines += ["", "Answering one class for every image (the held-out source's most frequent), the floor a held-out "
              "figure must clear:", ""]
    lines += [_constant_line(row) for row in result["rows"] if "constant_answer" in row]
    if args.get("students"):
        lines += _student_section(result)
    lines += _answers_section(result)
    lines += ["", "| run | excluded | training images | steps | wall s |", "|---|---|---|---|---|"]
    for name, run in result["runs"].items():
        lines.append(_run_line(name, run))
        if "student" in run:
            lines.append(_run_line(f"{name} (student)", run["student"]))
    return "\n".join(lines) + "\n"


def _student_section(result: dict[str, Any]) -> list[str]:
    args = result["arguments"]
    sizes = sorted({run["student"].get("image_size") for run in result["runs"].values()} - {None})
    steps = sorted({run["student"].get("global_step") for run in result["runs"].values()} - {None})
    lines = [
        "",
        f"Distilled DeiT student of each run's teacher (the recipe's distill stage, {args['student_images_seen']} "
        f"training images = {', '.join(map(str, steps)) or '?'} steps at {', '.join(map(str, sizes)) or '?'} px, the "
        "teacher's exclusion and seed), evaluated the same way:",
        "",
        *TABLE_HEADER,
        *(_table_row(row, row["student"]) for row in result["rows"]),
        "",
        "Student minus teacher, held-out accuracy (95 % paired patient-bootstrap interval; above 0: the student is "
        "better off-source):",
        "",
    ]
    for row in result["rows"]:
        parts = []
        for side, label in (("without", "trained without it"), ("with", "trained with it")):
            difference = row["student_minus_teacher"][side]
            parts.append(f"{label} {_signed(difference['accuracy'], difference['accuracy_ci'])} (student "
                         f"{row['student'][side]['heldout']['accuracy']:.3f}, teacher "
                         f"{row[side]['heldout']['accuracy']:.3f})")
        lines.append(f"- {row['heldout_source']} held out: " + "; ".join(parts))
    return lines


def _answers_section(result: dict[str, Any]) -> list[str]:
    """What each model answers on each held-out source: the confusion counts, true -> predicted."""
    names = result["label_names"]
    lines = ["", "Answers on the held-out source (true → predicted: images):", "",
             "| held out | model | true → predicted: images |", "|---|---|---|"]
    for row in result["rows"]:
        models = [("teacher", row)] + ([("student", row["student"])] if "student" in row else [])
        for role, model in models:
            for side, label in (("with", "trained with it"), ("without", "trained without it")):
                confusion = model[side]["heldout"].get("confusion")
                if confusion is None:  # a loso.json of before the counts
                    continue
                lines.append(f"| {row['heldout_source']} | {role}, {label} | {confusion_cells(confusion, names)} |")
    return lines if len(lines) > 5 else []


def confusion_cells(confusion: list[list[int]], label_names: list[str]) -> str:
    """'normal→covid 3, normal→normal 9': the non-zero cells of a confusion matrix (rows true), row by row."""
    return ", ".join(f"{label_names[t]}→{label_names[p]} {n}" for t, counts in enumerate(confusion)
                     for p, n in enumerate(counts) if n)


def _constant_line(row: dict[str, Any]) -> str:
    constant = row["constant_answer"]
    return (f"- {row['heldout_source']}: always '{constant['class']}' scores accuracy {constant['accuracy']:.3f}, "
            f"macro-F1 {constant['macro_f1']:.3f}")


def _table_row(row: dict[str, Any], model: dict[str, Any]) -> str:
    """One held-out source's line of the table, for `model` (the row itself for the teacher, row["student"])."""
    with_, without = model["with"], model["without"]
    cells = [
        row["heldout_source"], ", ".join(row["classes"]), f"{row['num_images']} ({row['num_patients']})",
        format_interval(with_["heldout"]["accuracy"], with_["heldout"]["accuracy_ci"]),
        format_interval(without["heldout"]["accuracy"], without["heldout"]["accuracy_ci"]),
        format_interval(with_["heldout"]["macro_f1"], with_["heldout"]["macro_f1_ci"]),
        format_interval(without["heldout"]["macro_f1"], without["heldout"]["macro_f1_ci"]),
        format_interval(with_["in_distribution"]["macro_f1"], with_["in_distribution"]["macro_f1_ci"]),
        format_interval(without["in_distribution"]["macro_f1"], without["in_distribution"]["macro_f1_ci"]),
    ]
    return "| " + " | ".join(cells) + " |"


def _run_line(name: str, run: dict[str, Any]) -> str:
    return (f"| {name} | {', '.join(run['excluded']) or '-'} | {run['num_train_images']} | {run['global_step']} | "
            f"{run['wall_s']} |")


def _signed(estimate: float, bounds: list[float] | None) -> str:
    """'+0.050 (-0.100 to +0.200)': signed, since the sign is the finding."""
    if bounds is None:
        return f"{estimate:+.3f} (CI n/a)"
    return f"{estimate:+.3f} ({bounds[0]:+.3f} to {bounds[1]:+.3f})"


__all__ = ["confusion_cells", "loso_markdown"]
