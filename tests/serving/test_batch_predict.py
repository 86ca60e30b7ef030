"""`hf-deitcxr predict`: one CSV row per input through the Space's path; bad files become rows, never a failed run."""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hf_deitcxr.cli import main
from hf_deitcxr.serving import ChestXrayPredictor
from hf_deitcxr.serving.batch_predict import BatchPredictionError, expand_inputs, run_batch_prediction
from tests.helpers.dicom_files import write_dicom
from tests.helpers.serving_models import RADIOGRAPHS, colour_shapes, save_tiny_models
from tests.helpers.tiny_models import LABELS

PROBABILITY_COLUMNS = [f"prob_{label}" for label in LABELS]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    return save_tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """Good and bad files mixed in a nested folder, plus a manifest (relative, absolute and missing paths)."""
    root = tmp_path_factory.mktemp("inputs")
    folder = root / "folder"
    (folder / "nested" / "deeper").mkdir(parents=True)
    Image.open(RADIOGRAPHS[0]).save(folder / "a_good.png")
    shutil.copy(RADIOGRAPHS[1], folder / "nested" / "deeper" / "b_good.jpg")
    jpeg = RADIOGRAPHS[2].read_bytes()
    (folder / "c_corrupt.jpg").write_bytes(jpeg[: len(jpeg) // 3])  # truncated
    (folder / "d_empty.png").write_bytes(b"")
    (folder / "e_text.png").write_text("not an image, only a name that says so")
    (folder / "notes.txt").write_text("skipped: not an image or DICOM file")
    (folder / ".hidden.png").write_bytes(b"")  # hidden: skipped
    pixels = np.asarray(Image.open(RADIOGRAPHS[3]))
    write_dicom(folder / "nested" / "f_good.dcm", pixels)
    dicom = write_dicom(None, pixels)
    (folder / "nested" / "g_broken.dcm").write_bytes(dicom[: len(dicom) // 2])  # pixel data cut short
    write_dicom(folder / "nested" / "h_no_extension", pixels)  # found by its DICOM preamble

    listed = root / "listed"
    (listed / "images").mkdir(parents=True)
    shutil.copy(RADIOGRAPHS[4], listed / "images" / "x.jpg")
    manifest = listed / "manifest.csv"
    manifest.write_text(f"label,path\nnormal,images/x.jpg\nnormal,missing.png\ncovid,{RADIOGRAPHS[5]}\n")
    return {"folder": folder, "manifest": manifest, "listed": listed}


def expected_paths(inputs) -> list[str]:
    folder, listed = inputs["folder"], inputs["listed"]
    names = ["a_good.png", "c_corrupt.jpg", "d_empty.png", "e_text.png", "nested/deeper/b_good.jpg",
             "nested/f_good.dcm", "nested/g_broken.dcm", "nested/h_no_extension"]
    return [str(folder / name) for name in names] + [
        str(listed / "images" / "x.jpg"), str(listed / "missing.png"), str(RADIOGRAPHS[5])]


GOOD = {"a_good.png", "b_good.jpg", "f_good.dcm", "h_no_extension", "x.jpg", RADIOGRAPHS[5].name}


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def rows(models, inputs, tmp_path_factory) -> list[dict[str, str]]:
    output = tmp_path_factory.mktemp("out") / "predictions.csv"
    run_batch_prediction(str(models[0]), [inputs["folder"], inputs["manifest"]], output, batch_size=3,
                         progress=False)
    return read_rows(output)


def test_one_row_per_input_in_a_deterministic_order(rows, inputs):
    assert [row["path"] for row in rows] == expected_paths(inputs)
    assert list(rows[0]) == ["path", "label", *PROBABILITY_COLUMNS, "input_check", "input_check_reason", "error"]


def test_good_files_get_probabilities_that_sum_to_one_and_their_argmax_as_label(rows):
    good = [row for row in rows if Path(row["path"]).name in GOOD]
    assert len(good) == len(GOOD)
    for row in good:
        probabilities = [float(row[column]) for column in PROBABILITY_COLUMNS]
        assert math.isclose(sum(probabilities), 1.0, abs_tol=1e-5)
        assert row["label"] == LABELS[int(np.argmax(probabilities))]
        assert row["error"] == "" and row["input_check"] == "passed" and row["input_check_reason"] == ""


def test_bad_files_get_their_error_and_no_prediction(rows):
    errors = {Path(row["path"]).name: row["error"] for row in rows if Path(row["path"]).name not in GOOD}
    assert set(errors) == {"c_corrupt.jpg", "d_empty.png", "e_text.png", "g_broken.dcm", "missing.png"}
    assert "truncated" in errors["c_corrupt.jpg"]
    assert "empty file" in errors["d_empty.png"]
    assert "not a recognised image format" in errors["e_text.png"]
    assert "PixelData" in errors["g_broken.dcm"]
    assert "no such file" in errors["missing.png"]
    for row in rows:
        if Path(row["path"]).name in errors:
            assert row["label"] == "" and all(row[c] == "" for c in PROBABILITY_COLUMNS) and row["input_check"] == ""


def test_probabilities_are_the_spaces_for_the_same_file(rows, models):
    space = ChestXrayPredictor.from_pretrained(models[0], precision="fp32")
    compared = 0
    for row in rows:
        if row["error"]:
            continue
        expected = space.predict(row["path"], heatmap=False).student.probabilities
        for label in LABELS:
            assert float(row[f"prob_{label}"]) == pytest.approx(expected[label], abs=1e-5)
        compared += 1
    assert compared == len(GOOD)


def test_batch_size_does_not_change_the_rows(rows, models, inputs, tmp_path):
    run_batch_prediction(str(models[0]), [inputs["folder"], inputs["manifest"]], tmp_path / "one.csv",
                         batch_size=1, progress=False)
    singles = read_rows(tmp_path / "one.csv")
    assert [r["path"] for r in singles] == [r["path"] for r in rows]
    for single, batched in zip(singles, rows, strict=True):
        assert single["label"] == batched["label"] and single["error"] == batched["error"]
        for column in PROBABILITY_COLUMNS:
            if batched[column]:
                assert float(single[column]) == pytest.approx(float(batched[column]), abs=1e-6)


@pytest.mark.parametrize("which", [0, 1], ids=["deit-rollout", "densenet-cam"])
def test_heatmaps_are_the_spaces_overlays_as_png(models, inputs, tmp_path, which):
    output, heatmaps = tmp_path / "p.csv", tmp_path / "heatmaps"
    run_batch_prediction(str(models[which]), [inputs["folder"]], output, heatmaps=heatmaps, progress=False)
    rows = read_rows(output)
    space = ChestXrayPredictor.from_pretrained(models[which], precision="fp32", check_input=False)
    written = sorted(heatmaps.glob("*.png"))
    assert len(written) == sum(1 for row in rows if not row["error"]) == 4
    for row in rows:
        if row["error"]:
            assert row["heatmap"] == ""
            continue
        assert Path(row["heatmap"]).parent == heatmaps and Path(row["heatmap"]) in written
        png = np.asarray(Image.open(row["heatmap"]), dtype=np.int16)
        expected = space.predict(row["path"]).overlay.astype(np.int16)
        assert png.shape == expected.shape
        # the batched forward vs the Space's fused batch-1 one: a heat level may round the other way, rarely
        difference = np.abs(png - expected)
        assert difference.max() <= 4 and (difference > 0).mean() < 0.005


def test_the_input_check_verdict_and_skip_refused(models, tmp_path):
    colour_shapes().save(tmp_path / "photo.png")
    shutil.copy(RADIOGRAPHS[0], tmp_path / "xray.jpg")
    run_batch_prediction(str(models[0]), [tmp_path / "photo.png", tmp_path / "xray.jpg"], tmp_path / "a.csv",
                         progress=False)
    photo, xray = read_rows(tmp_path / "a.csv")
    assert photo["input_check"] == "refused" and "colour image" in photo["input_check_reason"]
    assert photo["label"] in LABELS and photo["error"] == ""  # predicted all the same, flagged
    assert xray["input_check"] == "passed"
    run_batch_prediction(str(models[0]), [tmp_path / "photo.png", tmp_path / "xray.jpg"], tmp_path / "b.csv",
                         skip_refused=True, progress=False)
    photo, xray = read_rows(tmp_path / "b.csv")
    assert photo["input_check"] == "refused" and photo["label"] == "" and photo[PROBABILITY_COLUMNS[0]] == ""
    assert xray["label"] in LABELS
    run_batch_prediction(str(models[0]), [tmp_path / "photo.png"], tmp_path / "c.csv", check_input=False,
                         progress=False)
    assert read_rows(tmp_path / "c.csv")[0]["input_check"] == "off"


def test_the_command_line_writes_the_csv_and_shows_progress_unless_told_not_to(models, inputs, tmp_path, capsys):
    output = tmp_path / "deep" / "predictions.csv"
    assert main(["predict", str(models[0]), str(inputs["manifest"]), "--output", str(output),
                 "--batch_size", "2"]) == 0
    captured = capsys.readouterr()
    assert "wrote 3 rows" in captured.out and "1 with errors" in captured.out
    assert "3/3" in captured.err  # the progress bar
    assert [row["path"] for row in read_rows(output)] == expected_paths(inputs)[-3:]
    assert main(["predict", str(models[0]), str(inputs["manifest"]), "--output", str(output), "--no_progress"]) == 0
    assert "3/3" not in capsys.readouterr().err


def test_a_missing_or_wrong_model_folder_is_a_clear_error(inputs, tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        main(["predict", str(tmp_path / "no_model"), str(inputs["folder"]), "--output", str(tmp_path / "p.csv")])
    assert done.value.code == 2
    assert "no_model: no such folder" in capsys.readouterr().err
    (tmp_path / "empty_model").mkdir()
    with pytest.raises(SystemExit):
        main(["predict", str(tmp_path / "empty_model"), str(inputs["folder"]), "--output", str(tmp_path / "p.csv")])
    assert "not a saved model folder (no config.json" in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()


def test_no_inputs_is_a_clear_error(models, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(SystemExit) as done:
        main(["predict", str(models[0]), str(tmp_path / "empty"), "--output", str(tmp_path / "p.csv")])
    assert done.value.code == 2
    assert "no input files found" in capsys.readouterr().err
    with pytest.raises(BatchPredictionError, match="no_such.png: no such file or folder"):
        expand_inputs([tmp_path / "no_such.png"])
    (tmp_path / "list.csv").write_text("label,where\nnormal,a.png\n")
    with pytest.raises(BatchPredictionError, match="no path column"):
        expand_inputs([tmp_path / "list.csv"])
    assert [f.path for f in expand_inputs([tmp_path / "list.csv"], path_column="where")] == [str(tmp_path / "a.png")]


def test_an_empty_manifest_cell_is_a_row_with_its_error(tmp_path):
    (tmp_path / "one_column.csv").write_text("images\nx.png\n\n,\n")
    files = expand_inputs([tmp_path / "one_column.csv"])  # one column: it holds the paths
    assert files[0].path == str(tmp_path / "x.png") and not files[0].error
    assert len(files) == 2 and files[1].error == "line 4 of one_column.csv: empty 'images' cell"


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_asking_for_cuda_without_one_is_a_clear_error(models, inputs, tmp_path):
    with pytest.raises(BatchPredictionError, match="CUDA is not available"):
        run_batch_prediction(str(models[0]), [inputs["folder"]], tmp_path / "p.csv", device="cuda", progress=False)


def test_an_image_that_fails_in_the_model_step_fails_alone(models, tmp_path, monkeypatch):
    from hf_deitcxr.serving.predictor import RadiographClassifier

    for name, source in (("a.jpg", RADIOGRAPHS[0]), ("c.jpg", RADIOGRAPHS[1])):
        shutil.copy(source, tmp_path / name)
    Image.open(RADIOGRAPHS[2]).resize((100, 100)).save(tmp_path / "b.png")
    resize = RadiographClassifier.resize

    def failing_resize(self, grey, framed=False):
        if grey.size == (100, 100):
            raise ValueError("cannot frame this one")
        return resize(self, grey, framed=framed)

    monkeypatch.setattr(RadiographClassifier, "resize", failing_resize)
    summary = run_batch_prediction(str(models[0]), [tmp_path], tmp_path / "p.csv", batch_size=3, progress=False)
    a, b, c = read_rows(tmp_path / "p.csv")
    assert b["error"] == "ValueError: cannot frame this one" and b["label"] == ""
    assert a["label"] in LABELS and c["label"] in LABELS and a["error"] == c["error"] == ""
    assert summary.rows == 3 and summary.errors == 1
