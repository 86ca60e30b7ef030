"""The tables of the real-data mammography benchmark from its result rows: AUC per (method, score) over seeds with
patient-clustered bootstrap 95 % intervals (`metrics.intervals.bootstrap_intervals`), also on the breasts that have
both views, and the paired multi-view minus late-fusion differences."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..metrics.intervals import bootstrap_intervals

# (score key of a row, what the table calls it); a single-view run's "mean" IS the late fusion of its views
SCORE_NAMES = {"view": "crop (single view)", "max": "breast: max over views", "mean": "breast: late fusion (mean)",
               "multi_view": "breast: multi-view model"}


def scored_arrays(row: dict[str, Any], key: str, two_view_only: bool = False) -> tuple[np.ndarray, ...] | None:
    """(scores, labels, patient ids) of one score of a row; None when the row has no such score."""
    if key == "view":
        if "view_scores" not in row or two_view_only:
            return None
        return np.asarray(row["view_scores"]), np.asarray(row["view_labels"]), np.asarray(row["view_patients"])
    if key not in row.get("exam_scores", {}):
        return None
    keep = np.asarray(row["exam_num_views"]) >= (2 if two_view_only else 1)
    return (np.asarray(row["exam_scores"][key])[keep], np.asarray(row["exam_labels"])[keep],
            np.asarray(row["exam_patients"])[keep])


def auc_with_interval(scores: np.ndarray, labels: np.ndarray, patients: np.ndarray, label_names: Sequence[str],
                      num_resamples: int) -> dict[str, float | None]:
    """AUC of P(malignant) and its 95 % interval, resampling patients."""
    probabilities = np.stack([1.0 - scores, scores], axis=1)
    intervals = bootstrap_intervals(probabilities, labels, label_names, patient_ids=patients.tolist(),
                                    num_resamples=num_resamples)
    entry = intervals["macro_auc"]
    return {"auc": entry["estimate"], "low": entry["low"], "high": entry["high"], "n": int(len(labels)),
            "patients": int(intervals["num_clusters"])}


def summarise(rows: Sequence[dict[str, Any]], label_names: Sequence[str], num_resamples: int = 2000,
              reference: str | None = None) -> dict[str, Any]:
    """Per method and score: every seed's AUC and interval (all breasts / crops, and two-view breasts), their mean
    and sd; and, with a `reference` single-view method, the paired multi-view minus its late fusion and max."""
    table: dict[str, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: (r["method"], r["seed"])):
        for key in SCORE_NAMES:
            for subset, two_view in (("all", False), ("two_view", True)):
                arrays = scored_arrays(row, key, two_view)
                if arrays is None:
                    continue
                entry = table.setdefault(f"{row['method']}|{key}", {"method": row["method"], "score": key,
                                                                     "all": {}, "two_view": {}, "wall_s": {}})
                entry[subset][str(row["seed"])] = auc_with_interval(*arrays, label_names, num_resamples)
                entry["wall_s"][str(row["seed"])] = row["wall_s"]
    for entry in table.values():
        for subset in ("all", "two_view"):
            entry[f"{subset}_mean"], entry[f"{subset}_sd"] = mean_sd([v["auc"] for v in entry[subset].values()])
    return {"scores": table, "multi_view_gains": multi_view_gains(table, reference)}


def multi_view_gains(table: dict[str, dict[str, Any]], reference: str | None) -> dict[str, Any]:
    """multi_view AUC minus the reference model's late fusion / max, per seed both ran (paired), on each subset."""
    multi = table.get("multi_view|multi_view")
    if multi is None or reference is None:
        return {}
    gains: dict[str, Any] = {"reference": reference}
    for key in ("mean", "max"):
        baseline = table.get(f"{reference}|{key}")
        if baseline is None:
            continue
        for subset in ("all", "two_view"):
            seeds = sorted(set(multi[subset]) & set(baseline[subset]), key=int)
            diffs = [_difference(multi[subset][s]["auc"], baseline[subset][s]["auc"]) for s in seeds]
            mean, sd = mean_sd(diffs)
            gains[f"{key}|{subset}"] = {"per_seed": dict(zip(seeds, diffs, strict=True)), "mean": mean, "sd": sd}
    return gains


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def mean_sd(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    present = [v for v in values if v is not None]
    if not present:
        return None, None
    return statistics.mean(present), (statistics.stdev(present) if len(present) > 1 else None)


def _number(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _mean_cell(mean: float | None, sd: float | None, count: int, signed: bool = False) -> str:
    if sd is None:
        return f"{_number(mean, signed)} (1 seed)" if count == 1 else _number(mean, signed)
    return f"{_number(mean, signed)} ± {sd:.3f} ({count} seeds)"


def _seed_cells(per_seed: dict[str, dict[str, Any]]) -> str:
    return "; ".join(f"s{seed}: {_number(v['auc'])} [{_number(v['low'])}, {_number(v['high'])}]"
                     for seed, v in sorted(per_seed.items(), key=lambda item: int(item[0])))


def markdown(summary: dict[str, Any], header: str, not_run: Sequence[str] = ()) -> str:
    """benchmark.md: the AUC table (mean ± sd over seeds, each seed's 95 % interval), the gains, what did not run."""
    lines = [header, "",
             "| method | score | validation AUC, mean ± sd | per seed: AUC [95 % CI, patient bootstrap] | "
             "two-view breasts: AUC | n (patients) | wall s/run |",
             "|---|---|---|---|---|---|---|"]
    for entry in summary["scores"].values():
        first = next(iter(entry["all"].values()))
        walls = list(entry["wall_s"].values())
        lines.append(
            f"| {entry['method']} | {SCORE_NAMES[entry['score']]} | "
            f"{_mean_cell(entry['all_mean'], entry['all_sd'], len(entry['all']))} | {_seed_cells(entry['all'])} | "
            f"{_mean_cell(entry['two_view_mean'], entry['two_view_sd'], len(entry['two_view']))} | "
            f"{first['n']} ({first['patients']}) | {statistics.mean(walls):.0f} |")
    gains = summary["multi_view_gains"]
    if gains:
        lines += ["", f"Multi-view minus `{gains['reference']}` (paired by seed; the goal is >= +0.03 over late "
                  "fusion):", "", "| baseline | breasts | mean ± sd | per seed |", "|---|---|---|---|"]
        for key, value in gains.items():
            if key == "reference":
                continue
            score, subset = key.split("|")
            per_seed = ", ".join(f"s{s}: {_number(d, signed=True)}" for s, d in value["per_seed"].items())
            lines.append(f"| {SCORE_NAMES[score]} | {'two-view only' if subset == 'two_view' else 'all'} | "
                         f"{_mean_cell(value['mean'], value['sd'], len(value['per_seed']), signed=True)} | "
                         f"{per_seed} |")
    if not_run:
        lines += ["", "Not run: " + ", ".join(not_run)]
    return "\n".join(lines) + "\n"


__all__ = ["SCORE_NAMES", "auc_with_interval", "markdown", "mean_sd", "multi_view_gains", "scored_arrays",
           "summarise"]
