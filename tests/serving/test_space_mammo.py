"""The Space's mammography tab (space/mammo_tab.py) served on loopback and called through gradio_client.

Tiny single-view and multi-view models are saved as `hf-deitcxr train --task mammo` saves them; the four view slots
are called as a user's client would: one view, four views, and bad uploads that must come back as clear errors.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from hf_deitcxr.mammo.builders import build_single_view_model
from hf_deitcxr.mammo.synthetic import SyntheticMammoConfig, write_synthetic_mammo
from tests.helpers.dicom_files import write_dicom
from tests.helpers.mammo_models import (
    LABELS,
    multiview_model,
    save_standin,
    save_with_processors,
    tiny_vit_config,
)
from tests.helpers.serving_models import RADIOGRAPHS, colour_shapes, save_tiny_models

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
import gradio as gr  # noqa: E402 - in the `test` extra
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

SPACE = Path(__file__).resolve().parents[2] / "space"
SIZE = 32
SLOTS = ("L-CC", "L-MLO", "R-CC", "R-MLO")


def load_space_module(name: str):
    spec = importlib.util.spec_from_file_location(f"space_{name}", SPACE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def save_tiny_mammo_models(root: Path) -> dict[str, Path]:
    """A single-view ViT (fine-tuned from a local stand-in checkpoint) and a multi-view model, with processors."""
    save_standin(tiny_vit_config(), root / "standin")
    single = build_single_view_model(str(root / "standin"), LABELS, SIZE)
    single.config.mammography = {"orientation": "laterality", "exam_aggregation": "max"}
    models = {"single_view": single, "multi_view": multiview_model()}
    return save_with_processors(models, root, SIZE)


@pytest.fixture(scope="module")
def mammo_models(tmp_path_factory) -> dict[str, Path]:
    return save_tiny_mammo_models(tmp_path_factory.mktemp("mammo_space_models"))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """The four views of one synthetic exam, plus an unreadable file, a colour and a grey drawing and a CT DICOM."""
    root = tmp_path_factory.mktemp("mammo_inputs")
    write_synthetic_mammo(root / "exam", 1, seed=0, config=SyntheticMammoConfig(size=SIZE))
    found = {"-".join(p.stem.split("_")[1:]): p for p in (root / "exam" / "images").glob("*.png")}
    (root / "garbage.png").write_bytes(np.random.default_rng(0).bytes(4096))
    colour_shapes().save(root / "drawing.png")
    colour_shapes().convert("L").save(root / "grey_drawing.png")
    write_dicom(root / "ct.dcm", np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1)), Modality="CT")
    return {**found, **{p.name: p for p in root.iterdir() if p.is_file()}}


@pytest.fixture(scope="module", params=["single_view", "multi_view"])
def client(request, mammo_models):
    tab = load_space_module("mammo_tab")
    with gr.Blocks() as demo:
        tab.add_mammography_tab(str(mammo_models[request.param]))
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True)
    try:
        yield Client(demo.local_url, verbose=False, ssl_verify=False)  # plain HTTP: no CA bundle per request
    finally:
        demo.close()


def call(client: Client, views: dict[str, Path]):
    args = [handle_file(str(views[slot])) if slot in views else None for slot in SLOTS]
    return client.predict(*args, api_name="/predict_mammography")


def probabilities(label_value: dict) -> dict[str, float]:
    return {item["label"]: item["confidence"] for item in label_value["confidences"]}


def test_one_view_and_four_views_give_an_exam_label(client, files):
    for views in ({"R-MLO": files["R-MLO"]}, {slot: files[slot] for slot in SLOTS}):
        label, details = call(client, views)
        exam = probabilities(label)
        assert set(exam) == set(LABELS) and sum(exam.values()) == pytest.approx(1.0, abs=1e-5)
        assert f"**Views used:** {', '.join(views)}" in details and "not a medical device" in details


def test_bad_uploads_get_clear_errors_and_the_server_keeps_answering(client, files):
    with pytest.raises(AppError, match="Upload at least one mammogram"):
        call(client, {})
    with pytest.raises(AppError, match=r"Could not read the uploaded file as a mammogram .*garbage\.png"):
        call(client, {"L-CC": files["garbage.png"]})
    refused = "this does not look like a mammogram: "
    with pytest.raises(AppError, match=f"L-MLO: {refused}this is a colour image .* mammograms are grey"):
        call(client, {"L-CC": files["L-CC"], "L-MLO": files["drawing.png"]})
    with pytest.raises(AppError, match=f"R-CC: {refused}this DICOM is modality CT, not a mammogram"):
        call(client, {"R-CC": files["ct.dcm"]})
    label, _ = call(client, {"L-CC": files["L-CC"]})  # still serving after bad input
    assert set(probabilities(label)) == set(LABELS)


def test_a_chest_x_ray_and_a_grey_drawing_are_refused_and_a_mammogram_beside_them_is_not_used(client, files):
    """The tab's input check (hf_deitcxr.mammo.input_check): the chest tab's gate refuses for it what it accepts."""
    refused = "this does not look like a mammogram: "
    with pytest.raises(AppError, match=f"L-MLO: {refused}it looks like a chest X-ray"):
        call(client, {"L-CC": files["L-CC"], "L-MLO": RADIOGRAPHS[0]})
    with pytest.raises(AppError, match=f"R-CC: {refused}.*flat areas of a few grey levels"):
        call(client, {"R-CC": files["grey_drawing.png"]})


def test_app_adds_the_tab_when_a_mammography_model_is_given(mammo_models, tmp_path):
    """space/app.py's build_demo(..., mammo_model_id=...) builds the tab and its API endpoint next to the chest one."""
    chest, _ = save_tiny_models(tmp_path)
    app = load_space_module("app")
    endpoints = {fn.api_name for fn in app.build_demo(str(chest), mammo_model_id=str(mammo_models["multi_view"]),
                                                       precision="fp32").fns.values()}
    assert {"predict", "predict_mammography"} <= endpoints
    without = {fn.api_name for fn in app.build_demo(str(chest), mammo_model_id="", precision="fp32").fns.values()}
    assert "predict_mammography" not in without


