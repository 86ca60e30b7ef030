"""`hf-deitcxr quickstart`: the seed's method end to end on a CPU in minutes.

teacher (DenseNet-121, from scratch) -> distilled DeiT-tiny student (soft distillation) -> evaluation with a
per-source breakdown -> shortcut audit of the student (`hf-deitcxr audit`, into its folder and model card) -> a
Hub-ready folder. Reduced against the paper's setting so it fits ~20 minutes on 2 CPU
cores: lower resolution (`CPU_RECIPE` in hf_deitcxr/experiments/recipe.py, the setting the benchmark measured) and a
budget of a few thousand training images; the numbers it prints are a smoke test of the pipeline, far from the
method's accuracy at 224 px on a GPU (see docs/RESULTS.md).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from .recipe import CPU_RECIPE, stage_arguments

SHARED_CXR3 = Path("../shared/data/cxr3")
BUNDLED_SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "cxr3_sample"
# Budget in training images seen (optimiser steps x batch) on the full training split; the student trains longer,
# as in DeiT. The bundled 12-image sample only demonstrates the pipeline, so it runs a few epochs instead.
QUICKSTART_IMAGES_SEEN = {"teacher": 4800, "distill": 9600}
SAMPLE_EPOCHS = {"teacher": 3.0, "distill": 6.0}


def default_dataset() -> tuple[str, bool]:
    """The real cxr3 set next to the checkout when present, else the bundled 12-image sample."""
    if (SHARED_CXR3 / "train").is_dir():
        return str(SHARED_CXR3), True
    return str(BUNDLED_SAMPLE), False


def run_quickstart(dataset: str | None = None, output_dir: str = "outputs/quickstart", image_size: int | None = None,
                   epochs: float | None = None, seed: int = 0, audit: bool = True) -> dict:
    """Train the teacher, then the distilled student, under `CPU_RECIPE`; every stage seeded with `seed`. With
    `audit`, the student is audited for source shortcuts on the evaluation split and its model card carries it."""
    from ..audit import run_audit
    from ..model_card import write_model_card
    from ..training.run import run_training

    is_full = True
    if dataset is None:
        dataset, is_full = default_dataset()
    recipe = CPU_RECIPE.at_size(image_size) if image_size else CPU_RECIPE
    root = Path(output_dir)
    timings, reports = {}, {}
    for stage in ("teacher", "distill"):
        if epochs is not None or not is_full:
            budget = {"epochs": epochs if epochs is not None else SAMPLE_EPOCHS[stage]}
        else:
            budget = {"images_seen": QUICKSTART_IMAGES_SEEN[stage]}
        args = stage_arguments(stage, dataset, root / stage, recipe, teacher_dir=root / "teacher", seed=seed,
                                **budget)
        start = time.perf_counter()
        reports[stage] = run_training(*args)
        timings[stage] = round(time.perf_counter() - start, 1)
        print(f"[quickstart] {stage}: {timings[stage]} s, validation {summary_line(reports[stage])}")
    student_dir = root / "distill"
    if audit:
        start = time.perf_counter()
        # the forward in the precision the student was trained and evaluated in (bf16 on CPUs with native bf16)
        result = run_audit(str(student_dir), dataset, seed=seed, precision="auto")
        timings["audit"] = round(time.perf_counter() - start, 1)
        print(f"[quickstart] audit: {timings['audit']} s, {len(result.flags)} flag(s); {student_dir / 'audit.md'}")
    write_model_card(student_dir)
    summary = {"dataset": dataset, "image_size": recipe.image_size,
               "teacher_image_size": recipe.image_size_for("teacher"), "patch_size": recipe.patch_size, "seed": seed,
               "seconds": timings}
    (root / "quickstart.json").write_text(json.dumps(summary, indent=2))
    print(f"[quickstart] Hub-ready student: {student_dir}")
    print(f"[quickstart] serve it:  MODEL_ID={student_dir} TEACHER_ID={root / 'teacher'} python space/app.py"
          "   (the Space needs gradio: pip install -e '.[space]')")
    return reports


def summary_line(report: dict) -> str:
    overall = report["overall"]
    return f"accuracy {overall['accuracy']:.3f}, macro-F1 {overall['macro_f1']:.3f}"
