"""The audit written out: `audit.json`, `audit.md` (tables and flags), three PNGs, and the model card's short
'Shortcut audit' section."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..metrics.intervals import format_entry

AUDIT_JSON, AUDIT_MD = "audit.json", "audit.md"
PLOTS = ("audit_agreement.png", "audit_source_accuracy.png", "audit_confounding.png")


def write_audit_report(audit: dict[str, Any], output_dir: str | Path) -> list[Path]:
    """Write audit.json, audit.md and the PNGs into `output_dir`; returns the paths written."""
    target = Path(output_dir)
    target.mkdir(parents=True, exist_ok=True)
    (target / AUDIT_JSON).write_text(json.dumps(audit, indent=2, default=str) + "\n")
    (target / AUDIT_MD).write_text(audit_markdown(audit))
    plots = [target / name for name in PLOTS]
    plot_agreement(audit, plots[0])
    plot_source_accuracy(audit, plots[1])
    plot_confounding(audit, plots[2])
    return [target / AUDIT_JSON, target / AUDIT_MD, *plots]


def audit_markdown(audit: dict[str, Any]) -> str:
    """The full report: flags, confounding table, per-source metrics, perturbation agreement, source probe."""
    lines = [f"# Shortcut audit: `{Path(audit['model']).name}` on the {audit['split']} split",
             "", f"{audit['num_images']} images, seed {audit['seed']}, images perturbed at {audit['image_size']} px "
             f"8-bit grey, then the model's own image processor ({preprocessing_text(audit)}); forward in "
             f"{audit.get('precision', 'fp32')}.", "", "## Flags", ""]
    lines += [f"- {flag}" for flag in audit["flags"]] or ["- none"]
    lines += ["", "## Class x source counts", "", confounding_markdown(audit["confounding"]), "",
              "## Metrics per source and per (source, class), patient-clustered bootstrap 95 % intervals", "",
              group_metrics_markdown(audit["groups"]), "",
              f"## Perturbation probe: agreement with the unperturbed prediction (accuracy), flagged below "
              f"{audit['agreement_threshold']:.2f}", "", perturbation_markdown(audit["perturbations"]), "",
              "## Source probe", "", probe_markdown(audit), "", "## Not covered", "", f"- {audit['not_covered']}", ""]
    return "\n".join(lines)


def confounding_markdown(confounding: dict[str, Any]) -> str:
    sources = confounding["sources"]
    rows = ["| class | " + " | ".join(sources) + " |", "|---|" + "---:|" * len(sources)]
    rows += [f"| {c} | " + " | ".join(str(counts[s]) for s in sources) + " |"
             for c, counts in confounding["counts"].items()]
    rows += [""] + [f"**Warning:** {w}." for w in confounding["warnings"]]
    return "\n".join(rows)


def group_metrics_markdown(groups: dict[str, Any]) -> str:
    rows = ["| group | images | patients | accuracy | balanced accuracy | macro AUC |", "|---|---:|---:|---|---|---|"]
    for kind in ("per_source", "per_source_class"):
        for group, entry in groups[kind].items():
            rows.append(f"| {group} | {entry['num_images']} | {entry['num_patients']} | "
                        f"{format_entry(entry['accuracy'])} | {format_entry(entry['balanced_accuracy'])} | "
                        f"{format_entry(entry['macro_auc'])} |")
    return "\n".join(rows)


def perturbation_markdown(perturbations: dict[str, Any]) -> str:
    first = next(iter(perturbations.values()), None)
    if first is None:
        return "(no perturbations run)"
    groups = list(first["per_source"])
    rows = ["| perturbation | " + " | ".join(groups) + " |", "|---|" + "---|" * len(groups)]
    clean = " | ".join(f"– ({first['per_source'][g]['clean_accuracy']:.3f})" for g in groups)
    rows.append(f"| none (clean) | {clean} |")
    for name, result in perturbations.items():
        cells = []
        for g in groups:
            row = result["per_source"][g]
            mark = " **⚑**" if row["flagged"] else ""
            cells.append(f"{row['agreement']:.3f} ({row['accuracy']:.3f}){mark}")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def probe_markdown(audit: dict[str, Any]) -> str:
    probe = audit["source_probe"]
    lines = [f"Logistic regression on the pooled embedding ({audit['embedding']['kind']}, "
             f"{audit['embedding']['dim']} dims), {probe['num_folds']}-fold GroupKFold by patient; one-vs-rest macro "
             "AUC of the out-of-fold probabilities.", "", "| probe | images | AUC | per source |", "|---|---:|---|---|"]
    entries = [("all images", probe)] + [(f"within class {c}", r)
                                         for c, r in audit["within_class_source_probes"].items()]
    for title, result in entries:
        auc = "n/a" if result["auc"] is None else f"{result['auc']:.3f}"
        per = ", ".join(f"{s} {v:.3f}" for s, v in result["per_source_auc"].items())
        lines.append(f"| {title} | {result['num_images']} | {auc} | {per} |")
    return "\n".join(lines)


def preprocessing_text(audit: dict[str, Any]) -> str:
    """The model's grey preprocessing in words (audits written before the option have none recorded)."""
    preprocessing = audit.get("preprocessing") or {}
    steps = []
    if preprocessing.get("remove_border"):
        steps.append("border removal")
    if preprocessing.get("intensity_normalization", "none") != "none":
        steps.append(f"intensity normalisation `{preprocessing['intensity_normalization']}`")
    return ", ".join(steps) if steps else "resize only (stock)"


