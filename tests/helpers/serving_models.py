"""Tiny student + teacher folders saved as the Space loads them, the bundled sample radiographs, a colour photo."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageDraw

from hf_deitcxr import DeiTCXRConfig, DeiTCXRForImageClassificationWithTeacher, DenseNetConfig, make_image_processor
from hf_deitcxr.models.densenet import DenseNetForImageClassification

from .tiny_models import LABELS, tiny_deit_kwargs

SAMPLE = Path(__file__).resolve().parents[2] / "hf_deitcxr" / "sample_data" / "cxr3_sample" / "train"
RADIOGRAPHS = sorted(SAMPLE.glob("*/*.jpg"))


def save_tiny_models(root: Path) -> tuple[Path, Path]:
    """A 2-layer DeiT student (32 px, 4x4 patches grid) and a small DenseNet teacher, saved as the Space loads them."""
    torch.manual_seed(0)
    student = root / "student"
    DeiTCXRForImageClassificationWithTeacher(DeiTCXRConfig(**tiny_deit_kwargs())).save_pretrained(student)
    make_image_processor(32).save_pretrained(student)
    teacher = root / "teacher"
    config = DenseNetConfig(growth_rate=8, block_config=[2, 2], num_init_features=16, image_size=32,
                            id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)})
    DenseNetForImageClassification(config).save_pretrained(teacher)
    make_image_processor(32).save_pretrained(teacher)
    return student, teacher


def save_tiny_models_that_tell_apart(root: Path, expected: dict[Path, tuple[str, str]]) -> tuple[Path, Path]:
    """`save_tiny_models`, with the heads set by hand so that each of two images gets its own labels.

    `expected` maps two image files to the (student, teacher) labels they must be classified as. Random tiny models
    give every image nearly the same probabilities; here each linear head becomes a probe along d = f(a) - f(b),
    the difference of the two images' head inputs f (caught from the serving path): logit_i = s (d.f - m),
    logit_j = -s (d.f - m), every other logit 0, with m = d.(f(a) + f(b)) / 2 and s = 8 / |d|^2. Image a then gets
    logits (+4, -4, 0) and image b (-4, +4, 0): a top class with probability ~0.98 that only the right image gives.
    """
    from hf_deitcxr.serving import ChestXrayPredictor

    (first, second), labels = list(expected), list(expected.values())
    assert all(labels[0][k] != labels[1][k] for k in (0, 1)), "each model must tell the two images apart"
    student_dir, teacher_dir = save_tiny_models(root)
    random = ChestXrayPredictor.from_pretrained(student_dir, teacher_dir, precision="fp32", fused=False,
                                                check_input=False)  # the model input does not depend on the check
    heads = {"cls_classifier": random.student.model.cls_classifier,
             "distillation_classifier": random.student.model.distillation_classifier,
             "classifier": random.teacher.model.classifier}
    inputs: dict[str, list[torch.Tensor]] = {name: [] for name in heads}
    hooks = [head.register_forward_hook(lambda module, args, output, name=name: inputs[name].append(args[0][0].clone()))
             for name, head in heads.items()]
    for image in (first, second):
        random.predict(image, heatmap=False)
    for hook in hooks:
        hook.remove()

    student = DeiTCXRForImageClassificationWithTeacher.from_pretrained(student_dir)
    teacher = DenseNetForImageClassification.from_pretrained(teacher_dir)
    with torch.no_grad():
        for name, model, which in (("cls_classifier", student, 0), ("distillation_classifier", student, 0),
                                   ("classifier", teacher, 1)):
            a, b = (features.double() for features in inputs[name])
            d = a - b
            assert float(d @ d) > 1e-12, f"{first} and {second} give the same {name} input: the same image?"
            scale, middle = 8.0 / float(d @ d), float(d @ (a + b)) / 2
            weight, bias = torch.zeros(len(LABELS), d.numel(), dtype=torch.float64), torch.zeros(len(LABELS))
            i, j = LABELS.index(labels[0][which]), LABELS.index(labels[1][which])
            weight[i], bias[i] = scale * d, -scale * middle
            weight[j], bias[j] = -scale * d, scale * middle
            getattr(model, name).weight.copy_(weight)
            getattr(model, name).bias.copy_(bias)
    student.save_pretrained(student_dir)
    teacher.save_pretrained(teacher_dir)
    return student_dir, teacher_dir


def colour_shapes(size=(300, 240)) -> Image.Image:
    image = Image.new("RGB", size, (30, 120, 200))
    draw = ImageDraw.Draw(image)
    draw.ellipse([40, 30, 200, 190], fill=(250, 200, 0), outline=(0, 0, 0), width=4)
    draw.rectangle([150, 120, 290, 230], fill=(200, 30, 40))
    return image
