"""The frozen teacher inside `DistillationTrainer`: it stays frozen (weights and batch-norm statistics unchanged, no
gradients, eval mode), it sees the student's augmented batch through its input adapter and its logits reach the
student's distillation loss, and cached logits equal online ones."""

from __future__ import annotations

import pytest
import torch
from transformers import TrainingArguments

from hf_deitcxr import (
    DeiTCXRConfig,
    DeiTCXRForImageClassificationWithTeacher,
    DenseNetConfig,
    DenseNetForImageClassification,
)
from hf_deitcxr.data.augmentation import AugmentationConfig, RadiographAugmentation
from hf_deitcxr.data.collate import RadiographCollator
from hf_deitcxr.data.image_cache import CachedImageDataset
from hf_deitcxr.data.input_spec import InputSpec
from hf_deitcxr.training.teacher import FrozenTeacher, TeacherInputAdapter
from hf_deitcxr.training.trainer import DistillationTrainer
from tests.helpers.tiny_models import LABELS, tiny_deit_kwargs
from tests.helpers.tolerances import SAME_FORWARD

SIZE = 32
STUDENT_SPEC = InputSpec.create([0.5], [0.25], 3, SIZE)
# Another normalisation than the student's, so a teacher fed the student's pixels unconverted is detectable.
TEACHER_SPEC = InputSpec.create([0.485, 0.456, 0.406], [0.229, 0.224, 0.225], 3, SIZE)


def images(count: int = 12) -> CachedImageDataset:
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (count, 1, SIZE, SIZE), dtype=torch.uint8, generator=generator)
    return CachedImageDataset(pixels, [i % len(LABELS) for i in range(count)])


def collator(augment: bool, return_indices: bool = False) -> RadiographCollator:
    augmentation = RadiographAugmentation(AugmentationConfig()) if augment else None
    return RadiographCollator(SIZE, STUDENT_SPEC.mean, STUDENT_SPEC.std, num_channels=3, augmentation=augmentation,
                              return_indices=return_indices)


def frozen_teacher() -> FrozenTeacher:
    torch.manual_seed(0)
    # Built, not loaded: a fresh module is in training mode, as a teacher must not stay.
    model = DenseNetForImageClassification(DenseNetConfig(growth_rate=8, block_config=[2, 2], num_init_features=16,
                                                          num_labels=len(LABELS)))
    return FrozenTeacher(model, TeacherInputAdapter(STUDENT_SPEC, TEACHER_SPEC))


def distill(teacher: FrozenTeacher, data_collator: RadiographCollator, tmp_path, steps: int = 3):
    """Train a tiny student for `steps` steps; returns what its forward received at each step."""
    torch.manual_seed(0)
    student = DeiTCXRForImageClassificationWithTeacher(DeiTCXRConfig(**tiny_deit_kwargs(distillation_type="soft")))
    received = []
    student.register_forward_pre_hook(
        lambda module, args, kwargs: received.append(
            {"pixel_values": kwargs["pixel_values"].clone(), "teacher_logits": kwargs.get("teacher_logits")}
        ) if module.training else None,
        with_kwargs=True,
    )
    args = TrainingArguments(str(tmp_path), max_steps=steps, per_device_train_batch_size=4, learning_rate=1e-2,
                             save_strategy="no", use_cpu=True, report_to="none", disable_tqdm=True,
                             remove_unused_columns=False, label_names=["labels"])
    DistillationTrainer(model=student, args=args, train_dataset=images(), data_collator=data_collator,
                        teacher=teacher).train()
    assert len(received) == steps
    return received


def test_teacher_stays_frozen_while_the_student_trains(tmp_path):
    teacher = frozen_teacher()
    before = {name: tensor.clone() for name, tensor in teacher.model.state_dict().items()}
    modes = []
    teacher.model.register_forward_pre_hook(lambda module, args: modes.append(module.training))
    distill(teacher, collator(augment=True), tmp_path)

    assert modes and not any(modes), "the teacher must run in eval mode (batch-norm statistics, dropout)"
    after = teacher.model.state_dict()
    changed = [name for name in before if not torch.equal(before[name], after[name])]
    assert not changed, f"teacher tensors changed: {changed[:5]}"
    assert all(not p.requires_grad and p.grad is None for p in teacher.model.parameters())
    teacher.train()
    assert not teacher.model.training


