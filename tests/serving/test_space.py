"""The Gradio Space (space/app.py) served on loopback and called through gradio_client, as a user's client would."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers.dicom_files import write_dicom
from tests.helpers.serving_models import RADIOGRAPHS, colour_shapes, save_tiny_models
from tests.helpers.tiny_models import LABELS

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
import gradio as gr  # noqa: E402 - in the `test` extra
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

APP = Path(__file__).resolve().parents[2] / "space" / "app.py"


def load_app():
    spec = importlib.util.spec_from_file_location("space_app", APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def app_module():
    return load_app()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return save_tiny_models(tmp_path_factory.mktemp("space_models"))


@pytest.fixture(scope="module")
def client(app_module, models):
    demo = app_module.build_demo(str(models[0]), str(models[1]), precision="fp32")
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True)
    try:
        yield Client(demo.local_url, verbose=False)
    finally:
        demo.close()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """The same radiograph as grey PNG, grey JPEG, RGB PNG, RGB JPEG and DICOM, plus bad files."""
    root = tmp_path_factory.mktemp("inputs")
    grey = Image.open(RADIOGRAPHS[0])
    grey.save(root / "grey.png")
    grey.save(root / "grey.jpg", quality=95)
    grey.convert("RGB").save(root / "rgb.png")
    grey.convert("RGB").save(root / "rgb.jpg", quality=95)
    write_dicom(root / "radiograph.dcm", np.asarray(grey))
    colour_shapes().save(root / "drawing.png")
    (root / "garbage.png").write_bytes(np.random.default_rng(0).bytes(4096))
    return {path.name: path for path in root.iterdir()}


def call(client: Client, path: Path):
    return client.predict(handle_file(str(path)), api_name="/predict")


def probabilities(label_value: dict) -> dict[str, float]:
    return {item["label"]: item["confidence"] for item in label_value["confidences"]}


def test_api_exposes_one_predict_endpoint(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert "/predict" in endpoints
    assert len(endpoints["/predict"]["parameters"]) == 1
    assert len(endpoints["/predict"]["returns"]) == 4


@pytest.mark.parametrize("name", ["grey.png", "grey.jpg", "rgb.png", "rgb.jpg", "radiograph.dcm"])
def test_predicts_png_jpeg_dicom_grey_and_rgb(client, inputs, name):
    student, heatmap, teacher, status = call(client, inputs[name])
    student_probs = probabilities(student)
    assert set(student_probs) == set(LABELS)
    assert sum(student_probs.values()) == pytest.approx(1.0, abs=1e-4)
    assert student["label"] == max(student_probs, key=student_probs.get)
    overlay = np.asarray(Image.open(heatmap))
    assert overlay.shape == (224, 224, 3)  # the image's own size, coloured
    assert set(probabilities(teacher)) == set(LABELS)
    assert "not a medical device" in status and "Teacher:" in status
    assert ("DICOM (DX)" in status) == name.endswith(".dcm")


def test_lossless_formats_give_identical_predictions(client, inputs):
    """Grey PNG, RGB PNG (R = G = B) and an 8-bit DICOM hold the same pixels: the same probabilities."""
    reference = probabilities(call(client, inputs["grey.png"])[0])
    for name in ("rgb.png", "radiograph.dcm"):
        assert probabilities(call(client, inputs[name])[0]) == pytest.approx(reference, abs=1e-6)


def test_non_radiograph_is_refused_with_a_clear_message(client, inputs):
    with pytest.raises(AppError, match="does not look like a chest X-ray: it is a colour image"):
        call(client, inputs["drawing.png"])


def test_garbage_bytes_are_refused_and_the_server_keeps_answering(client, inputs):
    with pytest.raises(AppError, match=r"Could not read this file as an image: garbage\.png: not a recognised"):
        call(client, inputs["garbage.png"])
    with pytest.raises(AppError, match="does not look like a chest X-ray"):
        call(client, inputs["drawing.png"])
    student, *_ = call(client, inputs["grey.png"])  # still serving after bad input
    assert set(probabilities(student)) == set(LABELS)


def test_without_teacher_the_teacher_output_is_none(app_module, models, inputs):
    predictor = app_module.ChestXrayPredictor.from_pretrained(str(models[0]), precision="fp32")
    student, overlay, teacher, status = app_module.run_prediction(predictor, str(inputs["grey.png"]))
    assert teacher is None and "Teacher:" not in status
    assert set(student) == set(LABELS) and overlay.shape == (224, 224, 3)
    with pytest.raises(gr.Error, match="upload a chest X-ray first"):
        app_module.run_prediction(predictor, None)


def test_main_requires_model_id(app_module, monkeypatch):
    monkeypatch.delenv("MODEL_ID", raising=False)
    with pytest.raises(SystemExit, match="Set MODEL_ID"):
        app_module.main()


def test_model_id_is_a_folder_here_or_in_the_repository_or_a_hub_id(app_module, models, tmp_path, monkeypatch):
    """The quickstart prints `MODEL_ID=outputs/quickstart/distill`: it must also work from inside space/, and a
    wrong path must stop the app with what was looked for, not a Hub-client traceback."""
    monkeypatch.setattr(app_module, "REPO_ROOT", models[0].parent)
    monkeypatch.chdir(tmp_path)  # neither the repository root nor the models' folder
    assert app_module.resolve_model_id("student") == str(models[0].parent / "student")
    assert app_module.resolve_model_id(str(models[0])) == str(models[0])
    assert app_module.resolve_model_id("owner/name") == "owner/name"  # a Hub id: left to from_pretrained
    with pytest.raises(SystemExit, match=r"MODEL_ID=outputs/quickstart/distil: no such folder"):
        app_module.resolve_model_id("outputs/quickstart/distil")
    not_a_model = r"TEACHER_ID=.*not a saved model folder \(no config.json\)\. Saved models inside it: .*/student"
    with pytest.raises(SystemExit, match=not_a_model):
        app_module.resolve_model_id(str(models[0].parent), "TEACHER_ID")
    monkeypatch.setenv("MODEL_ID", "./missing")
    with pytest.raises(SystemExit, match="no such folder"):
        app_module.main()


def test_without_gradio_the_app_says_how_to_install_it(models):
    """`pip install -e .` (enough for the quickstart) has no gradio; the command it prints must say what is missing."""
    import subprocess

    hide_gradio = (
        "import importlib.abc, runpy, sys\n"
        "class HideGradio(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'gradio':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.modules.pop('gradio', None)\n"
        "sys.meta_path.insert(0, HideGradio())\n"
        "runpy.run_path(sys.argv[1], run_name='__main__')\n"
    )
    env = dict(os.environ, MODEL_ID=str(models[0]))
    result = subprocess.run([sys.executable, "-c", hide_gradio, str(APP)], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1
    assert "needs gradio" in result.stderr and "pip install -e '.[space]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_app_runs_as_a_script_from_inside_space(models, tmp_path):
    """`cd space && MODEL_ID=... python app.py`, as on a Hugging Face Space, answered through the API (~8 s)."""
    import socket
    import subprocess
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, MODEL_ID=str(models[0]), GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1")
    process = subprocess.Popen([sys.executable, "app.py"], cwd=APP.parent, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while True:
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
                break
            except Exception:
                if time.time() > deadline or process.poll() is not None:
                    raise
                time.sleep(1)
        student, _, teacher, _ = client.predict(handle_file(str(RADIOGRAPHS[0])), api_name="/predict")
        assert set(probabilities(student)) == set(LABELS)
        assert not teacher  # the handler returns None; gr.Label sends it to clients as {}
    finally:
        process.terminate()
        process.wait(timeout=30)
