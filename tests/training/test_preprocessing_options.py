"""`--intensity_normalization` / `--remove_border`: a trained model's folder carries them, and a student must be
distilled with its teacher's."""

from __future__ import annotations

import json

import pytest
from transformers import AutoImageProcessor

from hf_deitcxr.cli import main as cli_main
from hf_deitcxr.model_card import build_model_card
from hf_deitcxr.models.deit_cxr.image_processing_deit_cxr import GreyPreprocessing, RadiographImageProcessor
from tests.helpers.standins import save_cxr_standins
from tests.helpers.synthetic import write_imagefolder

COMMON = ["--image_size", "32", "--patch_size", "8", "--max_steps", "2", "--per_device_train_batch_size", "4",
          "--eval_strategy", "no", "--save_strategy", "no", "--seed", "0", "--use_cpu", "true", "--bf16", "false",
          "--report_to", "none", "--disable_tqdm", "true"]
REMEDY = ["--intensity_normalization", "equalize", "--remove_border", "true"]


def test_a_normalised_teacher_and_student_save_their_preprocessing_and_must_agree(tmp_path, one_torch_thread):
    data = write_imagefolder(tmp_path / "data", {"train": 6, "validation": 3})
    teacher_init, _ = save_cxr_standins(tmp_path)
    teacher = tmp_path / "teacher"
    assert cli_main(["train", "--stage", "teacher", "--dataset", str(data), "--output_dir", str(teacher),
                     "--model_name_or_path", str(teacher_init), *REMEDY, *COMMON]) == 0
    processor = AutoImageProcessor.from_pretrained(teacher)
    assert isinstance(processor, RadiographImageProcessor)
    assert GreyPreprocessing.from_processor(processor) == GreyPreprocessing("equalize", remove_border=True)
    metrics = json.loads((teacher / "metrics.json").read_text())
    assert metrics["extra"]["preprocessing"] == {"intensity_normalization": "equalize", "remove_border": True}

    distill = ["train", "--stage", "distill", "--dataset", str(data), "--teacher_name_or_path", str(teacher),
               "--augment", "false", "--teacher_logit_cache", "true", *COMMON]
    with pytest.raises(ValueError, match="--intensity_normalization"):
        cli_main([*distill, "--output_dir", str(tmp_path / "mismatched")])
    assert cli_main([*distill, *REMEDY, "--output_dir", str(tmp_path / "student")]) == 0
    saved = json.loads((tmp_path / "student" / "preprocessor_config.json").read_text())
    assert saved["intensity_normalization"] == "equalize" and saved["remove_border"] is True
    card = str(build_model_card(tmp_path / "student"))
    assert "uniform border bands removed, histogram equalisation at the input size" in card
    assert "non-stock" in card
    assert "non-stock" in str(build_model_card(tmp_path / "teacher"))  # the teacher's card names it too