def shortcut_audit_section(audit: dict[str, Any]) -> str:
    """The model card's short 'Shortcut audit' section, from an audit.json."""
    probe = audit["source_probe"]
    auc = "n/a" if probe["auc"] is None else f"{probe['auc']:.3f}"
    flagged = sorted({name for name, result in audit["perturbations"].items()
                      for source, row in result["per_source"].items() if row["flagged"] and source != "all"})
    lines = ["## Shortcut audit", "",
             f"On the {audit['split']} split ({audit['num_images']} images; model preprocessing: "
             f"{preprocessing_text(audit)}; details in `audit.md`):"]
    lines += [f"- **Confounding:** {w}." for w in audit["confounding"]["warnings"]]
    lines.append(f"- **Source probe:** the image source is predicted from the model's features with "
                 f"cross-validated AUC {auc} (patient-grouped folds).")
    lines.append(f"- **Perturbations** under which predictions change on more than "
                 f"{100 * (1 - audit['agreement_threshold']):.0f} % of a source's images: "
                 + (", ".join(f"`{n}`" for n in flagged) if flagged else "none") + ".")
    lines.append(f"- Not covered: {audit['not_covered']}.")
    return "\n".join(lines) + "\n"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_agreement(audit: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    names = list(audit["perturbations"])
    groups = list(next(iter(audit["perturbations"].values()))["per_source"]) if names else ["all"]
    grid = np.array([[audit["perturbations"][n]["per_source"][g]["agreement"] for g in groups] for n in names])
    fig, ax = plt.subplots(figsize=(1.4 * len(groups) + 3, 0.4 * len(names) + 1.5))
    image = ax.imshow(grid if names else np.zeros((0, len(groups))), vmin=0.5, vmax=1.0, cmap="RdYlGn", aspect="auto")
    ax.set_xticks(range(len(groups)), groups)
    ax.set_yticks(range(len(names)), names)
    for (i, j), value in np.ndenumerate(grid):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(image, ax=ax, label="agreement with unperturbed prediction")
    _finish(plt, fig, ax, "Perturbation probe", path)


def _finish(plt, fig, ax, title: str, path: Path) -> None:
    """Title, tight layout, save at the report's resolution, close."""
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_source_accuracy(audit: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    cells = {**audit["groups"]["per_source"], **audit["groups"]["per_source_class"]}
    names = list(cells)
    estimates = [cells[n]["accuracy"]["estimate"] for n in names]
    low = [cells[n]["accuracy"]["low"] for n in names]
    high = [cells[n]["accuracy"]["high"] for n in names]
    errors = np.array([[e - lo if lo is not None else 0 for e, lo in zip(estimates, low, strict=True)],
                       [hi - e if hi is not None else 0 for e, hi in zip(estimates, high, strict=True)]])
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(names) + 1.5))
    ax.barh(range(len(names)), estimates, xerr=errors, color="tab:blue", capsize=3)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("accuracy (95 % patient bootstrap interval)")
    _finish(plt, fig, ax, "Per source and per (source, class)", path)


def plot_confounding(audit: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    confounding = audit["confounding"]
    classes, sources = list(confounding["counts"]), confounding["sources"]
    grid = np.array([[confounding["counts"][c][s] for s in sources] for c in classes])
    fig, ax = plt.subplots(figsize=(1.2 * len(sources) + 2.5, 0.6 * len(classes) + 1.5))
    ax.imshow(grid, cmap="Blues", aspect="auto")
    ax.set_xticks(range(len(sources)), sources)
    ax.set_yticks(range(len(classes)), classes)
    for (i, j), value in np.ndenumerate(grid):
        ax.text(j, i, str(value), ha="center", va="center", color="black" if value < grid.max() / 2 else "white")
    _finish(plt, fig, ax, "Images per class and source", path)


__all__ = ["AUDIT_JSON", "AUDIT_MD", "PLOTS", "audit_markdown", "shortcut_audit_section", "write_audit_report"]
