"""The Space as `hf-deitcxr push --repo_type space` uploads it (hf_deitcxr/space_bundle.py): the staged copy with the
package vendored, its ids filled in, its pinned requirements, and that copy running on its own."""

from __future__ import annotations

import ast
import hashlib
import os
import re
import socket
import subprocess
import sys
import time
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from huggingface_hub import metadata_load
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from hf_deitcxr.hub import PushArguments, PushRefused, push
from hf_deitcxr.space_bundle import PLACEHOLDER, SpaceIds, find_placeholders, stage_space
from tests.helpers.fake_hub import FAKE_TOKEN, FakeHub, log_in_with_fake_token

ROOT = Path(__file__).resolve().parents[1]
SPACE = ROOT / "space"
IDS = SpaceIds("someone/deitcxr-space", "someone/deitcxr-tiny-distilled", "someone/densenet-cxr")


@pytest.fixture
def logged_in(monkeypatch, tmp_path):
    log_in_with_fake_token(monkeypatch, tmp_path)


@pytest.fixture(scope="module")
def staged(tmp_path_factory) -> Path:
    return stage_space(SPACE, tmp_path_factory.mktemp("staged") / "space", IDS)


def tree_digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


# ---- the push ------------------------------------------------------------------------------------------------------
def test_space_push_uploads_the_app_pinned_requirements_and_the_vendored_package(logged_in, tmp_path):
    before = tree_digest(SPACE)
    args = PushArguments(folder=str(SPACE), repo_id=IDS.space_id, repo_type="space", space_model_id=IDS.model_id,
                         space_teacher_id=IDS.teacher_id)
    with FakeHub(FAKE_TOKEN) as hub:
        push(args, endpoint=hub.url)
    assert hub.unexpected == []
    assert tree_digest(SPACE) == before  # the user's folder is left as it was
    paths = hub.committed_paths()
    assert {"app.py", "mammo_tab.py", "requirements.txt", "README.md", "hf_deitcxr/__init__.py",
            "hf_deitcxr/serving/predictor.py", "hf_deitcxr/model_card_template.md",
            "hf_deitcxr/serving/radiograph_gate.safetensors", "hf_deitcxr/serving/radiograph_layout.npz"} <= paths
    assert not [p for p in paths if "__pycache__" in p or p.endswith(".pyc") or "sample_data" in p]
    assert [(key, value["key"], value["value"]) for key, value in hub.variables] == [
        ("space/someone/deitcxr-space", "MODEL_ID", IDS.model_id),
        ("space/someone/deitcxr-space", "TEACHER_ID", IDS.teacher_id)]
    (commit,) = hub.commits
    readme = commit.files["README.md"].decode()
    (tmp_path / "README.md").write_text(readme)
    assert metadata_load(tmp_path / "README.md")["sdk"] == "gradio"
    assert f'Client("{IDS.space_id}")' in readme and IDS.model_id in readme
    assert f"spaces/{IDS.space_id}/tree/main/hf_deitcxr" in readme
    for path in ("README.md", "requirements.txt", "app.py", "mammo_tab.py"):
        assert not PLACEHOLDER.search(commit.files[path].decode()), path
    assert b"git+" not in commit.files["requirements.txt"]


def test_push_is_refused_while_a_placeholder_would_be_uploaded(logged_in):
    # no --space_model_id: the Settings table's example model id would stay a placeholder
    args = PushArguments(folder=str(SPACE), repo_id=IDS.space_id, repo_type="space")
    with FakeHub(FAKE_TOKEN) as hub:
        with pytest.raises(PushRefused, match=r"README\.md:\d+: .*OWNER/deitcxr-tiny-distilled"):
            push(args, endpoint=hub.url)
    assert hub.requests == []


def test_unknown_placeholder_in_any_space_text_file_is_refused(tmp_path):
    space = tmp_path / "space"
    space.mkdir()
    (space / "app.py").write_text('"""Hub ids are NAME or OWNER/NAME."""\n')  # the notation, not a placeholder
    (space / "README.md").write_text("---\nsdk: gradio\n---\nCode: https://github.com/OWNER/elsewhere\n")
    (space / "notes.txt").write_text("ask OWNER\n")
    with pytest.raises(ValueError, match=r"README\.md:4: .*\n  notes\.txt:1: ask OWNER$"):
        stage_space(space, tmp_path / "staged", IDS)


