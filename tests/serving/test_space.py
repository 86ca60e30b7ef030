"""The Gradio Space (space/app.py) served on loopback and called through gradio_client, as a user's client would."""

from __future__ import annotations

import importlib.util
import logging
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
def demo(app_module, models):
    """The app as `main` launches it (its launch options: the upload size limit), on loopback."""
    demo = app_module.build_demo(str(models[0]), str(models[1]), precision="fp32")
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True,
                **app_module.launch_options({}))
    try:
        yield demo
    finally:
        demo.close()


@pytest.fixture(scope="module")
def client(demo):
    return Client(demo.local_url, verbose=False, ssl_verify=False)  # plain HTTP: no CA bundle per request


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
    assert set(student) == set(LABELS) and np.asarray(overlay).shape == (224, 224, 3)
    assert overlay.encoderinfo["compress_level"] == 1  # Gradio's PNG of it is written at zlib level 1 (space_io)
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
                client = Client(f"http://127.0.0.1:{port}/", verbose=False, ssl_verify=False)
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


HOSTILE_MODALITY = "# NORMAL [x](//e.invalid/) <img src=//e.invalid/p.png>"  # short enough to be shown whole


def render_markdown(text: str) -> str:
    """CommonMark, as Gradio's Markdown renders it (the browser test checks Gradio's own renderer)."""
    return pytest.importorskip("markdown_it").MarkdownIt("commonmark").render(text)


def test_dicom_tags_in_the_status_render_as_literal_text(app_module, models, tmp_path):
    """A Modality of Markdown/HTML must not become a heading, a link or an image fetched by the browser."""
    predictor = app_module.ChestXrayPredictor.from_pretrained(str(models[0]), precision="fp32", check_input=False)
    write_dicom(tmp_path / "tags.dcm", np.asarray(Image.open(RADIOGRAPHS[0])), Modality=HOSTILE_MODALITY)
    status = app_module.run_prediction(predictor, str(tmp_path / "tags.dcm"))[3]
    html = render_markdown(status)
    assert "<h1" not in html and "<a " not in html and "<img" not in html
    assert "DICOM (# NORMAL [X](//E.INVALID/) &lt;IMG SRC=//E.INVALID/P.PNG&gt;)" in html  # uppercased by decode


@pytest.fixture()
def tiny_predictor(app_module, models):
    return app_module.ChestXrayPredictor.from_pretrained(str(models[0]), precision="fp32")


def test_refusal_toasts_are_escaped_and_name_no_server_path(app_module, tiny_predictor, tmp_path):
    """gr.Error messages render as HTML: a file name holding a tag must come back escaped, without its folder."""
    hostile = tmp_path / "<img src=probe.png>.png"
    hostile.write_bytes(b"not an image")
    with pytest.raises(gr.Error) as refused:
        app_module.run_prediction(tiny_predictor, str(hostile))
    message = refused.value.message
    assert "&lt;img src=probe.png&gt;.png: not a recognised image format" in message
    assert "<img" not in message and str(tmp_path) not in message


def test_an_unexpected_failure_is_logged_and_the_user_gets_no_internals(app_module, tiny_predictor, monkeypatch,
                                                                       caplog):
    def crash(path, **options):
        raise RuntimeError(f"boom in <object at 0x7f3c2a1b2c30> reading {path}")

    monkeypatch.setattr(tiny_predictor, "predict", crash)
    with caplog.at_level(logging.ERROR), pytest.raises(gr.Error, match="Something went wrong") as failed:
        app_module.run_prediction(tiny_predictor, "/srv/uploads/x.png")
    assert not any(leak in failed.value.message for leak in ("RuntimeError", "0x7f", "/srv"))
    assert caplog.records[-1].exc_info is not None  # a bug: the log keeps its traceback


def test_refused_inputs_log_one_short_line_without_traceback(app_module, tiny_predictor, tmp_path, caplog):
    long_name = tmp_path / ("n" * 240 + ".png")
    long_name.write_bytes(b"not an image")
    with caplog.at_level(logging.INFO), pytest.raises(gr.Error):
        app_module.run_prediction(tiny_predictor, str(long_name))
    refused = [record for record in caplog.records if record.getMessage().startswith("refused ")]
    assert len(refused) == 1 and refused[0].exc_info is None
    assert "n" * 100 not in refused[0].getMessage() and str(tmp_path) not in refused[0].getMessage()


def test_uploads_are_deleted_after_use(app_module, demo):
    """Gradio deletes uploads (and outputs) older than DELETE_CACHE[1] s, looking every DELETE_CACHE[0] s."""
    every, older_than = demo.delete_cache
    assert (every, older_than) == app_module.DELETE_CACHE and 0 < every <= older_than <= 3600


