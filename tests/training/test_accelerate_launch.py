"""Distillation launched as the README launches multi-GPU runs (`accelerate launch`), here with two CPU processes."""

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from transformers import DeiTConfig, DeiTForImageClassificationWithTeacher

from hf_deitcxr import DenseNetConfig, DenseNetForImageClassification, make_image_processor
from tests.helpers.synthetic import write_imagefolder
from tests.helpers.tiny_models import LABELS

REPO = Path(__file__).resolve().parents[2]
PER_CLASS, PER_DEVICE_BATCH, STEPS = 40, 8, 4


def test_accelerate_launch_two_cpu_processes(tmp_path):
    data = write_imagefolder(tmp_path / "data", {"train": PER_CLASS, "validation": 4})
    torch.manual_seed(0)
    # The teacher only has to run (an untrained one with the data's labels will do); the student starts from a
    # local stand-in for the Hub's ImageNet DeiT.
    teacher = tmp_path / "teacher"
    DenseNetForImageClassification(DenseNetConfig(
        growth_rate=8, block_config=[2, 2], num_init_features=16, image_size=32,
        id2label=dict(enumerate(LABELS)), label2id={name: i for i, name in enumerate(LABELS)},
    )).save_pretrained(teacher)
    make_image_processor(32).save_pretrained(teacher)
    student_init = tmp_path / "deit-distilled-standin"
    DeiTForImageClassificationWithTeacher(DeiTConfig(
        hidden_size=48, num_hidden_layers=2, num_attention_heads=3, intermediate_size=96, image_size=32,
        patch_size=8, num_labels=1000,
    )).save_pretrained(student_init)

    output = tmp_path / "ddp"
    with socket.socket() as sock:  # a free rendezvous port: other test runs on this machine may hold 29500
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # `--multi_gpu` is accelerate's multi-process launcher (torch.distributed.run); with `--cpu` instead, accelerate
    # starts a single process whatever --num_processes says. `--use_cpu true` makes the Trainer use gloo on CPU.
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--main_process_port", str(port), "--mixed_precision", "no", "--dynamo_backend", "no",
        str(REPO / "scripts" / "train.py"),
        "--stage", "distill", "--model_name_or_path", str(student_init),
        "--teacher_name_or_path", str(teacher), "--dataset", str(data), "--output_dir", str(output),
        "--image_size", "32", "--patch_size", "8", "--per_device_train_batch_size", str(PER_DEVICE_BATCH),
        "--max_steps", str(STEPS), "--eval_strategy", "no", "--save_strategy", "no", "--logging_steps", "1",
        "--use_cpu", "true", "--seed", "0",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    state = json.loads((output / "trainer_state.json").read_text())
    assert state["global_step"] == STEPS
    # Each rank reads its half of the 3 x 40 training images, 8 per step: an epoch is ceil(60 / 8) = 8 steps, so
    # 4 steps are half an epoch. One process reading all 120 would need ceil(120 / 8) = 15 steps (epoch 4/15).
    steps_per_epoch = math.ceil(len(LABELS) * PER_CLASS / 2 / PER_DEVICE_BATCH)
    assert state["epoch"] == STEPS / steps_per_epoch == 0.5
    assert (output / "model.safetensors").exists() and (output / "metrics.json").exists()