def test_staging_refuses_a_non_empty_folder_and_a_space_that_carries_the_package(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        stage_space(SPACE, tmp_path / "full", IDS)
    space = tmp_path / "space"
    space.mkdir()
    (space / "app.py").write_text("")
    (space / "hf_deitcxr").mkdir()  # an old vendored copy would be uploaded beside (or under) the fresh one
    with pytest.raises(FileExistsError, match="vendors the package there itself"):
        stage_space(space, tmp_path / "staged", IDS)


def test_dry_run_keeps_the_stage_dir_and_lists_the_vendored_files(tmp_path, capsys):
    from hf_deitcxr.cli import main

    stage = tmp_path / "stage"
    assert main(["push", str(SPACE), "--repo_type", "space", "--repo_id", IDS.space_id, "--space_model_id",
                 IDS.model_id, "--stage_dir", str(stage), "--dry_run"]) == 0
    listed = [line.strip()[2:].split(" ")[0] for line in capsys.readouterr().out.splitlines()
              if line.startswith("  + ")]
    assert "hf_deitcxr/serving/radiograph_gate.safetensors" in listed and "app.py" in listed
    assert (stage / "hf_deitcxr" / "__init__.py").is_file() and find_placeholders(stage) == []


# ---- the pinned requirements ---------------------------------------------------------------------------------------
def pins(requirements: str) -> dict[str, str]:
    """name -> pinned version; refuses anything but `name==version` and pip options."""
    found = {}
    for line in (line.split("#", 1)[0].strip() for line in requirements.splitlines()):
        if not line or line.startswith("--extra-index-url "):
            continue
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==" and not requirement.url and not requirement.extras, line
        found[canonicalize_name(requirement.name)] = specifier.version
    return found


def served_imports(staged: Path) -> set[str]:
    """Top-level third-party modules imported (at any depth, lazy imports included) by app.py, mammo_tab.py and the
    vendored package modules they reach."""
    queue, seen, third_party = [staged / "app.py", staged / "mammo_tab.py"], set(), set()
    while queue:
        path = queue.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in module_imports(path, staged):
            top = module.split(".")[0]
            if top == "hf_deitcxr":
                queue += module_files(staged, module)
            elif top not in sys.stdlib_module_names and top != "__future__":
                third_party.add(top)
    return third_party


def module_imports(path: Path, root: Path) -> list[str]:
    parts = path.relative_to(root).with_suffix("").parts
    package = list(parts if parts[-1] == "__init__" else parts[:-1])
    package = [p for p in package if p != "__init__"]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            found += [target] + [f"{target}.{alias.name}" for alias in node.names]
    return found


def module_files(root: Path, module: str) -> list[Path]:
    """The files of `module` and of the packages above it (importing a.b.c runs a/__init__ and a/b/__init__)."""
    parts, files = module.split("."), []
    for depth in range(1, len(parts) + 1):
        base = root.joinpath(*parts[:depth])
        files += [p for p in (base / "__init__.py", base.with_suffix(".py")) if p.is_file()]
    return files


def missing_pins(staged: Path, requirements: str) -> list[str]:
    distributions = packages_distributions()
    pinned = pins(requirements)
    return sorted(f"{module} ({', '.join(distributions.get(module, ['?']))})" for module in served_imports(staged)
                  if not {canonicalize_name(d) for d in distributions.get(module, [module])} & set(pinned))


def test_every_module_the_space_imports_is_pinned(staged):
    requirements = (staged / "requirements.txt").read_text()
    assert missing_pins(staged, requirements) == []
    # the check can fail: drop kornia (imported by the image processor only) and it is reported
    assert missing_pins(staged, re.sub(r"(?m)^kornia==.*$", "", requirements)) == ["kornia (kornia)"]


def test_pins_lie_in_pyproject_ranges_and_gradio_matches_the_sdk_version():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    allowed = [Requirement(r) for r in pyproject["dependencies"] + pyproject["optional-dependencies"]["space"]
               + pyproject["optional-dependencies"]["dicom"]]
    pinned = pins((SPACE / "requirements.txt").read_text())
    outside = [f"{r.name}=={pinned[canonicalize_name(r.name)]} not in {r.specifier}" for r in allowed
               if canonicalize_name(r.name) in pinned and not r.specifier.contains(pinned[canonicalize_name(r.name)])]
    assert outside == []
    card = metadata_load(SPACE / "README.md")
    assert pinned["gradio"] == str(card["sdk_version"])
    assert {"torch", "transformers", "gradio", "pydicom", "pylibjpeg-libjpeg"} <= set(pinned)
    text = (SPACE / "requirements.txt").read_text()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in text and "hf_deitcxr" not in pinned


# ---- the staged folder runs on its own -----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_staged_app_runs_with_the_vendored_package(tmp_path):
    from gradio_client import Client, handle_file

    from tests.helpers.serving_models import RADIOGRAPHS, save_tiny_models

    staged = stage_space(SPACE, tmp_path / "staged", IDS)
    student, _ = save_tiny_models(tmp_path / "models")
    marker = "VENDORED_PACKAGE_FILE="
    init = staged / "hf_deitcxr" / "__init__.py"  # says which copy the app's `import hf_deitcxr` ran
    init.write_text(init.read_text() + f"\nprint({marker!r} + __file__, flush=True)\n")
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(MODEL_ID=str(student), PRECISION="fp32", GRADIO_SERVER_NAME="127.0.0.1",
               GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1",
               OMP_NUM_THREADS="1")
    log = tmp_path / "app.log"
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "app.py"], cwd=staged, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 240
        while "Running on local URL" not in log.read_text():
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        student_label, _, _, status = Client(url, verbose=False).predict(handle_file(str(RADIOGRAPHS[0])),
                                                                         api_name="/predict")
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert {c["label"] for c in student_label["confidences"]} and status
    assert f"{marker}{init.resolve()}" in log.read_text()  # imported FROM THE STAGED COPY, not the checkout
