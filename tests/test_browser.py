"""The Space in a real browser: headless Debian Chromium driven by Playwright uploads a radiograph in the page, clicks
Classify and reads the predicted label from the DOM; a file that is not an image shows the app's error message.

Needs /usr/bin/chromium (Debian: `apt-get install -y chromium chromium-driver`; `.ci/run` installs it). Playwright is
used only as a driver of that system browser: its own browser downloads are never used.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

from tests.test_serving import RADIOGRAPHS, save_tiny_models

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent (Debian package chromium)")

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
APP = Path(__file__).resolve().parents[1] / "space" / "app.py"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(url, predictor) of the Space app serving a tiny student, launched in this process on loopback."""
    spec = importlib.util.spec_from_file_location("space_app_browser", APP)
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    student, _ = save_tiny_models(tmp_path_factory.mktemp("browser_models"))
    demo = app.build_demo(str(student), precision="fp32")
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True)
    from hf_deitcxr.serving import ChestXrayPredictor

    try:
        yield demo.local_url, ChestXrayPredictor.from_pretrained(student, precision="fp32")
    finally:
        demo.close()


@pytest.fixture(scope="module")
def page(served, tmp_path_factory):
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


def upload_and_classify(page, url: str, path: Path) -> None:
    page.goto(url)
    page.locator("input[type=file]").first.set_input_files(str(path))
    page.get_by_text(path.name).first.wait_for()  # the File component lists the uploaded file
    page.get_by_role("button", name="Classify").click()


def test_upload_in_the_page_shows_the_predicted_label(served, page, tmp_path):
    url, predictor = served
    radiograph = tmp_path / "chest.jpg"
    shutil.copy(RADIOGRAPHS[0], radiograph)
    expected = predictor.predict(radiograph).student.label

    upload_and_classify(page, url, radiograph)
    label = page.locator('[data-testid="label-output-value"]').first
    label.wait_for()
    page.wait_for_function("el => el.textContent.trim().length > 0", arg=label.element_handle())
    assert label.inner_text().strip() == expected
    assert page.get_by_text("not a medical device").first.is_visible()


def test_unreadable_upload_shows_the_error_message_in_the_page(served, page, tmp_path):
    url, _ = served
    fake = tmp_path / "notes.png"
    fake.write_text("this is not an image")
    upload_and_classify(page, url, fake)
    page.get_by_text("Could not read this file as an image").first.wait_for()
    assert page.get_by_text("not a recognised image format").first.is_visible()
