"""`hf-deitcxr quickstart`: the seed's method end to end on a CPU in minutes.

teacher (DenseNet-121, from scratch) -> distilled DeiT-tiny student (hard distillation) -> evaluation with a
per-source breakdown -> a Hub-ready folder. Reduced against the paper's setting so it fits ~20 minutes on 2 CPU
cores: lower resolution (`CPU_RECIPE` in hf_deitcxr/training/recipe.py, the recipe the benchmark measured), a
patient-level training subset and few epochs; the numbers it prints are a smoke test of the pipeline, not the
method's accuracy (see docs/RESULTS.md for real runs).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from .training.recipe import CPU_RECIPE, stage_arguments

SHARED_CXR3 = Path("../shared/data/cxr3")
BUNDLED_SAMPLE = Path(__file__).parent / "sample_data" / "cxr3_sample"
QUICKSTART_TRAIN_SUBSET = 1200
QUICKSTART_EPOCHS = {"teacher": 3.0, "distill": 6.0}


def default_dataset() -> tuple[str, bool]:
    """The real cxr3 set next to the checkout when present, else the bundled 12-image sample."""
    if (SHARED_CXR3 / "train").is_dir():
        return str(SHARED_CXR3), True
    return str(BUNDLED_SAMPLE), False


def run_quickstart(dataset: str | None = None, output_dir: str = "outputs/quickstart", image_size: int | None = None,
                   epochs: float | None = None) -> dict:
    from .model_card import write_model_card
    from .training.run import run_training

    is_full = True
    if dataset is None:
        dataset, is_full = default_dataset()
    recipe = CPU_RECIPE.with_overrides(image_size=image_size) if image_size else CPU_RECIPE
    subset = QUICKSTART_TRAIN_SUBSET if is_full else None
    root = Path(output_dir)
    timings, reports = {}, {}
    for stage in ("teacher", "distill"):
        stage_epochs = epochs if epochs is not None else QUICKSTART_EPOCHS[stage]
        args = stage_arguments(stage, dataset, root / stage, recipe, epochs=stage_epochs, train_subset=subset,
                               teacher_dir=root / "teacher")
        start = time.perf_counter()
        reports[stage] = run_training(*args)
        timings[stage] = round(time.perf_counter() - start, 1)
        print(f"[quickstart] {stage}: {timings[stage]} s, validation {summary_line(reports[stage])}")
    student_dir = root / "distill"
    write_model_card(student_dir)
    (root / "quickstart.json").write_text(json.dumps({"dataset": dataset, "image_size": recipe.image_size,
                                                      "train_subset": subset, "seconds": timings}, indent=2))
    print(f"[quickstart] Hub-ready student: {student_dir}")
    print(f"[quickstart] serve it:  MODEL_ID={student_dir} python space/app.py")
    return reports


def summary_line(report: dict) -> str:
    overall = report["overall"]
    return f"accuracy {overall['accuracy']:.3f}, macro-F1 {overall['macro_f1']:.3f}"
