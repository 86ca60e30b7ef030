"""Micro-batching of concurrent requests: the batcher itself, and the predictor under concurrent calls."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from gradio import processing_utils
from PIL import Image

from hf_deitcxr.serving import ChestXrayPredictor
from hf_deitcxr.serving.micro_batch import MicroBatcher
from hf_deitcxr.serving.space_io import env_count, env_flag, fast_png
from tests.helpers.serving_models import RADIOGRAPHS, save_tiny_models


def test_waiting_requests_run_as_one_batch_and_each_gets_its_own_result():
    release = threading.Event()
    calls: list[list[int]] = []

    def run(items: list[int]) -> list[int]:
        calls.append(list(items))
        if len(calls) == 1:
            release.wait(5)  # hold the first batch, so the next requests queue behind it
        return [item * 10 for item in items]

    batcher = MicroBatcher(run, max_batch_size=4)
    first = batcher.submit(1)
    while not calls:  # the worker has taken the first item
        threading.Event().wait(0.001)
    queued = [batcher.submit(i) for i in range(2, 8)]
    release.set()
    assert first.result(5) == 10 and [f.result(5) for f in queued] == [i * 10 for i in range(2, 8)]
    assert calls == [[1], [2, 3, 4, 5], [6, 7]]  # what waited ran together, at most max_batch_size at a time
    assert batcher.batch_sizes == [1, 4, 2]
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit(9)


def test_a_failing_batch_fails_each_of_its_requests_and_the_batcher_goes_on():
    def run(items: list[int]) -> list[int]:
        if 0 in items:
            raise ValueError("model broke")
        return items

    batcher = MicroBatcher(run, max_batch_size=1)
    with pytest.raises(ValueError, match="model broke"):
        batcher(0)
    assert batcher(5) == 5
    wrong = MicroBatcher(lambda items: items[:-1] if len(items) > 0 else items)
    with pytest.raises(RuntimeError, match="0 results for 1 items"):
        wrong(3)
    for bad in ({"max_batch_size": 0}, {"max_wait_s": -1.0}):
        with pytest.raises(ValueError):
            MicroBatcher(run, **bad)


def test_max_wait_gathers_requests_that_arrive_shortly_after_the_first():
    seen: list[int] = []
    batcher = MicroBatcher(lambda items: seen.append(len(items)) or items, max_batch_size=8, max_wait_s=0.5)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(batcher, range(4)))
    assert results == [0, 1, 2, 3] and sum(seen) == 4 and max(seen) > 1


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    return save_tiny_models(tmp_path_factory.mktemp("models"))


def test_concurrent_batched_predictions_equal_one_at_a_time(models):
    """The Space's design (several requests at once, forwards batched) changes no output: same probabilities,
    heatmaps and teacher CAMs as one request at a time, whatever each request asked for."""
    serial = ChestXrayPredictor.from_pretrained(*models, precision="fp32")
    batched = ChestXrayPredictor.from_pretrained(*models, precision="fp32", max_batch_size=4, decode_slots=2)
    jobs = [(path, i % 2 == 0, i % 3 == 0) for i, path in enumerate(RADIOGRAPHS * 2)]
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda job: batched.predict(job[0], heatmap=job[1], teacher_heatmap=job[2]), jobs))
    assert max(batched.batchers["student"].batch_sizes) > 1 and max(batched.batchers["teacher"].batch_sizes) > 1
    for (path, heatmap, cam), got in zip(jobs, results, strict=True):
        want = serial.predict(path, heatmap=heatmap, teacher_heatmap=cam)
        assert list(got.student.probabilities) == list(want.student.probabilities)
        np.testing.assert_allclose(list(got.student.probabilities.values()),
                                   list(want.student.probabilities.values()), atol=1e-5)
        np.testing.assert_allclose(list(got.teacher.probabilities.values()),
                                   list(want.teacher.probabilities.values()), atol=1e-5)
        assert (got.overlay is None) == (not heatmap) and (got.teacher_overlay is None) == (not cam)
        if heatmap:
            np.testing.assert_allclose(got.student.heatmap, want.student.heatmap, atol=1e-4)
        if cam:
            np.testing.assert_allclose(got.teacher.heatmap, want.teacher.heatmap, atol=1e-4)


def test_a_bad_upload_fails_only_its_own_request(models, tmp_path):
    from hf_deitcxr.data.dicom import UnreadableImageError

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    batched = ChestXrayPredictor.from_pretrained(*models, precision="fp32", max_batch_size=8, decode_slots=2)
    jobs = [RADIOGRAPHS[0], broken, RADIOGRAPHS[1], broken, RADIOGRAPHS[2]]

    def attempt(path):
        try:
            return batched.predict(path).student.label
        except UnreadableImageError as err:
            return err

    with ThreadPoolExecutor(5) as pool:
        outcomes = list(pool.map(attempt, jobs))
    assert [isinstance(o, UnreadableImageError) for o in outcomes] == [False, True, False, True, False]


def test_fast_png_is_gradios_png_at_level_one_with_the_same_pixels(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 255, (40, 30, 3), dtype=np.uint8)
    image = fast_png(pixels)
    path = processing_utils.save_pil_to_cache(image, str(tmp_path), format="png")
    np.testing.assert_array_equal(np.asarray(Image.open(path)), pixels)
    reference = tmp_path / "level1.png"
    Image.fromarray(pixels).save(reference, "png", compress_level=1, pnginfo=processing_utils.get_pil_metadata(image))
    assert Path(path).read_bytes() == reference.read_bytes()
    grey = Image.fromarray(pixels[..., 0])
    assert fast_png(grey) is not grey and fast_png(None) is None
    assert not hasattr(grey, "encoderinfo") or "compress_level" not in grey.encoderinfo  # the caller's image untouched


def test_env_settings_are_checked():
    assert env_count("N", 8, {}) == 8 and env_count("N", 8, {"N": " 3 "}) == 3
    for bad in ("0", "-2", "two", "1.5"):
        with pytest.raises(SystemExit, match="N="):
            env_count("N", 8, {"N": bad})
    assert env_flag("F", True, {}) and not env_flag("F", True, {"F": "off"}) and env_flag("F", False, {"F": "1"})
