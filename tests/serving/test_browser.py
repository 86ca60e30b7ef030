"""The Space in a real browser: headless Debian Chromium driven by Playwright uploads a radiograph in the page, clicks
Classify and reads the predicted label from the DOM; a file that is not an image shows the app's error message; DICOM
tags holding Markdown/HTML show as literal text, in the status panel and in an error toast; the page fetches nothing.
An upload over the app's MAX_FILE_SIZE is refused in the page.

By default the app serves a tiny student and teacher whose heads are set so that the uploaded radiograph and the
clicked example get different labels from each model (`save_tiny_models_that_tell_apart`): the page must show the
labels of the image that was sent, not those of any image. `SPACE_TEST_MODEL_ID` (and `SPACE_TEST_TEACHER_ID`) run
the same checks against saved models (the expected labels then come from the predictor), e.g. the quickstart output:

    SPACE_TEST_MODEL_ID=outputs/quickstart/distill SPACE_TEST_TEACHER_ID=outputs/quickstart/teacher \
        pytest tests/serving/test_browser.py

Needs /usr/bin/chromium (Debian: `apt-get install -y chromium chromium-driver`; `.ci/run` installs it): without it
the tests skip, except in CI (CI=true), where they fail. Playwright is used only as a driver of that system browser:
its own browser downloads are never used.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers.dicom_files import write_dicom
from tests.helpers.serving_models import RADIOGRAPHS, save_tiny_models_that_tell_apart

CHROMIUM = Path("/usr/bin/chromium")
# Outside CI a machine without Chromium skips these tests; in CI (CI=true, as CI services set it) they must run, so
# a missing browser fails them instead (`page` below): a CI run that could not install Chromium is not green.
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists() and not IN_CI,
                                reason="/usr/bin/chromium is absent (Debian package chromium)")

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
APP = Path(__file__).resolve().parents[2] / "space" / "app.py"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
TIMEOUT_MS = 60_000
UPLOAD_LIMIT_KB = 1024  # far above the test images
UPLOAD = RADIOGRAPHS[1]  # uploaded through the file input (RADIOGRAPHS[0] is the same image as EXAMPLE)
EXAMPLE = sorted(APP.parent.glob("examples/*.jpg"))[0]  # clicked in the examples table
# (student, teacher) top labels the tiny models are built to give: each model tells the two images apart
DESIGNED = {UPLOAD: ("pneumonia", "covid"), EXAMPLE: ("normal", "pneumonia")}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(url, {image: (student label, teacher label)}) of the Space app, launched in this process on loopback."""
    spec = importlib.util.spec_from_file_location("space_app_browser", APP)
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    student, teacher = os.environ.get("SPACE_TEST_MODEL_ID"), os.environ.get("SPACE_TEST_TEACHER_ID") or None
    if student:
        from hf_deitcxr.serving import ChestXrayPredictor

        predictor = ChestXrayPredictor.from_pretrained(student, teacher, precision="fp32")
        expected = {}
        for image in DESIGNED:
            result = predictor.predict(image)
            expected[image] = (result.student.label, result.teacher.label if result.teacher else None)
    else:
        root = tmp_path_factory.mktemp("browser_models")
        student, teacher = (str(p) for p in save_tiny_models_that_tell_apart(root, DESIGNED))
        expected = DESIGNED
    demo = app.build_demo(student, teacher, precision="fp32")
    # As `main` launches it, with a small upload limit (MAX_FILE_SIZE) that the over-size test can exceed quickly.
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True,
                **app.launch_options({"MAX_FILE_SIZE": f"{UPLOAD_LIMIT_KB}kb"}))
    try:
        yield demo.local_url, expected
    finally:
        demo.close()


