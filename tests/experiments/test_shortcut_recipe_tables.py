"""scripts/shortcut_recipe_tables.py on seed folders in the layout scripts/measure_shortcut_recipe.sh writes."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "shortcut_recipe_tables.py"
SOURCES = ("armiro", "kermany", "nih")


@pytest.fixture(scope="module")
def tables():
    spec = importlib.util.spec_from_file_location("shortcut_recipe_tables", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def entry(estimate: float) -> dict:
    return {"estimate": estimate, "low": estimate - 0.02, "high": estimate + 0.02}


def write_model(folder: Path, model: str, seed: int, macro_f1: float, agreement: dict[str, float]) -> None:
    (folder / model).mkdir(parents=True)
    metrics = {"intervals": {"overall": {"accuracy": entry(macro_f1 + 0.03), "macro_f1": entry(macro_f1)},
                             "per_source": {s: {"accuracy": entry(0.8)} for s in SOURCES}}}
    (folder / model / "metrics.json").write_text(json.dumps(metrics))
    (folder / model / "training_args.json").write_text(json.dumps({"training": {"seed": seed}}))
    (folder / f"audit_{model}").mkdir()
    per_source = {s: {"agreement": agreement[s]} for s in SOURCES} | {"all": {"agreement": 0.9}}
    audit = {"perturbations": {"hist_equalise": {"per_source": per_source}, "clahe": {"per_source": per_source}},
             "source_probe": {"auc": 0.97}}
    (folder / f"audit_{model}" / "audit.json").write_text(json.dumps(audit))


def student_folders(root: Path, name: str, macro_f1s: list[float], nih_agreement: float) -> list[Path]:
    folders = []
    for seed, macro_f1 in enumerate(macro_f1s):
        folder = root / name / f"s{seed}"
        write_model(folder, "distill", seed, macro_f1, {"armiro": 0.99, "kermany": 0.97, "nih": nih_agreement})
        folders.append(folder)
    return folders


def test_students_alone_need_no_teacher_or_loso_and_get_the_bar_verdicts(tables, tmp_path):
    before = student_folders(tmp_path, "before", [0.74, 0.76], nih_agreement=0.90)
    after = student_folders(tmp_path, "after", [0.70, 0.72], nih_agreement=0.96)
    text = tables.report({"before": before, "after": after}, ["distill"])
    assert "teacher" not in text.lower() and "Leave-one-source-out" not in text
    assert ("| clahe | 0.990 [0.990] → 0.990 [0.990] | 0.970 [0.970] → 0.970 [0.970] "
            "| **0.900 [0.900]** → 0.960 [0.960] |") in text
    assert "after: mean agreement over the 6 cells 0.973, 6 cells ≥ 0.95, lowest 0.960 (meets the bar)" in text
    assert "mean macro-F1 0.710 (-0.040 vs before; outside 0.01)" in text
    assert "| after | 1 | 0.750 (0.730–0.770) | 0.720 (0.700–0.740) |" in text


def test_the_teacher_tables_still_need_the_teacher_folders(tables, tmp_path):
    before = student_folders(tmp_path, "before", [0.74], nih_agreement=0.90)
    with pytest.raises(FileNotFoundError, match="audit_teacher"):
        tables.main(["--before", str(before[0]), "--after", str(before[0])])
