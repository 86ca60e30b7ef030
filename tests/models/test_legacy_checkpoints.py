"""Folders saved by an earlier layout of the package (tests/fixtures/legacy_checkpoints) still load, same logits.

Each family is loaded twice: through the registered classes after `import hf_deitcxr`, and with
`trust_remote_code=True` in a fresh process where `import hf_deitcxr` is made to fail (as on a machine without it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForImageClassification

import hf_deitcxr  # noqa: F401  (registers the Auto classes)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_checkpoints"
FAMILIES = {
    "deit_cxr": "DeiTCXRForImageClassificationWithTeacher",
    "densenet": "DenseNetForImageClassification",
    "multiview_mammo": "MultiViewMammoForExamClassification",
}

REMOTE_CODE_LOAD = r"""
import importlib.abc, json, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "hf_deitcxr" or name.startswith("hf_deitcxr."):
            raise ImportError("hf_deitcxr is not installed here")
sys.meta_path.insert(0, Refuse())
import torch
from transformers import AutoModelForImageClassification
folder = sys.argv[1]
model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True).eval()
expected = torch.load(folder + "/expected_logits.pt")
with torch.no_grad():
    logits = model(**expected["inputs"]).logits
print(json.dumps({"class": type(model).__name__, "module": type(model).__module__,
                  "max_diff": float((logits - expected["logits"]).abs().max())}))
"""


@pytest.mark.parametrize("family", list(FAMILIES))
def test_legacy_folder_loads_with_the_installed_package_to_the_same_logits(family):
    folder = FIXTURES / family
    model = AutoModelForImageClassification.from_pretrained(folder).eval()
    assert type(model).__name__ == FAMILIES[family]
    assert type(model).__module__.startswith("hf_deitcxr.")
    expected = torch.load(folder / "expected_logits.pt")
    with torch.no_grad():
        logits = model(**expected["inputs"]).logits
    torch.testing.assert_close(logits, expected["logits"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_legacy_folder_loads_by_remote_code_where_hf_deitcxr_cannot_be_imported(family, tmp_path):
    # A copy, so the remote-code cache never writes next to the committed fixture.
    folder = tmp_path / family
    subprocess.run(["cp", "-r", str(FIXTURES / family), str(folder)], check=True)
    env = {"HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", REMOTE_CODE_LOAD, str(folder)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["class"] == FAMILIES[family]
    assert result["module"].startswith("transformers_modules."), result["module"]
    assert result["max_diff"] <= 1e-6
