"""`hf-deitcxr quickstart`: the seed's method end to end on a CPU in minutes.

teacher (DenseNet-121, from scratch) -> distilled DeiT-tiny student (hard distillation) -> evaluation with a
per-source breakdown -> a Hub-ready folder. Reduced against the paper's setting so it fits ~20 minutes on 2 CPU
cores: lower resolution (`QUICKSTART_IMAGE_SIZE`), a patient-level training subset and few epochs; the numbers it
prints are a smoke test of the pipeline, not the method's accuracy (see docs/RESULTS.md for real runs).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from .training.arguments import DataArguments, ModelArguments
from .training.cli import DEFAULTS

SHARED_CXR3 = Path("../shared/data/cxr3")
BUNDLED_SAMPLE = Path(__file__).parent / "sample_data" / "cxr3_sample"
QUICKSTART_IMAGE_SIZE = 112
QUICKSTART_TRAIN_SUBSET = 1200
QUICKSTART_EPOCHS = {"teacher": 3.0, "distill": 6.0}


def default_dataset() -> tuple[str, bool]:
    """The real cxr3 set next to the checkout when present, else the bundled 12-image sample."""
    if (SHARED_CXR3 / "train").is_dir():
        return str(SHARED_CXR3), True
    return str(BUNDLED_SAMPLE), False


def stage_arguments(stage: str, dataset: str, output_dir: Path, image_size: int, epochs: float,
                    train_subset: int | None, teacher_dir: Path | None = None):
    import torch
    from transformers import TrainingArguments

    on_gpu = torch.cuda.is_available()

    model_args = ModelArguments(
        stage=stage, image_size=image_size, student_preset="deit-tiny", distillation_type="hard",
        teacher_name_or_path=str(teacher_dir) if teacher_dir else None,
    )
    data_args = DataArguments(dataset=dataset, train_subset=train_subset, balancing="class_weighted_loss")
    training = {**DEFAULTS, "save_strategy": "no", "save_total_limit": None, "eval_strategy": "no"}
    training_args = TrainingArguments(
        output_dir=str(output_dir / stage),
        num_train_epochs=epochs,
        per_device_train_batch_size=32,
        per_device_eval_batch_size=64,
        learning_rate=1e-3 if stage == "teacher" else 5e-4,
        bf16=torch.cuda.is_bf16_supported() if on_gpu else _cpu_has_bf16(),
        use_cpu=not on_gpu,
        seed=0,
        **{k: v for k, v in training.items() if k != "learning_rate"},
    )
    return model_args, data_args, training_args


def run_quickstart(dataset: str | None = None, output_dir: str = "outputs/quickstart", image_size: int | None = None,
                   epochs: float | None = None) -> dict:
    from .model_card import write_model_card
    from .training.run import run_training

    is_full = True
    if dataset is None:
        dataset, is_full = default_dataset()
    size = image_size or QUICKSTART_IMAGE_SIZE
    subset = QUICKSTART_TRAIN_SUBSET if is_full else None
    root = Path(output_dir)
    timings, reports = {}, {}
    for stage in ("teacher", "distill"):
        stage_epochs = epochs if epochs is not None else QUICKSTART_EPOCHS[stage]
        args = stage_arguments(stage, dataset, root, size, stage_epochs, subset, teacher_dir=root / "teacher")
        start = time.perf_counter()
        reports[stage] = run_training(*args)
        timings[stage] = round(time.perf_counter() - start, 1)
        print(f"[quickstart] {stage}: {timings[stage]} s, validation {summary_line(reports[stage])}")
    student_dir = root / "distill"
    write_model_card(student_dir)
    (root / "quickstart.json").write_text(json.dumps({"dataset": dataset, "image_size": size,
                                                      "train_subset": subset, "seconds": timings}, indent=2))
    print(f"[quickstart] Hub-ready student: {student_dir}")
    print(f"[quickstart] serve it:  MODEL_ID={student_dir} python space/app.py")
    return reports


def summary_line(report: dict) -> str:
    overall = report["overall"]
    return f"accuracy {overall['accuracy']:.3f}, macro-F1 {overall['macro_f1']:.3f}"


def _cpu_has_bf16() -> bool:
    """bf16 autocast only where the CPU has native bf16 (AVX512-BF16/AMX); elsewhere it is slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
