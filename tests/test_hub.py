"""`hf-deitcxr push` against a recording fake Hub on loopback (tests/fake_hub.py): what is created, committed, refused.

The real huggingface_hub client runs unchanged (create_repo, create_branch, upload_folder with hf_xet for the
safetensors/PNG files); only the server is a stand-in. The token is a fake value that must never leave the
Authorization header: not in stdout/stderr/logs, not in any file written, not in any request body.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import ModelCard, constants

from hf_deitcxr.cli import main
from hf_deitcxr.hub import PushArguments, PushRefused, plan_push, push
from tests.helpers.fake_hub import FAKE_TOKEN, FakeHub, log_in_with_fake_token
from tests.helpers.model_folder import save_tiny_model_folder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def logged_in(monkeypatch, tmp_path):
    log_in_with_fake_token(monkeypatch, tmp_path)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    return save_tiny_model_folder(tmp_path_factory.mktemp("saved"))


@pytest.fixture
def model_dir(saved_model, tmp_path):
    folder = Path(shutil.copytree(saved_model, tmp_path / "student"))
    # training leftovers that must not be published
    (folder / "training_args.bin").write_bytes(b"pickled TrainingArguments")
    (folder / "checkpoint-12").mkdir()
    (folder / "checkpoint-12" / "optimizer.pt").write_bytes(b"optimizer state")
    (folder / "runs").mkdir()
    (folder / "runs" / "events.out.tfevents").write_bytes(b"tensorboard")
    (folder / "eval-validation").mkdir()
    (folder / "eval-validation" / "metrics.json").write_text("{}")
    return folder


def dry_run_files(capsys, folder: Path, *extra: str) -> list[str]:
    assert main(["push", "--folder", str(folder), "--repo_id", "someone/deit-cxr", "--dry-run", *extra]) == 0
    out = capsys.readouterr().out
    assert "dry run: nothing was uploaded" in out
    return [line.strip()[2:].split(" ")[0] for line in out.splitlines() if line.startswith("  + ")]


def test_dry_run_then_push_commits_exactly_the_planned_files(model_dir, tmp_path, capsys, monkeypatch, logged_in):
    with FakeHub(FAKE_TOKEN) as hub:
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)  # a dry run must not call it
        planned = dry_run_files(capsys, model_dir, "--private", "--revision", "exp-1")
        assert hub.requests == []
        # Everything `save_tiny_model_folder` and `model_dir` wrote, less the training leftovers (training_args.bin,
        # checkpoint-12/, runs/), plus the model card the push writes.
        assert planned == [
            "README.md", "config.json", "configuration_deit_cxr.py", "confusion_matrix.png",
            "eval-validation/metrics.json", "metrics.json", "model.safetensors", "modeling_deit_cxr.py",
            "modeling_small_data_vit.py",
            "preprocessor_config.json", "reliability_diagram.png", "roc_curves.png", "trainer_state.json",
            "training_args.json",
        ]

        # The real push, as a user runs it: a new process, the endpoint and token from the standard variables.
        hf_home = tmp_path / "hf_home"
        env = {**os.environ, "HF_TOKEN": FAKE_TOKEN, "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0",
               "HF_HOME": str(hf_home), "HF_HUB_VERBOSITY": "debug", "HF_HUB_DISABLE_TELEMETRY": "1",
               "PYTHONPATH": str(ROOT)}
        result = subprocess.run(
            [sys.executable, "-m", "hf_deitcxr.cli", "push", "--folder", str(model_dir), "--repo_id",
             "someone/deit-cxr", "--private", "--revision", "exp-1", "--commit_message", "Student, 3 epochs"],
            env=env, capture_output=True, text=True, timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]

    assert hub.unexpected == []
    assert hub.repos == {"model/someone/deit-cxr": {"name": "deit-cxr", "organization": "someone",
                                                    "visibility": "private", "type": "model"}}
    assert hub.branches == [("model/someone/deit-cxr", "exp-1")]
    (commit,) = hub.commits
    assert (commit.revision, commit.summary) == ("exp-1", "Student, 3 epochs")
    assert sorted(hub.committed_paths()) == planned
    for path, content in commit.files.items():  # small text files: inline, byte for byte what is on disk
        assert content == (model_dir / path).read_bytes(), path
    # binary files went through Xet storage: the commit references them by the sha256 of the local file
    assert set(commit.lfs_files) == {"model.safetensors", "confusion_matrix.png", "roc_curves.png",
                                     "reliability_diagram.png"}
    for path, info in commit.lfs_files.items():
        data = (model_dir / path).read_bytes()
        assert info == {"oid": hashlib.sha256(data).hexdigest(), "size": len(data)}
    assert hub.xorb_bytes > 0 and hub.shards >= 1
    assert ModelCard(commit.files["README.md"].decode()).data.eval_results  # the refreshed card, with model-index

    # The token went only into Authorization headers of Hub API calls.
    output = result.stdout + result.stderr
    assert "Request" in result.stderr and FAKE_TOKEN not in output
    for request in hub.requests:
        leaked = request.body + str({k: v for k, v in request.headers.items() if k != "authorization"}).encode()
        assert FAKE_TOKEN.encode() not in leaked, request.path
        if request.path.startswith("/v"):  # the storage service only sees its own short-lived token
            assert FAKE_TOKEN not in request.headers.get("authorization", "")
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert written and not [path for path in written if FAKE_TOKEN.encode() in path.read_bytes()]


def write_space(folder: Path, readme: str = "---\ntitle: DeiT CXR\nsdk: gradio\napp_file: app.py\n---\n") -> Path:
    folder.mkdir()
    (folder / "app.py").write_text("import gradio as gr\n")
    (folder / "requirements.txt").write_text("hf_deitcxr\n")
    (folder / "README.md").write_text(readme)
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    return folder


def test_space_push_creates_a_gradio_space_and_sets_the_model(tmp_path, logged_in):
    space = write_space(tmp_path / "space")
    args = PushArguments(folder=str(space), repo_id="someone/deit-cxr-demo", repo_type="space",
                         space_model_id="someone/deit-cxr")
    with FakeHub(FAKE_TOKEN) as hub:
        push(args, endpoint=hub.url)
    assert hub.unexpected == []
    assert hub.repos["space/someone/deit-cxr-demo"]["sdk"] == "gradio"
    assert hub.variables == [("space/someone/deit-cxr-demo", {"key": "MODEL_ID", "value": "someone/deit-cxr",
                                                              "description": "Model repo the demo serves"})]
    # the folder's files (not its __pycache__/) and the package vendored beside them (tests/test_space_bundle.py)
    paths = hub.committed_paths()
    assert {path for path in paths if not path.startswith("hf_deitcxr/")} == {"app.py", "requirements.txt",
                                                                            "README.md"}
    assert "hf_deitcxr/__init__.py" in paths
    assert hub.branches == []  # main: no branch to create


def test_space_readme_without_gradio_sdk_is_refused(tmp_path):
    space = write_space(tmp_path / "space", readme="# My demo\n")
    with pytest.raises(PushRefused, match="sdk: gradio"):
        plan_push(space, "space")


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda f: (f / "config.json").unlink(), "no config.json"),
        (lambda f: (f / "model.safetensors").unlink(), "no safetensors weights"),
        (lambda f: (f / ".env").write_text("HF_TOKEN=x\n"), r"\.env \(file name of a secret"),
        (lambda f: (f / "token").write_text("x"), r"token \(file name of a secret"),
        (lambda f: (f / "notes.md").write_text("hf_" + "A1b2C3d4" * 4 + "zz\n"), r"notes\.md \(contains"),
        (lambda f: (f / "log.txt").write_text(f"token={FAKE_TOKEN}\n"), r"log\.txt \(contains"),  # the live token
        (lambda f: (f / "key.txt").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n"), r"key\.txt \(contains"),
        (lambda f: (f / "extra_weights.pt").write_bytes(b"\x80\x04"), r"extra_weights\.pt \(pickle"),
        (lambda f: (f / "modeling_deit_cxr.py").unlink(), r"AutoModelForImageClassification -> modeling_deit_cxr"),
        (lambda f: (f / "configuration_deit_cxr.py").unlink(), r"AutoConfig -> configuration_deit_cxr"),
        (lambda f: (f / "modeling_small_data_vit.py").unlink(), r"needs modeling_small_data_vit\.py"),  # imported
    ],
)
def test_unpublishable_folders_are_refused_before_any_request(model_dir, logged_in, breakage, message):
    breakage(model_dir)
    with FakeHub(FAKE_TOKEN) as hub:
        with pytest.raises(PushRefused, match=message):
            push(PushArguments(folder=str(model_dir), repo_id="someone/deit-cxr"), endpoint=hub.url)
    assert hub.requests == []


def test_link_to_a_file_outside_the_folder_is_refused(model_dir, tmp_path, logged_in):
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("harmless")
    (model_dir / "linked.txt").symlink_to(outside)
    with pytest.raises(PushRefused, match="outside the folder"):
        plan_push(model_dir)


def test_code_imported_by_the_remote_code_must_be_in_the_folder(model_dir):
    # modeling_deit_cxr.py imports .configuration_deit_cxr: even with an auto_map naming only the model class, the
    # configuration file must ship (transformers could not import the model code without it).
    config = json.loads((model_dir / "config.json").read_text())
    del config["auto_map"]["AutoConfig"]
    (model_dir / "config.json").write_text(json.dumps(config))
    (model_dir / "configuration_deit_cxr.py").unlink()
    with pytest.raises(PushRefused, match=r"modeling_deit_cxr\.\w+ needs configuration_deit_cxr\.py"):
        plan_push(model_dir)


def test_classic_lfs_path_uploads_the_same_bytes_when_xet_is_off(model_dir, monkeypatch, logged_in):
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # as HF_HUB_DISABLE_XET=1 / no hf_xet installed
    args = PushArguments(folder=str(model_dir), repo_id="someone/deit-cxr", model_card=False)
    with FakeHub(FAKE_TOKEN) as hub:
        push(args, endpoint=hub.url)
    assert hub.unexpected == [] and hub.xorb_bytes == 0
    (commit,) = hub.commits
    assert commit.revision == "main" and commit.summary == f"Upload {model_dir.name} with hf-deitcxr push"
    for path, info in commit.lfs_files.items():
        assert hub.lfs_objects[info["oid"]] == (model_dir / path).read_bytes(), path
    assert "model.safetensors" in commit.lfs_files and "README.md" not in hub.committed_paths()


def test_token_on_the_command_line_is_refused_without_echoing_it(model_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["push", "--folder", str(model_dir), "--repo_id", "someone/deit-cxr", "--token", FAKE_TOKEN])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert "never passed on the command line" in captured.err and FAKE_TOKEN not in captured.out + captured.err


def test_push_without_login_says_how_to_log_in(model_dir, monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no_token_here"))
    assert main(["push", "--folder", str(model_dir), "--repo_id", "someone/deit-cxr"]) == 2
    assert "hf auth login" in capsys.readouterr().err


def test_the_repository_space_folder_is_publishable():
    plan = plan_push(ROOT / "space", "space")
    assert {"app.py", "README.md", "requirements.txt"} <= set(plan.files)
    assert not [name for name in plan.files if "__pycache__" in name]
