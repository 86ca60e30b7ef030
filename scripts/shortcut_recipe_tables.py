"""Before/after tables of two training recipes over seeds, from `scripts/measure_shortcut_recipe.sh` folders.

Each folder holds one seed: `teacher/`, `distill/` (metrics.json), `audit_teacher/`, `audit_distill/` (audit.json)
and `loso/` (loso.json); with `--models distill`, only `distill/` and `audit_distill/`. Prints markdown: perturbation
agreement per source (mean over seeds, the worst seed in brackets), in-distribution validation metrics per seed with
their 95 % intervals, leave-one-source-out accuracy per seed (with the teacher), and each recipe's verdict against the
issue's bar (agreement >= 0.95 on every source; in-distribution macro-F1 not more than 0.01 below the first recipe's).

    python scripts/shortcut_recipe_tables.py --before runs/before/s0 runs/before/s1 runs/before/s2 \
        --after runs/after/s0 runs/after/s1 runs/after/s2
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hf_deitcxr.metrics.intervals import format_entry, format_interval

AGREEMENT_BAR = 0.95
MACRO_F1_TOLERANCE = 0.01
MODELS = {"teacher": "teacher (DenseNet-121)", "distill": "student (DeiT-tiny, distilled)"}


def read(folder: Path, name: str) -> dict:
    path = folder / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run scripts/measure_shortcut_recipe.sh for that seed first")
    return json.loads(path.read_text())


def agreement_table(recipes: dict[str, list[Path]], model: str) -> tuple[str, dict[str, list[float]]]:
    """Rows: perturbations; cells: 'before → after' mean agreement per source (worst seed). Also each recipe's
    per-source mean agreements (every perturbation x source cell)."""
    audits = {name: [read(folder, f"audit_{model}/audit.json") for folder in folders]
              for name, folders in recipes.items()}
    first = next(iter(audits.values()))[0]
    sources = sorted(s for s in first["perturbations"]["hist_equalise"]["per_source"] if s != "all")
    header = "| perturbation | " + " | ".join(sources) + " |"
    lines = [header, "|---|" + "---:|" * len(sources)]
    cell_means: dict[str, list[float]] = {name: [] for name in audits}
    for perturbation in first["perturbations"]:
        cells = []
        for source in sources:
            parts = []
            for name, runs in audits.items():
                values = np.array([run["perturbations"][perturbation]["per_source"][source]["agreement"]
                                   for run in runs])
                cell_means[name].append(float(values.mean()))
                text = f"{values.mean():.3f} [{values.min():.3f}]"
                parts.append(f"**{text}**" if values.mean() < AGREEMENT_BAR else text)
            cells.append(" → ".join(parts))
        lines.append(f"| {perturbation} | " + " | ".join(cells) + " |")
    return "\n".join(lines), cell_means


def in_distribution_table(recipes: dict[str, list[Path]], model: str) -> tuple[str, dict[str, float]]:
    lines = ["| recipe | seed | accuracy (95 % CI) | macro-F1 (95 % CI) | " + "accuracy armiro | accuracy kermany | "
             "accuracy nih |", "|---|---:|---|---|---|---|---|"]
    mean_f1 = {}
    for name, folders in recipes.items():
        scores = []
        for folder in folders:
            metrics = read(folder, f"{model}/metrics.json")
            seed = read(folder, f"{model}/training_args.json")["training"]["seed"]
            overall, per_source = metrics["intervals"]["overall"], metrics["intervals"]["per_source"]
            scores.append(overall["macro_f1"]["estimate"])
            source_cells = [format_entry(per_source[s]["accuracy"]) if s in per_source else "n/a"
                            for s in ("armiro", "kermany", "nih")]
            cells = [str(seed), format_entry(overall["accuracy"]), format_entry(overall["macro_f1"]), *source_cells]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        mean_f1[name] = float(np.mean(scores))
        lines.append(f"| {name} | mean | | {mean_f1[name]:.3f} | | | |")
    return "\n".join(lines), mean_f1


def loso_table(recipes: dict[str, list[Path]]) -> str:
    lines = ["| recipe | seed | held-out source | trained with it: acc (CI) | trained without it: acc (CI) | "
             "without it: macro-F1 |", "|---|---:|---|---|---|---|"]
    means = []
    for name, folders in recipes.items():
        held_out: dict[str, list[tuple[float, float]]] = {}
        for folder in folders:
            result = read(folder, "loso/loso.json")
            for row in result["rows"]:
                with_, without = row["with"]["heldout"], row["without"]["heldout"]
                lines.append(f"| {name} | {result['arguments']['seed']} | {row['heldout_source']} | "
                             f"{_accuracy(with_)} | {_accuracy(without)} | {without['macro_f1']:.3f} |")
                held_out.setdefault(row["heldout_source"], []).append((with_["accuracy"], without["accuracy"]))
        means += [f"- {name}, {source} held out: mean accuracy trained with it {np.mean([w for w, _ in pairs]):.3f}, "
                  f"without it {np.mean([o for _, o in pairs]):.3f} ({len(pairs)} seeds)"
                  for source, pairs in sorted(held_out.items())]
    return "\n".join(lines + [""] + means)


def _accuracy(entry: dict) -> str:
    return format_interval(entry["accuracy"], entry["accuracy_ci"])


def probe_line(recipes: dict[str, list[Path]], model: str) -> str:
    parts = []
    for name, folders in recipes.items():
        aucs = [read(folder, f"audit_{model}/audit.json")["source_probe"]["auc"] for folder in folders]
        parts.append(f"{name} " + ", ".join(f"{auc:.3f}" for auc in aucs))
    return "Source-probe AUC per seed (all images): " + "; ".join(parts) + "."


def report(recipes: dict[str, list[Path]], models: Sequence[str] = tuple(MODELS)) -> str:
    """The tables of `models` (a subset of MODELS' keys); leave-one-source-out only with the teacher, whose runs it
    reports: a comparison of students that share their teachers needs neither."""
    names = list(recipes)
    out = [f"Recipes: {' → '.join(names)}; seeds per recipe: "
           + ", ".join(f"{name} {len(folders)}" for name, folders in recipes.items()) + "."]
    for model in models:
        title = MODELS[model]
        agreement, cell_means = agreement_table(recipes, model)
        in_distribution, mean_f1 = in_distribution_table(recipes, model)
        out += ["", f"### {title}: perturbation agreement per source, mean over seeds [worst seed]"
                f" ({' → '.join(names)}; bold: mean below {AGREEMENT_BAR})", "", agreement, "",
                f"### {title}: in-distribution validation metrics", "", in_distribution, "",
                probe_line(recipes, model), ""]
        for name in names:
            f1_gap = mean_f1[name] - mean_f1[names[0]]
            cells = np.array(cell_means[name])
            out.append(f"- {title}, {name}: mean agreement over the {len(cells)} cells {cells.mean():.3f}, "
                       f"{int((cells >= AGREEMENT_BAR).sum())} cells ≥ {AGREEMENT_BAR}, lowest {cells.min():.3f} "
                       f"({'meets' if cells.min() >= AGREEMENT_BAR else 'misses'} the bar); mean macro-F1 "
                       f"{mean_f1[name]:.3f} ({f1_gap:+.3f} vs {names[0]}; "
                       f"{'within' if f1_gap >= -MACRO_F1_TOLERANCE else 'outside'} {MACRO_F1_TOLERANCE}).")
    if "teacher" in models:
        out += ["", "### Leave-one-source-out (teacher)", "", loso_table(recipes)]
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", nargs="+", type=Path, required=True, help="one folder per seed, first recipe")
    parser.add_argument("--after", nargs="+", type=Path, required=True, help="one folder per seed, second recipe")
    parser.add_argument("--names", nargs=2, default=["before", "after"], help="the two recipes' names")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS),
                        help="whose tables (distill alone: students that share their teachers; no LOSO then)")
    args = parser.parse_args(argv)
    print(report({args.names[0]: args.before, args.names[1]: args.after}, args.models))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
