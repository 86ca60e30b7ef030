"""`hf-deitcxr`: each subcommand reaches its own argument parser (no wrapper scripts needed)."""

from __future__ import annotations

import pytest

from hf_deitcxr.cli import main

SUBCOMMAND_OPTIONS = {
    "train": "--teacher_name_or_path",
    "benchmark": "--methods",
    "tune": "--eval_every_images",
    "gpu-benchmark": "--peak_tflops",
    "push": "--repo_id",
    "predict": "--heatmaps",
}


@pytest.mark.parametrize("command", list(SUBCOMMAND_OPTIONS))
def test_subcommand_help_is_its_own_parsers(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    shown = capsys.readouterr().out
    assert SUBCOMMAND_OPTIONS[command] in shown
    others = [option for other, option in SUBCOMMAND_OPTIONS.items() if other != command]
    assert not [option for option in others if f"{option} " in shown or f"{option}\n" in shown]


def test_train_with_task_mammo_reaches_the_mammography_parser(capsys):
    with pytest.raises(SystemExit) as done:
        main(["train", "--task", "mammo", "--help"])
    assert done.value.code == 0
    assert "--num_global_layers" in capsys.readouterr().out


def test_unknown_arguments_of_a_plain_subcommand_are_refused(capsys):
    with pytest.raises(SystemExit) as done:
        main(["validate-data", "--dataset", "x", "--no_such_flag"])
    assert done.value.code == 2
    assert "--no_such_flag" in capsys.readouterr().err