def test_teacher_sees_the_students_augmented_batch_through_its_adapter(tmp_path):
    teacher = frozen_teacher()
    seen = []
    hook = teacher.model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["pixel_values"].clone()), with_kwargs=True
    )
    received = distill(teacher, collator(augment=True), tmp_path)
    hook.remove()

    assert len(seen) == len(received)
    adapter = TeacherInputAdapter(STUDENT_SPEC, TEACHER_SPEC)
    for step, teacher_input in zip(received, seen, strict=True):
        torch.testing.assert_close(teacher_input, adapter(step["pixel_values"]), rtol=0, atol=0)
        assert step["teacher_logits"] is not None, "the student's distillation head must get the teacher's logits"
        with torch.no_grad():
            expected = teacher.model(pixel_values=teacher_input).logits.float()
        torch.testing.assert_close(step["teacher_logits"], expected, **SAME_FORWARD)
    # The batches were augmented: no student input equals the plain collation of any training image.
    plain = collator(augment=False)([images()[i] for i in range(len(images()))])["pixel_values"]
    for step in received:
        for image in step["pixel_values"]:
            assert not any(torch.equal(image, original) for original in plain)


def test_cached_teacher_logits_equal_online_ones(tmp_path):
    teacher = frozen_teacher()
    data = images()
    # Shuffled batches: each row must land at its own sample index.
    loader = torch.utils.data.DataLoader(data, batch_size=5, shuffle=True, collate_fn=collator(False, True),
                                         generator=torch.Generator().manual_seed(0))
    cache = teacher.cache_logits(loader, len(data))
    batch = collator(False, True)([data[i] for i in range(len(data))])
    torch.testing.assert_close(cache, teacher.online_logits(batch["pixel_values"]), **SAME_FORWARD)

    received = distill(teacher, collator(augment=False, return_indices=True), tmp_path)
    for step in received:
        torch.testing.assert_close(step["teacher_logits"], teacher.online_logits(step["pixel_values"]),
                                   **SAME_FORWARD)
    with pytest.raises(ValueError, match="sample_index"):
        teacher(batch["pixel_values"])


@pytest.mark.parametrize("targets", ["own", "original"])
def test_processed_variants_are_taught_with_their_own_or_the_originals_logits(targets):
    from hf_deitcxr.training.arguments import DataArguments
    from hf_deitcxr.training.run import cache_teacher_logits

    originals = images(6)
    variants = CachedImageDataset(255 - originals.pixels, originals.labels)  # any change the teacher sees
    data = CachedImageDataset.concatenate([originals, variants])
    teacher = frozen_teacher()
    arguments = DataArguments(dataset="data", augment=False, teacher_logit_cache=True, processing_variants=1,
                              variant_targets=targets)
    cache_teacher_logits(teacher, data, collator(False, True), arguments, batch_size=4)
    batch = collator(False, True)([data[i] for i in range(len(data))])
    online = teacher.online_logits(batch["pixel_values"])
    assert teacher.logit_cache.shape == online.shape
    torch.testing.assert_close(teacher.logit_cache[:6], online[:6], **SAME_FORWARD)
    if targets == "own":
        torch.testing.assert_close(teacher.logit_cache[6:], online[6:], **SAME_FORWARD)
    else:
        torch.testing.assert_close(teacher.logit_cache[6:], online[:6], **SAME_FORWARD)
        assert not torch.allclose(online[6:], online[:6])


@pytest.mark.parametrize("overrides", [dict(variant_targets="original", teacher_logit_cache=True),
                                       dict(variant_targets="original", processing_variants=1),
                                       dict(variant_targets="nearest")])
def test_variant_targets_are_validated(overrides):
    from hf_deitcxr.training.arguments import DataArguments

    with pytest.raises(ValueError, match="variant_targets"):
        DataArguments(dataset="data", augment=False, **overrides)
