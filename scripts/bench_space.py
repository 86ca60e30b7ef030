"""Latency of the Space's prediction path vs `transformers.pipeline("image-classification")`, same checkpoint, same run.

    OMP_WAIT_POLICY=PASSIVE python scripts/bench_space.py --model_name_or_path outputs/quickstart/distill \
        --teacher_name_or_path outputs/quickstart/teacher --images ../shared/data/cxr3/validation \
        --iterations 300 --threads 2 --also_one_thread

Every variant goes from a file path on disk to class probabilities, batch 1, `torch.set_num_threads(threads)`:
- `pipeline`: `pipeline("image-classification", model=...)` called with the path (fp32, the baseline);
- `ours ...`: `ChestXrayPredictor.predict(path)` as the Space calls it: decode, input check, resize to the model size,
  forward under `torch.inference_mode`; "+ heatmap" adds the attention rollout and the coloured overlay. The forward:
  "torch fp32" the fused DeiT forward of `fast_deit.py`, "onnxruntime fp32" the same exported to ONNX Runtime
  (`onnx_deit.py`), "torch bf16" the fused forward in bf16, "transformers forward" the model's own (eager) forward;
  "Space default (auto: ...)" is what the Space loads (`forward="auto"`, `precision="auto"`: the fastest of those
  on a probe at start-up, `forward_choice.py`), with the forward it chose in its name; "+ teacher" (with
  `--teacher_name_or_path`) is the Space's full path with a teacher;
- `--also_one_thread` adds the pipeline and our torch fp32 path with `torch.set_num_threads(1)` (a thread choice,
  not a code change: reported apart from the equal-thread comparison; ONNX Runtime's threads are fixed at load).
Variants run interleaved (each round runs every variant once, in a shuffled order, on the same image), so load from
other processes hits all of them alike. p50/p95 over `iterations` rounds; ratio = pipeline latency / ours.

Then, on `agreement_images` images of the folder: agreement of predicted labels between the pipeline and our fp32
path (preprocessing equivalence), between our fp32 and bf16 paths (does accuracy hold in bf16?), and the accuracy of
each against the folder names as labels. `scripts/check_onnx_parity.py` checks ONNX Runtime against torch fp32.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import HfArgumentParser, pipeline

import hf_deitcxr  # noqa: F401 - registers the model classes for pipeline()
from hf_deitcxr.data.dicom import read_radiograph
from hf_deitcxr.experiments.timing import time_interleaved
from hf_deitcxr.hardware import cpu_flags, cpu_has_native_bf16
from hf_deitcxr.serving import ChestXrayPredictor, RadiographCheck, RadiographClassifier, decode_upload
from hf_deitcxr.serving.explain import attention_rollout, overlay

SAMPLE = Path(hf_deitcxr.__file__).parent / "sample_data" / "cxr3_sample" / "train"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm")
BASELINE = "pipeline (fp32, baseline)"
TORCH_FP32 = "ours torch fp32 + heatmap"


@dataclass
class BenchArguments:
    model_name_or_path: str = field(metadata={"help": "Saved student folder or Hub id"})
    teacher_name_or_path: str | None = field(default=None, metadata={"help": "Adds the Space's path with a teacher"})
    images: str = field(default="../shared/data/cxr3/validation",
                        metadata={"help": "Folder of radiographs (<label>/<file>); the bundled sample if missing"})
    num_latency_images: int = field(default=50, metadata={"help": "Distinct images cycled through while timing"})
    iterations: int = field(default=200)
    warmup: int = field(default=10)
    threads: int = field(default=2)
    agreement_images: int = field(default=0, metadata={"help": "Images for the agreement check; 0 = all"})
    seed: int = field(default=0)
    also_one_thread: bool = field(default=False, metadata={"help": "Also time pipeline and ours at 1 thread"})


def image_files(folder: str) -> list[Path]:
    root = Path(folder) if Path(folder).is_dir() else SAMPLE
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"no images under {root}")
    return files


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q))


def student_path(model: str, check: RadiographCheck, **options) -> ChestXrayPredictor:
    """The Space's path (no teacher) with the student loaded with `options` (a forced forward / precision)."""
    return ChestXrayPredictor(RadiographClassifier.from_pretrained(model, **options), None, check)


