#!/usr/bin/env python
"""Single-view vs multi-view mammography transformers on the synthetic four-view task (hf_deitcxr.mammo.synthetic).

For every seed: a fresh synthetic data set (lesions seen in the CC and MLO views of one breast, distractors in one
view only), a tiny ViT "checkpoint" (random weights, saved with save_pretrained as a stand-in for a Hub one), then two
runs of the real training entry (`--task mammo`, the same Trainer, balancing and augmentation):
- single_view: the ViT fine-tuned on views with per-view labels, exam score = max / mean over the exam's views;
- multi_view: the multi-view transformer whose shared local encoder starts from that single-view model (the recipe:
  fine-tune a ViT on single views, then train the cross-view layers on exams), for each `--global_tokens` mode;
- multi_view from the stand-in (ablation, `--ablation`): the same, but the encoder starts from the untrained stand-in.
Prints a table of exam-level AUC and accuracy on the patient-level validation split (mean ± sd over seeds) and the
multi-view minus single-view (max) difference per seed; writes results.json. Augmentation is off unless `--augment`:
at 32 px it hides the blobs and the multi-view model stays at chance (docs/RESULTS.md).

    OMP_WAIT_POLICY=PASSIVE nice -n 10 python scripts/bench_mammo_synthetic.py --num_exams 600 --seeds 0 1 2 --threads 1
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


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_exams", type=int, default=600)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--patch_size", type=int, default=8)
    parser.add_argument("--hidden_size", type=int, default=64)
    parser.add_argument("--num_layers", type=int, default=2, help="local encoder (ViT) layers")
    parser.add_argument("--num_global_layers", type=int, default=2)
    parser.add_argument("--single_epochs", type=float, default=30)
    parser.add_argument("--multi_epochs", type=float, default=40)
    parser.add_argument("--global_tokens", nargs="+", default=["cls", "all"], choices=["cls", "all"])
    parser.add_argument("--ablation", action=argparse.BooleanOptionalAction, default=True,
                        help="also train the multi-view model from the untrained stand-in (first --global_tokens)")
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=False,
                        help="the mammography augmentation while training (off by default: at 32 px it hides the "
                        "2-pixel blobs and makes learning seed-dependent, see tests/test_mammo_training.py)")
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


def train(args: argparse.Namespace, architecture: str, manifest: Path, checkpoint: Path, output: Path, seed: int,
          global_tokens: str = "cls") -> dict:
    multi = architecture == "multi_view"
    argv = [
        "--task", "mammo", "--architecture", architecture, "--model_name_or_path", str(checkpoint),
        "--dataset", str(manifest), "--image_size", str(args.image_size), "--output_dir", str(output),
        "--num_global_layers", str(args.num_global_layers), "--global_tokens", global_tokens,
        "--validation_fraction", str(args.validation_fraction),
        "--num_train_epochs", str(args.multi_epochs if multi else args.single_epochs),
        "--learning_rate", str(args.learning_rate), "--per_device_train_batch_size", "32" if multi else "64",
        "--per_device_eval_batch_size", "128", "--eval_strategy", "no", "--save_strategy", "no",
        "--logging_steps", "100", "--seed", str(seed), "--use_cpu", "true", "--disable_tqdm", "true",
        "--resume", "false", "--report_to", "none", "--augment", str(args.augment).lower(),
    ]
    start = time.perf_counter()
    report = run_mammo_training(*parse_mammo_arguments(argv))
    report["extra"]["wall_s"] = time.perf_counter() - start
    return report


def metrics_of(report: dict, how: str | None = None) -> dict:
    """Exam-level AUC / accuracy of a run (`how`: the aggregation of a single-view run)."""
    m = report["overall"] if how is None else report["extra"]["exam_metrics_by_aggregation"][how]
    return {"auc": m["macro_auc"], "accuracy": m["accuracy"], "balanced_accuracy": m["balanced_accuracy"]}


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
    results: dict[int, dict[str, dict]] = {}
    timings: dict[str, list[float]] = {}
    for seed in args.seeds:
        data = root / f"data_seed{seed}"
        manifest = data / "manifest.csv"
        if not manifest.is_file():
            write_synthetic_mammo(data, args.num_exams, seed=seed,
                                  config=SyntheticMammoConfig(size=args.image_size, extra_blob_p=args.extra_blob_p))
        standin = standin_checkpoint(args, root / f"vit_standin_seed{seed}", seed)
        single_dir = root / f"single_view_seed{seed}"
        runs = [("single_view", "single_view", standin, single_dir, "cls")]
        runs += [(f"multi_view[{tokens}]", "multi_view", single_dir, root / f"multi_view_{tokens}_seed{seed}", tokens)
                 for tokens in args.global_tokens]
        if args.ablation:
            tokens = args.global_tokens[0]
            runs.append((f"multi_view[{tokens}] from stand-in", "multi_view", standin,
                         root / f"multi_view_{tokens}_standin_seed{seed}", tokens))
        results[seed] = {}
        for name, architecture, start, output, tokens in runs:
            report = train(args, architecture, manifest, start, output, seed, tokens)
            if architecture == "single_view":
                results[seed]["single_view (max over views)"] = metrics_of(report, "max")
                results[seed]["single_view (mean over views)"] = metrics_of(report, "mean")
            else:
                results[seed][name] = metrics_of(report)
            timings.setdefault(name, []).append(report["extra"]["wall_s"])
            print(f"seed {seed} {name}: exam AUC {report['overall']['macro_auc']:.3f} "
                  f"({report['extra']['wall_s']:.0f} s)", flush=True)

    print(f"\nSynthetic four-view task: {args.num_exams} exams/seed ({1 - args.validation_fraction:.0%} train, "
          f"patient-level split), extra_blob_p {args.extra_blob_p}, {args.image_size} px views, augmentation "
          f"{'on' if args.augment else 'off'}, ViT "
          f"{args.num_layers}x{args.hidden_size} (patch {args.patch_size}); single view {args.single_epochs:g} "
          f"epochs, multi view {args.multi_epochs:g} epochs ({args.num_global_layers} global layers); seeds "
          f"{args.seeds}; exam-level metrics on the validation exams, mean ± sd over seeds.")
    print("| model | exam AUC | exam accuracy | exam balanced accuracy | train wall s/run |")
    print("|---|---|---|---|---|")
    for name in results[args.seeds[0]]:
        values = [results[seed][name] for seed in args.seeds]
        wall = timings.get(name, timings.get("single_view", [float("nan")]))
        print(f"| {name} | {fmt([v['auc'] for v in values])} | {fmt([v['accuracy'] for v in values])} | "
              f"{fmt([v['balanced_accuracy'] for v in values])} | {statistics.mean(wall):.0f} |")
    baseline = "single_view (max over views)"
    for tokens in args.global_tokens:
        name = f"multi_view[{tokens}]"
        gains = [results[s][name]["auc"] - results[s][baseline]["auc"] for s in args.seeds]
        print(f"{name} minus {baseline}, exam AUC: {fmt(gains)} (per seed: {', '.join(f'{g:+.3f}' for g in gains)})")
    (root / "results.json").write_text(json.dumps({"args": vars(args), "results": results, "timings_s": timings},
                                                  indent=2))


if __name__ == "__main__":
    main()
