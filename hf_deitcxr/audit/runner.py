"""`run_audit`: the shortcut audit of a saved classifier on one split of a dataset, written into a folder."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..data import load_radiograph_dataset
from ..data.image_cache import CachedImageDataset
from ..metrics.intervals import DEFAULT_NUM_RESAMPLES, bootstrap_intervals
from ..models.deit_cxr.image_processing_deit_cxr import GreyPreprocessing
from .inference import autocast_dtype_for, embedding_kind, load_classifier, predict_grey
from .measures import AGREEMENT_THRESHOLD, agreement_by_source, group_metrics
from .perturbations import Perturbation, default_perturbations
from .probes import DEFAULT_FOLDS, confounding_table, source_probe, within_class_source_probes
from .report import write_audit_report

logger = logging.getLogger(__name__)

NOT_COVERED = ("leave-one-source-out retraining (a separate command, `hf-deitcxr loso`: it trains); remedies, which "
               "are training options (`--intensity_normalization`, `--remove_border`, `--acquisition_augment`, "
               "`--framing_augment`, `--processing_variants`, `--balancing source_balanced`); negative (inverted) "
               "exports: DICOM MONOCHROME1 is inverted by the decoder before any model, an inverted 8-bit file is "
               "neither corrected nor probed")


@dataclass
class AuditResult:
    """The audit as written to `audit.json` (`audit`), where it was written and the files written."""

    audit: dict[str, Any]
    output_dir: Path
    files: list[Path] = field(default_factory=list)

    @property
    def flags(self) -> list[str]:
        return list(self.audit["flags"])


def run_audit(
    model_path: str,
    dataset: str,
    split: str = "validation",
    output_dir: str | Path | None = None,
    *,
    batch_size: int = 64,
    image_size: int = 224,
    seed: int = 0,
    num_resamples: int = DEFAULT_NUM_RESAMPLES,
    num_folds: int = DEFAULT_FOLDS,
    agreement_threshold: float = AGREEMENT_THRESHOLD,
    perturbations: Sequence[Perturbation] | None = None,
    precision: str = "fp32",
) -> AuditResult:
    """Audit the classifier saved at `model_path` on `split` of `dataset` for source shortcuts.

    Images are decoded to 8-bit grey at `image_size` px (cxr3's stored size), perturbed there, and passed through
    the model's own image processor. Writes `audit.json`, `audit.md` and PNGs to `output_dir` (default: the model
    folder). Seeded by `seed` (bootstrap, probe folds, torch). `precision` ("fp32", "bf16", "auto") is the forward's:
    "auto" is bf16 where the training recipe would train in bf16, as its evaluation then ran (the CLI's default).
    """
    torch.manual_seed(seed)
    autocast_dtype = autocast_dtype_for(precision)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    model, processor, label_names = load_classifier(model_path)
    data = _load_split(dataset, split, label_names, image_size)
    labels = data.labels.numpy()
    sources = [str(s) for s in data.extras.get("source", ["unknown"] * len(labels))]
    patients = [str(p) for p in data.extras.get("patient_id", [f"image:{i}" for i in range(len(labels))])]
    timings["load_s"] = time.perf_counter() - start

    tick = time.perf_counter()
    clean = predict_grey(model, processor, data.pixels, batch_size=batch_size, with_embeddings=True,
                         autocast_dtype=autocast_dtype)
    overall = bootstrap_intervals(clean.probabilities, labels, label_names, patient_ids=patients, seed=seed,
                                  num_resamples=num_resamples)
    groups = group_metrics(clean.probabilities, labels, label_names, sources, patients, seed=seed,
                           num_resamples=num_resamples)
    timings["clean_s"] = time.perf_counter() - tick

    tick = time.perf_counter()
    perturbation_results = {}
    for perturbation in perturbations if perturbations is not None else default_perturbations():
        predicted = predict_grey(model, processor, data.pixels, perturbation.apply, batch_size=batch_size,
                                 autocast_dtype=autocast_dtype).predicted
        perturbation_results[perturbation.name] = {
            "description": perturbation.description,
            "per_source": agreement_by_source(clean.predicted, predicted, labels, sources, agreement_threshold),
        }
        logger.info("perturbation %s done", perturbation.name)
    timings["perturbations_s"] = time.perf_counter() - tick

    tick = time.perf_counter()
    probe = source_probe(clean.embeddings, sources, patients, num_folds=num_folds, seed=seed)
    within = within_class_source_probes(clean.embeddings, labels, sources, patients, label_names,
                                        num_folds=num_folds, seed=seed)
    timings["probe_s"] = time.perf_counter() - tick
    confounding = confounding_table(labels, sources, label_names)
    timings["total_s"] = time.perf_counter() - start

    audit = {
        "model": str(model_path), "model_type": str(model.config.model_type), "dataset": str(dataset),
        "split": split, "seed": int(seed), "image_size": int(image_size), "num_images": int(len(labels)),
        "precision": "bf16" if autocast_dtype is torch.bfloat16 else "fp32",
        "label_names": list(label_names), "agreement_threshold": float(agreement_threshold),
        "preprocessing": GreyPreprocessing.from_processor(processor).to_dict(),
        "embedding": {"dim": int(clean.embeddings.shape[1]), "kind": embedding_kind(model)},
        "overall": overall, "groups": groups, "perturbations": perturbation_results,
        "source_probe": probe, "within_class_source_probes": within, "confounding": confounding,
        "timings": {key: round(value, 2) for key, value in timings.items()}, "not_covered": NOT_COVERED,
    }
    audit["flags"] = audit_flags(audit)
    target = Path(output_dir) if output_dir is not None else Path(model_path)
    return AuditResult(audit, target, write_audit_report(audit, target))


def audit_flags(audit: dict[str, Any]) -> list[str]:
    """One line per finding: confounded classes, perturbations under the agreement threshold, a high probe AUC."""
    flags = [f"confounding: {warning}" for warning in audit["confounding"]["warnings"]]
    for name, result in audit["perturbations"].items():
        for source, row in result["per_source"].items():
            if row["flagged"] and source != "all":
                flags.append(f"perturbation: {name} changes {100 * (1 - row['agreement']):.1f} % of the predictions "
                             f"on source '{source}' (agreement {row['agreement']:.3f} < "
                             f"{audit['agreement_threshold']:.2f})")
    probe = audit["source_probe"]
    if probe["high"]:
        flags.append(f"source probe: the source is predictable from the model's features (AUC {probe['auc']:.3f})")
    for name, result in audit["within_class_source_probes"].items():
        if result["high"]:
            flags.append(f"source probe within class '{name}': AUC {result['auc']:.3f}")
    return flags


def _load_split(dataset: str, split: str, label_names: list[str], image_size: int) -> CachedImageDataset:
    datasets = load_radiograph_dataset(dataset, class_names=label_names)
    if split not in datasets:
        raise ValueError(f"split {split!r} not in {dataset}; available: {list(datasets)}")
    return CachedImageDataset.from_hf_dataset(datasets[split], size=image_size)


def summary_rows(audit: dict[str, Any]) -> list[dict[str, Any]]:
    """Flat rows (perturbation, source, agreement, accuracy, flagged) for printing or a DataFrame."""
    return [{"perturbation": name, "source": source, **row}
            for name, result in audit["perturbations"].items() for source, row in result["per_source"].items()]


__all__ = ["NOT_COVERED", "AuditResult", "audit_flags", "run_audit", "summary_rows"]