def heatmap_cost(predictor: ChestXrayPredictor, files: list[Path], repeats: int = 50) -> dict[str, float]:
    """Median ms of the heatmap's own steps: the rollout from recorded attentions, and colouring the overlay."""
    student = predictor.student
    grey = read_radiograph(files[0])
    with torch.inference_mode():
        outputs = student.model(pixel_values=student._fill_pixels(student.resize(grey)), output_attentions=True)
    grid = student.size // student.model.config.patch_size
    heat = attention_rollout(outputs.attentions, (grid, grid))[0]
    costs = {}
    for name, step in (("rollout", lambda: attention_rollout(outputs.attentions, (grid, grid))),
                       ("overlay", lambda: overlay(grey, heat))):
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            step()
            samples.append(time.perf_counter() - start)
        costs[name] = statistics.median(samples) * 1000.0
    return costs


def agreement(pipe, fp32: RadiographClassifier, bf16: RadiographClassifier, files: list[Path]) -> dict[str, float]:
    """Label agreement and accuracy (folder name = label) of pipeline / ours fp32 / ours bf16, no input check."""
    same_pipe = same_bf16 = correct_pipe = correct_fp32 = correct_bf16 = 0
    max_prob_diff = 0.0
    for path in files:
        truth = path.parent.name
        grey = read_radiograph(path)
        ours32, ours16 = fp32.predict(grey, heatmap=False), bf16.predict(grey, heatmap=False)
        theirs = pipe(Image.open(path), top_k=1)[0]["label"]
        same_pipe += theirs == ours32.label
        same_bf16 += ours16.label == ours32.label
        correct_pipe += theirs == truth
        correct_fp32 += ours32.label == truth
        correct_bf16 += ours16.label == truth
        max_prob_diff = max(max_prob_diff, max(abs(ours32.probabilities[k] - ours16.probabilities[k])
                                               for k in ours32.probabilities))
    n = len(files)
    return {"images": n, "pipeline_vs_fp32": same_pipe / n, "fp32_vs_bf16": same_bf16 / n,
            "accuracy_pipeline": correct_pipe / n, "accuracy_fp32": correct_fp32 / n, "accuracy_bf16": correct_bf16 / n,
            "max_prob_diff_bf16": max_prob_diff}