def test_refusals_are_escaped_and_name_no_server_path(mammo_models, tmp_path):
    """The toast renders HTML: a file name holding a tag comes back escaped, without the server's upload folder."""
    from hf_deitcxr.mammo.inference import MammoPredictor

    tab = load_space_module("mammo_tab")
    hostile = tmp_path / "<img src=probe.png>.png"
    hostile.write_bytes(b"not an image")
    with pytest.raises(gr.Error) as refused:
        tab.predict_exam(MammoPredictor(str(mammo_models["single_view"])), str(hostile), None, None, None)
    message = refused.value.message
    assert "&lt;img src=probe.png&gt;.png" in message and "<img" not in message and str(tmp_path) not in message


def test_refusals_name_no_server_path_class_or_address(mammo_models, monkeypatch):
    from hf_deitcxr.mammo.inference import MammoPredictor

    tab = load_space_module("mammo_tab")
    predictor = MammoPredictor(str(mammo_models["single_view"]))

    def refuse(views):
        raise ValueError("L-CC: bad view (KeyError: 'x') in <object at 0x7f3c2a1b2c30> at /srv/gradio/0a1b/x.png")

    monkeypatch.setattr(predictor, "predict", refuse)
    with pytest.raises(gr.Error) as refused:
        tab.predict_exam(predictor, "/srv/gradio/0a1b/x.png", None, None, None)
    assert refused.value.message == "L-CC: bad view ('x') in at x.png"


def test_an_unexpected_failure_is_logged_and_the_user_gets_no_internals(mammo_models, monkeypatch, caplog):
    import logging

    from hf_deitcxr.mammo.inference import MammoPredictor

    tab = load_space_module("mammo_tab")
    predictor = MammoPredictor(str(mammo_models["single_view"]))

    def crash(views):
        raise RuntimeError("boom at 0x7f3c2a1b2c30 in /srv/x.png")

    monkeypatch.setattr(predictor, "predict", crash)
    with caplog.at_level(logging.ERROR), pytest.raises(gr.Error, match="Something went wrong") as failed:
        tab.predict_exam(predictor, "/srv/x.png", None, None, None)
    assert not any(leak in failed.value.message for leak in ("RuntimeError", "0x7f", "/srv"))
    assert caplog.records[-1].exc_info is not None