def test_an_over_size_upload_is_refused_with_a_clear_message(app_module, demo, client, inputs):
    import httpx

    assert app_module.launch_options({"MAX_FILE_SIZE": " 2kb "}) == {"max_file_size": "2kb"}
    limit = demo.max_file_size
    assert limit == 50 * 1024 * 1024  # DEFAULT_MAX_FILE_SIZE, parsed by Gradio
    big = inputs["grey.png"].parent / "big.dcm"
    big.write_bytes(b"\0" * (limit + 1))
    with pytest.raises(ValueError, match="exceeds the maximum file size"):  # gradio_client checks before sending
        call(client, big)
    with big.open("rb") as handle:  # a client that does not check: the server refuses it while reading
        response = httpx.post(f"{demo.local_url}gradio_api/upload", files={"files": handle}, timeout=60)
    assert response.status_code == 413 and "maximum allowed size" in response.text
    big.unlink()


def test_decoder_messages_lose_class_names_addresses_paths_and_install_hints(app_module, tiny_predictor, monkeypatch):
    def refuse(path, **options):
        raise app_module.UnreadableImageError(
            "x.dcm: corrupt DICOM (InvalidDicomError: bad header in <_io.BytesIO object at 0x7f3c2a1b2c30> from "
            "/srv/gradio/0a1b/x.dcm); install a decoder for it, e.g. `pip install pylibjpeg`")

    monkeypatch.setattr(tiny_predictor, "predict", refuse)
    with pytest.raises(gr.Error) as refused:
        app_module.run_prediction(tiny_predictor, "/srv/gradio/0a1b/x.dcm")
    assert refused.value.message == ("Could not read this file as an image: x.dcm: corrupt DICOM (bad header in from "
                                     "x.dcm); Upload a PNG, JPEG or DICOM chest radiograph.")


@pytest.mark.parametrize("path", ["/etc/passwd", "../../etc/passwd", "https://example.invalid/x.png"])
def test_requests_gradio_blocks_are_one_log_line_not_a_traceback(demo, path, capfd, caplog):
    """A path that was not uploaded (or a URL) is refused by Gradio itself; its queue would print a traceback."""
    import httpx

    body = {"data": [{"path": path, "meta": {"_type": "gradio.FileData"}}]}
    with caplog.at_level(logging.INFO):
        event = httpx.post(f"{demo.local_url}gradio_api/call/predict", json=body, timeout=30).json()["event_id"]
        answer = httpx.get(f"{demo.local_url}gradio_api/call/predict/{event}", timeout=60).text
    assert answer.startswith("event: error")
    assert "Traceback" not in capfd.readouterr().err
    assert any(record.getMessage().startswith("blocked request: ") for record in caplog.records)


def test_predict_response_holds_no_upload_path_and_only_the_heatmaps_cache_path(demo, inputs):
    """The raw JSON of a /predict answer (what a browser or HTTP client reads) names neither the upload's server path
    nor the client's own path. Its one server path is the heatmap's: Gradio writes the output PNG to its cache and
    sends `path` and `url` (/gradio_api/file=<path>), which gradio_client needs to download it (space/README.md,
    "Security notes"). This pins what is exposed, so a change on either side is seen."""
    import json

    import httpx

    source = inputs["grey.png"]
    with httpx.Client(base_url=demo.local_url, timeout=60) as http:
        uploaded = http.post("gradio_api/upload", files={"files": (source.name, source.read_bytes(), "image/png")})
        upload_path = uploaded.json()[0]
        body = {"data": [{"path": upload_path, "meta": {"_type": "gradio.FileData"}}]}
        event = http.post("gradio_api/call/predict", json=body).json()["event_id"]
        answer = http.get(f"gradio_api/call/predict/{event}").text
    assert answer.startswith("event: complete"), answer[:500]
    assert Path(upload_path).is_absolute() and upload_path not in answer and Path(upload_path).parent.name not in answer
    assert str(source.parent) not in answer
    student, heatmap, teacher, status = json.loads(answer.split("data:", 1)[1])
    assert set(heatmap) >= {"path", "url"} and heatmap["meta"] == {"_type": "gradio.FileData"}
    cache = Path(demo.GRADIO_CACHE).resolve()
    assert Path(heatmap["path"]).resolve().is_relative_to(cache)  # the cache path: Gradio's file serving
    assert heatmap["url"].endswith(f"/gradio_api/file={heatmap['path']}")
    without_heatmap = json.dumps([student, teacher, status])
    assert str(cache) not in without_heatmap and "/tmp" not in without_heatmap


def test_the_page_says_how_it_serves_and_the_design_settings_are_checked(app_module, models, demo, monkeypatch):
    serving = [c for c in demo.config["components"] if "Serving:" in str(c.get("props", {}).get("value", ""))]
    assert len(serving) == 1  # in the model-cards accordion
    text = serving[0]["props"]["value"]
    assert "student: torch fp32" in text and "teacher: transformers fp32" in text and "Up to 8 requests" in text
    one_at_a_time = app_module.ChestXrayPredictor.from_pretrained(str(models[0]), precision="fp32")
    assert "batched by up to 1" in app_module.serving_markdown(one_at_a_time, 1)
    monkeypatch.setenv("MAX_BATCH_SIZE", "0")
    with pytest.raises(SystemExit, match="MAX_BATCH_SIZE"):
        app_module.build_demo(str(models[0]), precision="fp32")