def main() -> None:
    (args,) = HfArgumentParser(BenchArguments).parse_args_into_dataclasses()
    torch.set_num_threads(args.threads)
    files = image_files(args.images)
    latency_files = random.Random(args.seed).sample(files, min(args.num_latency_images, len(files)))

    pipe = pipeline("image-classification", model=args.model_name_or_path)
    check = RadiographCheck()
    ours = {
        "fp32": student_path(args.model_name_or_path, check, precision="fp32", forward="torch"),
        "onnx": student_path(args.model_name_or_path, check, precision="fp32", forward="onnx"),
        "bf16": student_path(args.model_name_or_path, check, precision="bf16", forward="torch"),
        "auto": ChestXrayPredictor.from_pretrained(args.model_name_or_path, precision="auto"),  # as the Space loads
    }
    unfused = ChestXrayPredictor.from_pretrained(args.model_name_or_path, precision="fp32", fused=False)
    if ours["fp32"].student.fused is None:
        print("warning: the fused forward is not used for this model (see the log)")
    if ours["onnx"].student.forward_name != "onnxruntime fp32":
        print("warning: the ONNX Runtime forward is not usable for this model (see the log)")
    auto = ours["auto"].student.forward_choice
    default = f"Space default (auto: {auto.name}) + heatmap"
    variants: dict[str, Callable[[Path], object]] = {
        BASELINE: lambda path: pipe(str(path)),
        "ours torch fp32, no heatmap": lambda path: ours["fp32"].predict(path, heatmap=False),
        TORCH_FP32: lambda path: ours["fp32"].predict(path, heatmap=True),
        "ours onnxruntime fp32 + heatmap": lambda path: ours["onnx"].predict(path, heatmap=True),
        "ours torch bf16 + heatmap": lambda path: ours["bf16"].predict(path, heatmap=True),
        default: lambda path: ours["auto"].predict(path, heatmap=True),
        "ours fp32 + heatmap, transformers forward": lambda path: unfused.predict(path, heatmap=True),
    }
    if args.teacher_name_or_path:
        space = ChestXrayPredictor.from_pretrained(args.model_name_or_path, args.teacher_name_or_path,
                                                   precision="auto")
        variants[f"Space path (auto: {space.student.forward_name}) + heatmap + teacher"] = (
            lambda path: space.predict(path, heatmap=True))
    if args.also_one_thread:
        variants[f"{BASELINE} @ 1 thread"] = _one_thread(variants[BASELINE], args.threads)
        variants[f"{TORCH_FP32} @ 1 thread"] = _one_thread(variants[TORCH_FP32], args.threads)
    # Images the input check refuses would raise: time only images it accepts (all real ones but a few).
    accepted = [p for p in latency_files if not check.all_failures(decode_upload(p))[1]]
    times = time_interleaved(variants, accepted, args.iterations, args.warmup, args.seed)

    base50 = percentile(times[BASELINE], 50)
    base95 = percentile(times[BASELINE], 95)
    print(f"\nmodel {args.model_name_or_path}; {len(accepted)} images from {files[0].parents[1]}; batch 1; "
          f"torch.set_num_threads({args.threads}); {args.iterations} interleaved rounds after {args.warmup} warm-up; "
          f"CPU has AMX-BF16: {'amx_bf16' in cpu_flags()}, native bf16 (AVX512-BF16 or AMX): {cpu_has_native_bf16()}; "
          f"the Space's start-up choice here: {auto.name} (median ms on its probe: "
          f"{', '.join(f'{k} {v:.2f}' for k, v in auto.median_ms.items()) or 'not timed'})\n")
    print("| variant | p50 ms | p95 ms | pipeline p50 / this p50 | pipeline p95 / this p95 |")
    print("|---|---:|---:|---:|---:|")
    for name, samples in times.items():
        p50, p95 = percentile(samples, 50), percentile(samples, 95)
        print(f"| {name} | {p50:.1f} | {p95:.1f} | {base50 / p50:.2f}x | {base95 / p95:.2f}x |")

    costs = heatmap_cost(ours["fp32"], accepted)
    print(f"\nheatmap steps alone (fp32, median): rollout {costs['rollout']:.2f} ms, overlay {costs['overlay']:.2f} ms")

    agree_files = files if args.agreement_images <= 0 else files[: args.agreement_images]
    result = agreement(pipe, ours["fp32"].student, ours["bf16"].student, agree_files)
    print(f"\nagreement on {result['images']} images (no input check): pipeline vs ours fp32 "
          f"{result['pipeline_vs_fp32']:.2%}; ours fp32 vs bf16 {result['fp32_vs_bf16']:.2%} "
          f"(max |p_fp32 - p_bf16| {result['max_prob_diff_bf16']:.4f}); accuracy pipeline "
          f"{result['accuracy_pipeline']:.2%}, ours fp32 {result['accuracy_fp32']:.2%}, "
          f"ours bf16 {result['accuracy_bf16']:.2%}")


def _one_thread(call: Callable[[Path], object], threads: int) -> Callable[[Path], object]:
    def timed_at_one_thread(path: Path) -> object:
        torch.set_num_threads(1)
        try:
            return call(path)
        finally:
            torch.set_num_threads(threads)

    return timed_at_one_thread


if __name__ == "__main__":
    main()
