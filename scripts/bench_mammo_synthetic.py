#!/usr/bin/env python
"""Single-view vs multi-view mammography transformers on the synthetic four-view task (hf_deitcxr.mammo.synthetic).

For every seed: a fresh synthetic data set (lesions seen in the CC and MLO views of one breast, distractors in one
view only), a tiny ViT "checkpoint" (random weights, saved with save_pretrained as a stand-in for a Hub one), then two
runs of the real training entry (`--task mammo`, the same Trainer, balancing and augmentation):
- single_view: the ViT trained on views with per-view labels, exam score = max / mean over the exam's views;
- multi_view: the same ViT as the shared local encoder of the multi-view transformer, exam labels.
Prints a table of exam-level AUC and accuracy on the patient-level validation split, per seed and mean ± sd, and the
multi-view minus single-view (max) difference; writes results.json.

    nice -n 10 python scripts/bench_mammo_synthetic.py --num_exams 600 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

import torch
from transformers import ViTConfig, ViTForImageClassification

from hf_deitcxr.mammo.synthetic import SyntheticMammoConfig, write_synthetic_mammo
from hf_deitcxr.mammo.training import parse_mammo_arguments, run_mammo_training

ROWS = (("single_view", "max"), ("single_view", "mean"), ("multi_view", None))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_exams", type=int, default=600)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--patch_size", type=int, default=8)
    parser.add_argument("--hidden_size", type=int, default=64)
    parser.add_argument("--num_layers", type=int, default=2, help="local encoder (ViT) layers")
    parser.add_argument("--num_global_layers", type=int, default=2)
    parser.add_argument("--epochs", type=float, default=40)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--extra_blob_p", type=float, default=0.5, help="see SyntheticMammoConfig")
    parser.add_argument("--validation_fraction", type=float, default=0.3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--output_dir", default="outputs/bench_mammo_synthetic")
    return parser.parse_args()


def standin_checkpoint(args: argparse.Namespace, path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    config = ViTConfig(hidden_size=args.hidden_size, num_hidden_layers=args.num_layers, num_attention_heads=4,
                       intermediate_size=2 * args.hidden_size, image_size=args.image_size,
                       patch_size=args.patch_size, num_labels=1000)
    ViTForImageClassification(config).save_pretrained(path)
    return path


def train(args: argparse.Namespace, architecture: str, manifest: Path, checkpoint: Path, output: Path,
          seed: int) -> dict:
    argv = [
        "--task", "mammo", "--architecture", architecture, "--model_name_or_path", str(checkpoint),
        "--dataset", str(manifest), "--image_size", str(args.image_size), "--output_dir", str(output),
        "--num_global_layers", str(args.num_global_layers), "--validation_fraction", str(args.validation_fraction),
        "--num_train_epochs", str(args.epochs), "--learning_rate", str(args.learning_rate),
        "--per_device_train_batch_size", "32" if architecture == "multi_view" else "64",
        "--per_device_eval_batch_size", "128", "--eval_strategy", "no", "--save_strategy", "no",
        "--logging_steps", "100", "--seed", str(seed), "--use_cpu", "true", "--disable_tqdm", "true",
        "--resume", "false", "--report_to", "none",
    ]
    start = time.perf_counter()
    report = run_mammo_training(*parse_mammo_arguments(argv))
    report["extra"]["wall_s"] = time.perf_counter() - start
    return report


def rows_of(report: dict, architecture: str) -> dict:
    if architecture == "multi_view":
        overall = report["overall"]
        return {("multi_view", None): {"auc": overall["macro_auc"], "accuracy": overall["accuracy"],
                                       "balanced_accuracy": overall["balanced_accuracy"]}}
    by_rule = report["extra"]["exam_metrics_by_aggregation"]
    return {("single_view", how): {"auc": m["macro_auc"], "accuracy": m["accuracy"],
                                   "balanced_accuracy": m["balanced_accuracy"]} for how, m in by_rule.items()}


def fmt(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(args.output_dir)
    results: dict[int, dict] = {}
    timings: dict[str, list[float]] = {"single_view": [], "multi_view": []}
    for seed in args.seeds:
        data = root / f"data_seed{seed}"
        manifest = data / "manifest.csv"
        if not manifest.is_file():
            write_synthetic_mammo(data, args.num_exams, seed=seed,
                                  config=SyntheticMammoConfig(size=args.image_size, extra_blob_p=args.extra_blob_p))
        checkpoint = standin_checkpoint(args, root / f"vit_standin_seed{seed}", seed)
        results[seed] = {}
        for architecture in ("single_view", "multi_view"):
            report = train(args, architecture, manifest, checkpoint, root / f"{architecture}_seed{seed}", seed)
            results[seed].update(rows_of(report, architecture))
            timings[architecture].append(report["extra"]["wall_s"])
            print(f"seed {seed} {architecture}: {rows_of(report, architecture)} ({report['extra']['wall_s']:.0f} s)",
                  flush=True)

    print(f"\nSynthetic four-view task: {args.num_exams} exams/seed ({1 - args.validation_fraction:.0%} train, "
          f"patient-level split), {args.image_size} px views, ViT {args.num_layers}x{args.hidden_size} "
          f"(patch {args.patch_size}), {args.epochs:g} epochs, seeds {args.seeds}; exam-level metrics on validation.")
    print("| model | exam score | exam AUC | exam accuracy | exam balanced accuracy |")
    print("|---|---|---|---|---|")
    for architecture, how in ROWS:
        values = [results[seed][(architecture, how)] for seed in args.seeds]
        score = f"{how} over views" if how else "exam token"
        print(f"| {architecture} | {score} | {fmt([v['auc'] for v in values])} | "
              f"{fmt([v['accuracy'] for v in values])} | {fmt([v['balanced_accuracy'] for v in values])} |")
    gains = [results[s][("multi_view", None)]["auc"] - results[s][("single_view", "max")]["auc"] for s in args.seeds]
    print(f"\nmulti-view minus single-view (max) exam AUC: {fmt(gains)} "
          f"(per seed: {', '.join(f'{g:+.3f}' for g in gains)})")
    print(f"training wall time per run: single-view {fmt(timings['single_view'])} s, "
          f"multi-view {fmt(timings['multi_view'])} s")
    serialisable = {str(seed): {f"{a}/{h or 'exam'}": v for (a, h), v in rows.items()}
                    for seed, rows in results.items()}
    (root / "results.json").write_text(json.dumps({"args": vars(args), "results": serialisable,
                                                   "timings_s": timings}, indent=2))


if __name__ == "__main__":
    main()
