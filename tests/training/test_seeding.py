"""`--seed` decides a run: two fresh processes with one seed build bit-identical initial weights and log identical
losses over 20 fp32 CPU steps (a from-scratch student, with augmentation, stochastic depth and oversampling); another
seed differs; `--full_determinism` switches torch to deterministic algorithms before the model is built.

Fresh processes because torch seeds every new process differently: a run that builds its model before seeding
starts from different weights each time, which one process running twice would partly hide.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.synthetic import write_imagefolder

REPO = Path(__file__).resolve().parents[2]

# Runs `run_training` for each command line given as JSON; prints, per run, a digest of the weights the Trainer
# starts from (recorded when training begins, before any step), the logged losses and whether torch's deterministic
# algorithms were on when the model was built (Trainer turns them on itself, but only after that).
DRIVER = """
import hashlib, json, sys
import torch
from transformers import TrainerCallback
import hf_deitcxr.training.run as run
from hf_deitcxr.training.arguments import parse_training_arguments

deterministic_when_building = []
build_model = run.build_model

def recording_build_model(*args, **kwargs):
    deterministic_when_building.append(torch.are_deterministic_algorithms_enabled())
    return build_model(*args, **kwargs)

run.build_model = recording_build_model

class InitialWeights(TrainerCallback):
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        digest = hashlib.sha256()
        for name, tensor in sorted(model.state_dict().items()):
            digest.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
        self.digest = digest.hexdigest()

runs = []
for argv in json.loads(sys.argv[1]):
    initial = InitialWeights()
    model_args, data_args, training_args = parse_training_arguments(argv)
    run.run_training(model_args, data_args, training_args, callbacks=[initial])
    with open(training_args.output_dir + "/trainer_state.json") as handle:
        history = json.load(handle)["log_history"]
    runs.append({"initial_weights": initial.digest, "losses": [e["loss"] for e in history if "loss" in e],
                 "deterministic_when_building": deterministic_when_building[-1]})
print("RUNS " + json.dumps(runs))
"""


def student_run(data: Path, output: Path, seed: int, *extra: str) -> list[str]:
    return ["--stage", "baseline", "--student_preset", "deit-tiny", "--image_size", "32", "--patch_size", "8",
            "--dataset", str(data), "--output_dir", str(output), "--per_device_train_batch_size", "4",
            "--max_steps", "20", "--logging_steps", "1", "--eval_strategy", "no", "--save_strategy", "no",
            "--augment", "true", "--balancing", "oversample", "--seed", str(seed), "--use_cpu", "true",
            "--bf16", "false", "--report_to", "none", "--disable_tqdm", "true", *extra]


def start(runs: list[list[str]]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", DRIVER, json.dumps(runs)], env=env, cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def results(process: subprocess.Popen) -> list[dict]:
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    return json.loads(next(line for line in stdout.splitlines() if line.startswith("RUNS "))[5:])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("seeding")
    # Two classes out of balance, so oversampling draws repeats.
    data = write_imagefolder(root / "data", {"train": 6, "validation": 2})
    for extra in sorted((data / "train" / "covid").glob("*.png"))[:3]:
        extra.unlink()
    metadata = data / "train" / "metadata.csv"
    kept = [line for line in metadata.read_text().splitlines() if not any(
        f"covid/train_covid_{i:03d}.png" in line for i in range(3))]
    metadata.write_text("\n".join(kept) + "\n")
    # Both processes at once: each is mostly start-up (imports).
    first = start([student_run(data, root / "a-seed0", 0)])
    second = start([student_run(data, root / "b-seed0", 0),
                    student_run(data, root / "b-seed1", 1, "--full_determinism", "true")])
    (a_seed0,), (b_seed0, b_seed1) = results(first), results(second)
    return a_seed0, b_seed0, b_seed1


def test_one_seed_gives_the_same_initial_weights_and_losses_in_two_processes(runs):
    a_seed0, b_seed0, _ = runs
    assert len(a_seed0["losses"]) == 20
    assert a_seed0["initial_weights"] == b_seed0["initial_weights"]
    assert a_seed0["losses"] == b_seed0["losses"]


def test_another_seed_gives_other_weights_and_losses(runs):
    a_seed0, _, b_seed1 = runs
    assert b_seed1["initial_weights"] != a_seed0["initial_weights"]
    assert b_seed1["losses"] != a_seed0["losses"]


def test_full_determinism_is_on_before_the_model_is_built(runs):
    a_seed0, _, b_seed1 = runs
    assert b_seed1["deterministic_when_building"] and not a_seed0["deterministic_when_building"]