@pytest.fixture(scope="module")
def page(served, tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.fail(f"CI is set but {CHROMIUM} is absent: .ci/run must install Debian's chromium", pytrace=False)
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium_profile")  # a fresh user-data-dir
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context.new_page()
        finally:
            context.close()


def open_app(page, url: str) -> None:
    """Load the page and wait until the app is mounted and idle (an upload made earlier can be lost under load)."""
    page.goto(url, wait_until="networkidle")
    page.get_by_role("button", name="Classify").wait_for()


def upload_and_classify(page, url: str, path: Path) -> None:
    open_app(page, url)
    page.locator("input[type=file]").first.set_input_files(str(path))
    page.get_by_text(path.name).first.wait_for()  # the File component lists the uploaded file
    page.get_by_role("button", name="Classify").click()


def test_upload_in_the_page_shows_the_predicted_label(served, page, tmp_path):
    url, expected = served
    radiograph = tmp_path / "chest.jpg"
    shutil.copy(UPLOAD, radiograph)

    upload_and_classify(page, url, radiograph)
    assert shown_labels(page) == list(expected[UPLOAD])  # student, then teacher
    # The heatmap arrives as a separate file after the labels render: wait for it instead of reading it at once.
    page.locator(".block", has_text="Attention rollout").locator("img").first.wait_for(state="visible")
    assert page.get_by_text("not a medical device").first.is_visible()


def test_clicking_an_example_classifies_it(served, page):
    url, expected = served
    open_app(page, url)
    page.get_by_text(EXAMPLE.name).first.click()  # no Classify click: the example runs at once
    assert shown_labels(page) == list(expected[EXAMPLE])


def shown_labels(page, count: int = 2) -> list[str]:
    """The top labels the page shows (student, teacher), once all `count` are filled in."""
    labels = page.locator('[data-testid="label-output-value"]')
    page.wait_for_function(
        "n => { const els = document.querySelectorAll('[data-testid=\"label-output-value\"]');"
        " return els.length >= n && [...els].slice(0, n).every(el => el.textContent.trim().length > 0); }",
        arg=count,
    )
    return [text.strip() for text in labels.all_inner_texts()[:count]]


def test_unreadable_upload_shows_the_error_message_in_the_page(served, page, tmp_path):
    url, _ = served
    fake = tmp_path / "notes.png"
    fake.write_text("this is not an image")
    upload_and_classify(page, url, fake)
    page.get_by_text("Could not read this file as an image").first.wait_for()
    assert page.get_by_text("not a recognised image format").first.is_visible()


# Markup in DICOM tags, each short enough to be shown whole; e.invalid and q.png are what no page may fetch.
HOSTILE_MODALITY = "# NORMAL [x](//e.invalid/) <img src=//e.invalid/p.png>"  # refused: quoted in the toast
# Names the chest, so the input check accepts it and the status panel shows it.
HOSTILE_BODY_PART = "CHEST # NORMAL [x](//e.invalid/) <img src=//e.invalid/p.png>"
HOSTILE_PHOTOMETRIC = "<img src=q.png>"  # quoted by the decoder's refusal, shown in a toast (relative: this host)


def assert_nothing_rendered_as_markup(page, requested: list[str]) -> None:
    page.wait_for_timeout(500)  # a rendered <img> would be fetched by now
    assert page.locator("img[src*='e.invalid' i], img[src*='q.png' i]").count() == 0
    assert page.locator("a[href*='e.invalid' i]").count() == 0
    assert page.locator("h1", has_text="NORMAL").count() == 0
    assert [url for url in requested if "e.invalid" in url.lower() or "q.png" in url.lower()] == []


def test_markup_in_dicom_tags_is_shown_as_literal_text(served, page, tmp_path):
    url, _ = served
    pixels = np.asarray(Image.open(UPLOAD).convert("L"))
    write_dicom(tmp_path / "tags.dcm", pixels, BodyPartExamined=HOSTILE_BODY_PART)
    write_dicom(tmp_path / "modality.dcm", pixels, Modality=HOSTILE_MODALITY)
    write_dicom(tmp_path / "photometric.dcm", pixels, photometric=HOSTILE_PHOTOMETRIC)
    requested: list[str] = []

    def record(request) -> None:
        requested.append(request.url)

    page.on("request", record)
    try:
        upload_and_classify(page, url, tmp_path / "tags.dcm")
        # The status panel shows the tag as typed, uppercased.
        page.get_by_text("CHEST # NORMAL [X](//E.INVALID/) <IMG SRC=//E.INVALID/P.PNG>").first.wait_for()
        assert_nothing_rendered_as_markup(page, requested)

        upload_and_classify(page, url, tmp_path / "modality.dcm")
        # Refused by the modality allow-list; the toast quotes the tag as text (path-like parts removed).
        toast = page.locator('[data-testid="toast-text"]', has_text="DICOM modality is # NORMAL [X]").first
        toast.wait_for()
        assert "<IMG SRC=" in toast.text_content()
        assert_nothing_rendered_as_markup(page, requested)

        upload_and_classify(page, url, tmp_path / "photometric.dcm")
        toast = page.locator('[data-testid="toast-text"]', has_text="PhotometricInterpretation").first
        toast.wait_for()
        assert HOSTILE_PHOTOMETRIC in toast.text_content()  # the decoder's quote of the tag, as text
        assert_nothing_rendered_as_markup(page, requested)
    finally:
        page.remove_listener("request", record)


def test_an_over_size_upload_is_refused_in_the_page(served, page, tmp_path):
    """MAX_FILE_SIZE (Gradio's max_file_size): a larger file gets a clear message and never reaches the model."""
    url, _ = served
    big = tmp_path / "big.dcm"
    big.write_bytes(b"\0" * (UPLOAD_LIMIT_KB * 1024 + 1))
    open_app(page, url)
    page.locator("input[type=file]").first.set_input_files(str(big))
    toast = page.locator('[data-testid="toast-text"]', has_text="exceed the maximum allowed size").first
    toast.wait_for()  # the page refuses it before sending it
    assert "big.dcm" in toast.text_content()
    assert page.get_by_text("big.dcm").count() == 1  # named in the toast only: the File component did not take it


def test_the_page_shows_the_preview_both_heatmaps_and_the_model_cards(served, page, tmp_path):
    url, _ = served
    radiograph = tmp_path / "preview.jpg"
    shutil.copy(UPLOAD, radiograph)
    upload_and_classify(page, url, radiograph)
    for title in ("Attention rollout", "CAM (where the teacher looked)", "Input preview"):
        page.locator(".block", has_text=title).locator("img").first.wait_for(state="visible")
    assert page.get_by_text("Model input:").first.is_visible()
    page.get_by_text("Model cards").first.click()  # the accordion opens on a click
    page.get_by_text("Student: student").first.wait_for(state="visible")
    assert page.get_by_text("Up to 8 requests at once").first.is_visible()  # how the app serves
