"""Is the source a shortcut? How well it can be read from the model's features, and whether it is confounded with
the label in the data.

- `source_probe`: a logistic regression (sklearn) from the pooled embedding to the source, cross-validated with
  folds grouped by patient (`GroupKFold`: no patient in both a fit and its test fold); one-vs-rest macro AUC of the
  out-of-fold probabilities (plain AUC for two sources).
- `within_class_source_probes`: the same probe inside each class that comes from several sources, where the label
  cannot explain a high AUC.
- `confounding_table`: class x source image counts, with a warning for every class that comes from one source only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

DEFAULT_FOLDS = 5
# A source probe AUC at or above this is reported as "the features identify the source".
HIGH_PROBE_AUC = 0.9
# Sources with fewer images than this inside a class are left out of that class's probe.
MIN_IMAGES_PER_SOURCE = 10


def source_probe(
    embeddings: np.ndarray,
    sources: Sequence[str],
    patient_ids: Sequence[str],
    *,
    num_folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    regularisation: float = 1.0,
) -> dict[str, Any]:
    """Cross-validated AUC of predicting `sources` from `embeddings` (patient-grouped folds, seeded shuffle).

    Returns {"auc", "num_images", "num_patients", "num_folds", "sources", "per_source_auc", "high", "reason"};
    `auc` is None (with `reason`) when there are fewer than two sources or too few patients for two folds.
    """
    y = np.asarray([str(s) for s in sources])
    groups = np.asarray([str(p) for p in patient_ids])
    names = sorted(set(y.tolist()))
    num_patients = len(set(groups.tolist()))
    folds = min(num_folds, num_patients)
    result: dict[str, Any] = {"auc": None, "num_images": int(len(y)), "num_patients": int(num_patients),
                              "num_folds": int(folds), "sources": names, "per_source_auc": {}, "high": False,
                              "reason": None}
    if len(names) < 2 or folds < 2:
        result["reason"] = "needs two sources and two patients" if len(names) < 2 else "too few patients"
        return result
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=regularisation, max_iter=2000))
    cv = GroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    features = np.asarray(embeddings, dtype=np.float64)
    if any(len(set(y[train].tolist())) < len(names) for train, _ in cv.split(features, y, groups)):
        # a probe fitted without one source cannot score it (small data: a source with one or two patients)
        result["reason"] = "too few patients per source: a fold's training images lack a source"
        return result
    oof = cross_val_predict(probe, features, y, groups=groups, cv=cv, method="predict_proba")
    per_source = {name: float(roc_auc_score(y == name, oof[:, k])) for k, name in enumerate(names)}
    auc = per_source[names[1]] if len(names) == 2 else float(roc_auc_score(y, oof, multi_class="ovr",
                                                                           average="macro", labels=names))
    result.update(auc=auc, per_source_auc=per_source, high=bool(auc >= HIGH_PROBE_AUC))
    return result


def within_class_source_probes(
    embeddings: np.ndarray,
    labels: Sequence[int],
    sources: Sequence[str],
    patient_ids: Sequence[str],
    label_names: Sequence[str],
    *,
    num_folds: int = DEFAULT_FOLDS,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """`source_probe` inside each class holding >= 2 sources of `MIN_IMAGES_PER_SOURCE` images, keyed by class."""
    labels_arr, sources_arr = np.asarray(labels), np.asarray([str(s) for s in sources])
    patients = np.asarray([str(p) for p in patient_ids])
    out = {}
    for k, name in enumerate(label_names):
        in_class = labels_arr == k
        counts = Counter(sources_arr[in_class].tolist())
        kept = [s for s, n in counts.items() if n >= MIN_IMAGES_PER_SOURCE]
        rows = np.flatnonzero(in_class & np.isin(sources_arr, kept))
        if len(kept) >= 2:
            out[name] = source_probe(np.asarray(embeddings)[rows], sources_arr[rows], patients[rows],
                                     num_folds=num_folds, seed=seed)
    return out


def confounding_table(labels: Sequence[int], sources: Sequence[str], label_names: Sequence[str]) -> dict[str, Any]:
    """Image counts per class and source, and a warning for each class from a single source (and each source
    holding a single class) when the data has several sources.

    Returns {"sources", "counts": {class: {source: n}}, "single_source_classes": {class: source},
    "single_class_sources": {source: class}, "warnings": [str], "confounded": bool}.
    """
    names = [str(s) for s in sources]
    source_names = sorted(set(names))
    pairs = Counter(zip((label_names[int(k)] for k in labels), names, strict=True))
    counts = {c: {s: int(pairs.get((c, s), 0)) for s in source_names} for c in label_names}
    present = {c: [s for s in source_names if counts[c][s]] for c in label_names}
    single_source = {c: present[c][0] for c in label_names if len(present[c]) == 1 and len(source_names) > 1}
    holding = {s: [c for c in label_names if counts[c][s]] for s in source_names}
    single_class = {s: holding[s][0] for s in source_names if len(holding[s]) == 1 and len(label_names) > 1}
    warnings = [
        f"class '{c}' comes only from source '{s}': source cues alone can predict it, and no metric on this data "
        "can tell class evidence from source evidence for it" for c, s in single_source.items()
    ] + [f"source '{s}' holds only class '{c}'" for s, c in single_class.items()]
    return {"sources": source_names, "counts": counts, "single_source_classes": single_source,
            "single_class_sources": single_class, "warnings": warnings, "confounded": bool(single_source)}


__all__ = ["HIGH_PROBE_AUC", "confounding_table", "source_probe", "within_class_source_probes"]
