"""The Space's input preview, both explanations, the model cards and the batch tab (issue 18), through gradio_client."""

from __future__ import annotations

import csv
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers.dicom_files import write_dicom
from tests.helpers.serving_models import RADIOGRAPHS, colour_shapes, save_tiny_models
from tests.helpers.tiny_models import LABELS

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
from gradio_client import Client, handle_file  # noqa: E402

from hf_deitcxr.serving.batch_predict import InputFile  # noqa: E402
from hf_deitcxr.serving.model_info import card_sections, load_model_info  # noqa: E402
from hf_deitcxr.serving.space_batch import expand_uploads, parse_size, zip_members  # noqa: E402
from tests.serving.test_space import load_app  # noqa: E402

CARD = """---
model_name: deit-cxr-student
---

# deit-cxr-student

## Training data
COVIDx-like folders.

## Method
Hard distillation from a DenseNet-121 teacher.

## Results (validation split)
accuracy 0.91 [0.89, 0.93]

## Shortcut audit
Hospital-source probe: 0.55.

## Limitations
Not a medical device.
"""


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    student, teacher = save_tiny_models(tmp_path_factory.mktemp("feature_models"))
    (student / "README.md").write_text(CARD)  # the teacher has none: the card hf-deitcxr would write for it
    return student, teacher


@pytest.fixture(scope="module")
def client(models):
    app = load_app()
    demo = app.build_demo(str(models[0]), str(models[1]), precision="fp32")
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True,
                **app.launch_options({}))
    try:
        yield Client(demo.local_url, verbose=False, ssl_verify=False)  # plain HTTP: no CA bundle per request
    finally:
        demo.close()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("feature_inputs")
    grey = np.asarray(Image.open(RADIOGRAPHS[0]))
    Image.fromarray(grey).save(root / "grey.png")
    write_dicom(root / "inverted.dcm", (255 - grey).astype(np.uint16) * 16, photometric="MONOCHROME1",
                bits_stored=12, WindowCenter=2048, WindowWidth=4000, PixelSpacing=[0.139, 0.139])
    colour_shapes().save(root / "drawing.png")
    (root / "garbage.png").write_bytes(b"not an image at all")
    with zipfile.ZipFile(root / "studies.zip", "w") as archive:
        archive.write(root / "grey.png", "a/grey.png")
        archive.writestr("../../escape.png", (root / "grey.png").read_bytes())
        archive.writestr("broken.dcm", b"DICM but not really")
    return {path.name: path for path in root.iterdir()}


def analyse(client: Client, path: Path, rollout: bool = True, cam: bool = True):
    return client.predict(handle_file(str(path)), rollout, cam, api_name="/analyse")


def test_preview_is_the_model_input_with_the_dicom_facts(client, files):
    *_, preview, facts, _ = analyse(client, files["inverted.dcm"])
    assert np.asarray(Image.open(preview)).shape[:2] == (32, 32)  # the tiny student's input size
    assert "MONOCHROME1" in facts and "inverted so that bone is bright" in facts
    assert "center 2048 / width 4000" in facts and "0.139 × 0.139 mm (PixelSpacing)" in facts
    assert "bicubic resize to 32×32" in facts
    *_, facts, _ = analyse(client, files["grey.png"])
    assert "Photometric" not in facts and "Decoded:" in facts


def test_both_explanations_side_by_side_and_each_optional(client, files):
    student, rollout, teacher, status, preview, facts, cam = analyse(client, files["grey.png"])
    assert np.asarray(Image.open(rollout)).shape == np.asarray(Image.open(cam)).shape == (224, 224, 3)
    assert set(teacher["confidences"][0]) >= {"label"} and student["label"] in LABELS
    _, rollout, _, status, *_, cam = analyse(client, files["grey.png"], rollout=False, cam=False)
    assert rollout is None and cam is None and "No heatmap" in status


def test_predict_endpoint_keeps_its_contract(client, files):
    student, heatmap, teacher, status = client.predict(handle_file(str(files["grey.png"])), api_name="/predict")
    assert heatmap is not None and teacher["label"] in LABELS


