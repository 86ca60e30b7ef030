"""`hf-deitcxr`: train, evaluate, calibrate, predict, validate-data, benchmark, tune, gpu-benchmark, push, audit, loso
and quickstart."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-deitcxr", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    # `train` and `benchmark` hand all their arguments (--help included) to their own HfArgumentParser.
    commands.add_parser("train", help="train a stage (all scripts/train.py arguments; see --help)", add_help=False)

    evaluate = commands.add_parser("evaluate", help="metrics + plots of a saved model on a dataset split")
    evaluate.add_argument("--model", required=True, help="saved model folder or Hub id")
    evaluate.add_argument("--dataset", required=True, help="dataset (same forms as for training)")
    evaluate.add_argument("--split", default="validation")
    evaluate.add_argument("--output_dir", default=None)
    evaluate.add_argument("--batch_size", type=int, default=32)

    # `predict` hands its arguments to its own argparse parser (hf_deitcxr/serving/batch_predict.py).
    commands.add_parser("predict", help="predictions of a saved model for image/DICOM files, folders or CSV "
                        "manifests, one CSV row per file (see --help)", add_help=False)

    validate = commands.add_parser("validate-data", help="check a dataset: unreadable files, leakage, counts")
    validate.add_argument("--dataset", required=True)
    validate.add_argument("--task", choices=["auto", "cxr", "mammo"], default="auto",
                          help="auto: mammo when the manifest (a CSV, or a folder's manifest.csv) has laterality and "
                          "view columns or --dicom_labels is given, else cxr")
    validate.add_argument("--class_names", default=None, help="comma-separated class order")
    validate.add_argument("--validation_fraction", type=float, default=0.15,
                          help="the patient-level validation split checked, as training would make it")
    validate.add_argument("--seed", type=int, default=0, help="seed of that split (mammo: --split_seed of training)")
    for flag, choices, what in (("--exam_unit", ["exam", "breast", "patient"], "exam unit (default exam)"),
                                ("--multi_crop", ["pair", "most_severe"], "rule for several crops of one view "
                                 "(default pair)")):
        validate.add_argument(flag, choices=choices, default=None, help=f"mammo: the {what}, as in training")
    validate.add_argument("--dicom_labels", default=None, help="mammo: labels CSV of a DICOM folder")
    validate.add_argument("--json", action="store_true", help="print the report as JSON")

    commands.add_parser("benchmark", help="teacher vs DeiT vs distilled DeiT over training-set sizes, "
                        "or over training budgets with --budgets (time to accuracy); --task mammo: backbones, "
                        "distillation and multi view on a mammography crop folder (see --help)",
                        add_help=False)
    commands.add_parser("tune", help="one student recipe on the validation split, one row per run (see --help)",
                        add_help=False)
    commands.add_parser("gpu-benchmark", help="teacher + distilled student on an accelerator: images/s, MFU, "
                        "accuracy; run it under `accelerate launch -m hf_deitcxr.cli` (see --help)", add_help=False)

    # `push` hands its arguments to its own HfArgumentParser too (hf_deitcxr/hub.py); the token never is one.
    commands.add_parser("push", help="publish a model folder (or the Space folder) to the Hub (see --help)",
                        add_help=False)

    # `audit` hands its arguments to its own HfArgumentParser (hf_deitcxr/audit/arguments.py).
    commands.add_parser("audit", help="shortcut audit of a saved model: per-source metrics, perturbation and source "
                        "probes, confounding (see --help)", add_help=False)

    # `loso` hands its arguments to its own HfArgumentParser (hf_deitcxr/experiments/loso.py).
    commands.add_parser("loso", help="leave-one-source-out: the teacher (and with --students, its distilled student) "
                        "trained with and without each source, tested on it (see --help)", add_help=False)

    calibrate = commands.add_parser("calibrate", help="fit temperature scaling on a dataset split and store it in the "
                                    "model folder's config.json (calibration.json: ECE/NLL before and after)")
    calibrate.add_argument("model", help="saved model folder")
    calibrate.add_argument("--dataset", required=True, help="dataset (same forms as for training)")
    calibrate.add_argument("--split", default="validation", help="the held-out split to fit on (never a test split)")
    calibrate.add_argument("--batch_size", type=int, default=32)

    quickstart = commands.add_parser("quickstart", help="teacher -> distilled student -> evaluation, on CPU")
    quickstart.add_argument("--dataset", default=None, help="default: ../shared/data/cxr3, else bundled sample")
    quickstart.add_argument("--output_dir", default="outputs/quickstart")
    quickstart.add_argument("--image_size", type=int, default=None)
    quickstart.add_argument("--epochs", type=float, default=None)
    quickstart.add_argument("--seed", type=int, default=0, help="seeds the weights, data order and augmentation")
    quickstart.add_argument("--audit", choices=["true", "false"], default="true",
                            help="audit the student for source shortcuts (hf-deitcxr audit) into its folder and card")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, passed_on = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if args.command == "train":
        return train(passed_on)
    if args.command == "benchmark":
        from .training.arguments import requested_task

        if requested_task(passed_on) == "mammo":
            from .mammo.benchmark import mammo_benchmark_main

            return mammo_benchmark_main(passed_on)
        from .experiments.benchmark import benchmark_main

        return benchmark_main(passed_on)
    if args.command == "tune":
        from .experiments.tuning import tune_main

        return tune_main(passed_on)
    if args.command == "gpu-benchmark":
        from .experiments.gpu_benchmark import gpu_benchmark_main

        return gpu_benchmark_main(passed_on)
    if args.command == "push":
        from .hub import push_main

        return push_main(passed_on)
    if args.command == "audit":
        from .audit.arguments import audit_main

        return audit_main(passed_on)
    if args.command == "loso":
        from .experiments.loso import loso_main

        return loso_main(passed_on)
    if args.command == "predict":
        from .serving.batch_predict import predict_main

        return predict_main(passed_on)
    if passed_on:
        parser.error(f"unrecognized arguments: {' '.join(passed_on)}")
    if args.command == "evaluate":
        from .evaluation import evaluate_model

        report = evaluate_model(args.model, args.dataset, args.split, args.output_dir, args.batch_size)
        print(json.dumps(report["overall"], indent=2, default=str))
        return 0
    if args.command == "calibrate":
        from .calibration import calibrate_model

        summary = calibrate_model(args.model, args.dataset, args.split, args.batch_size)
        print(json.dumps({key: summary[key] for key in summary if key.startswith(("temperature", "ece", "nll"))},
                         indent=2))
        return 0
    if args.command == "validate-data":
        return validate_data(args)
    from .experiments.quickstart import run_quickstart

    run_quickstart(args.dataset, args.output_dir, image_size=args.image_size, epochs=args.epochs,
                   seed=args.seed, audit=args.audit == "true")
    return 0


def train(argv: Sequence[str]) -> int:
    """`train` dispatches on `--task`: chest X-ray stages and mammography each parse their own arguments."""
    from .training.arguments import requested_task

    if requested_task(argv) == "mammo":
        from .mammo.training import mammo_train_main

        return mammo_train_main(argv)
    from .training.run import train_main  # heavy imports only once the task is known

    return train_main(argv)


def validate_data(args: argparse.Namespace) -> int:
    class_names = [n.strip() for n in args.class_names.split(",")] if args.class_names else None
    mammo_only = [flag for flag in ("exam_unit", "multi_crop", "dicom_labels") if getattr(args, flag) is not None]
    if validate_task(args) == "mammo":
        from .mammo.validation import validate_mammo_data

        report = validate_mammo_data(
            args.dataset, class_names=class_names, dicom_labels=args.dicom_labels,
            exam_unit=args.exam_unit or "exam", multi_crop=args.multi_crop or "pair",
            validation_fraction=args.validation_fraction, seed=args.seed,
        )
    elif mammo_only:
        raise SystemExit(f"validate-data: --{', --'.join(mammo_only)} only apply to mammography data (--task mammo)")
    else:
        from .data import load_radiograph_dataset, validate_dataset

        report = validate_dataset(load_radiograph_dataset(
            args.dataset, class_names=class_names, validation_fraction=args.validation_fraction, seed=args.seed))
    print(json.dumps(report.to_dict(), indent=2, default=str) if args.json else report.format())
    return 0 if report.ok else 1


def validate_task(args: argparse.Namespace) -> str:
    """`--task auto`: mammography when the dataset is a mammography manifest (header only) or a labelled DICOM
    folder, else chest X-ray."""
    if args.task != "auto":
        return args.task
    if args.dicom_labels is not None:
        return "mammo"
    from .mammo.manifest import find_mammo_manifest

    return "mammo" if find_mammo_manifest(args.dataset) is not None else "cxr"


if __name__ == "__main__":
    sys.exit(main())