def test_model_cards_name_the_models_and_keep_the_sections_that_matter(models):
    student, teacher = (load_model_info(str(path)) for path in models)
    assert student.name == "deit-cxr-student" and teacher.name == "teacher"  # no card data: the folder name
    assert "Hard distillation" in student.markdown and "[0.89, 0.93]" in student.markdown
    assert "Shortcut audit" in student.markdown and "Limitations" not in student.markdown
    assert "Not evaluated" in teacher.markdown  # built from the folder: no metrics.json
    assert card_sections("just text") == "just text"
    assert load_model_info("/no/such/folder").name == "/no/such/folder"


def test_model_card_names_label_the_page(client):
    config = client.view_api(print_info=False, return_format="dict")
    assert "/analyse" in config["named_endpoints"] and "/batch" in config["named_endpoints"]


def read_csv(path: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(Path(path).read_text())))


def test_batch_tab_gives_one_row_per_file_bad_ones_with_their_error(client, files):
    names = ["grey.png", "garbage.png", "drawing.png", "studies.zip", "inverted.dcm"]
    table, csv_file = client.predict([handle_file(str(files[n])) for n in names], api_name="/batch")
    rows = read_csv(csv_file)
    assert [row["path"] for row in rows] == ["grey.png", "garbage.png", "drawing.png", "studies.zip/a/grey.png",
                                             "studies.zip/../../escape.png", "studies.zip/broken.dcm", "inverted.dcm"]
    assert table["headers"] == list(rows[0]) and len(table["data"]) == len(rows)
    by_path = {row["path"]: row for row in rows}
    assert by_path["grey.png"]["label"] in LABELS and by_path["grey.png"]["input_check"] == "passed"
    assert by_path["garbage.png"]["error"] and not by_path["garbage.png"]["label"]
    assert by_path["drawing.png"]["input_check"] == "refused"
    assert by_path["studies.zip/broken.dcm"]["error"]
    assert by_path["studies.zip/a/grey.png"]["prob_normal"] == by_path["grey.png"]["prob_normal"]
    assert all("/tmp" not in row["error"] for row in rows)


def test_zip_members_never_leave_the_folder_and_respect_the_size_limit(tmp_path):
    archive = tmp_path / "x.zip"
    with zipfile.ZipFile(archive, "w") as opened:
        opened.writestr("../../outside.png", b"x" * 10)
        opened.writestr("/abs/path.dcm", b"y" * 10)
        opened.writestr("big.png", b"z" * 100)
    folder = tmp_path / "out"
    folder.mkdir()
    members = zip_members(archive, folder, max_bytes=50, limit=10)
    assert [name for _, name in members] == ["x.zip/../../outside.png", "x.zip//abs/path.dcm", "x.zip/big.png"]
    written = sorted(p for p in tmp_path.rglob("*") if p.is_file() and p != archive)
    assert all(folder in p.parents for p in written) and len(written) == 2
    assert "upload limit" in members[2][0].error
    (tmp_path / "bad.zip").write_bytes(b"PK not a zip")
    assert "not a readable zip" in zip_members(tmp_path / "bad.zip", folder, 50, 10)[0][0].error


def test_uploads_show_base_names_and_sizes_parse_like_gradio(tmp_path):
    inputs, shown = expand_uploads([tmp_path / "a.png"], tmp_path, 10)
    assert inputs == [InputFile(str(tmp_path / "a.png"))] and shown == {str(tmp_path / "a.png"): "a.png"}
    assert parse_size("50mb") == 50 * 1024**2 and parse_size("1024") == 1024
    with pytest.raises(ValueError):
        parse_size("lots")


def test_decoded_dicom_facts_say_what_the_decoder_did(tmp_path):
    from hf_deitcxr.serving.decode import decode_upload

    pixels = np.asarray(Image.open(RADIOGRAPHS[0]))
    write_dicom(tmp_path / "inverse.dcm", pixels, PresentationLUTShape="INVERSE")
    upload = decode_upload(tmp_path / "inverse.dcm")
    assert upload.inverted and upload.photometric == "MONOCHROME2" and upload.pixel_spacing is None
    assert upload.window.startswith("none in the file")
    assert not decode_upload(RADIOGRAPHS[0]).inverted
