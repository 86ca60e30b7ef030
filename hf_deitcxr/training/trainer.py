"""`DistillationTrainer`: the HF `Trainer` with DeiT distillation from a frozen CNN teacher."""

from __future__ import annotations

import contextlib
from collections import defaultdict

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Trainer

from ..models.deit_cxr.modeling_deit_cxr import DeiTCXRForImageClassificationWithTeacher
from .teacher import TeacherInputAdapter


class DistillationTrainer(Trainer):
    """Trains a student (or, with no teacher, any image classifier) with the DeiT objective.

    - `teacher`: a frozen classifier evaluated under `no_grad` in eval mode on the same augmented batch as the
      student; `teacher_input_adapter` converts the batch to the teacher's own normalisation/channels/size.
    - `teacher_logit_cache`: precomputed teacher logits indexed by `sample_index` (only valid without random
      augmentation, see `compute_teacher_logits`); replaces the teacher forward.
    - `class_weights`: class-balanced cross-entropy (see `hf_deitcxr.data.balancing`).
    - `train_sampler`: e.g. a class-balancing `WeightedRandomSampler` (single process).

    The loss parts (`loss_ce`, `loss_distill`) are logged separately next to `loss`.
    """

    def __init__(
        self,
        *args,
        teacher: nn.Module | None = None,
        teacher_input_adapter: TeacherInputAdapter | None = None,
        teacher_logit_cache: torch.Tensor | None = None,
        class_weights: torch.Tensor | None = None,
        train_sampler: torch.utils.data.Sampler | None = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        # Our loss is a batch mean: let Trainer divide it by the gradient-accumulation steps.
        self.model_accepts_loss_kwargs = False
        self.teacher = self._freeze(teacher) if teacher is not None else None
        self.teacher_input_adapter = teacher_input_adapter
        self.teacher_logit_cache = teacher_logit_cache
        self.class_weights = class_weights
        self.train_sampler = train_sampler
        self._loss_sums: dict[str, float] = defaultdict(float)
        self._loss_counts: dict[str, int] = defaultdict(int)

    def _freeze(self, teacher: nn.Module) -> nn.Module:
        teacher.eval().requires_grad_(False)
        return teacher.to(self.args.device)

    def _get_train_sampler(self, train_dataset=None):
        if self.train_sampler is not None:
            if self.args.world_size > 1:
                raise ValueError("a custom train sampler (weighted_sampler balancing) needs a single process; "
                                 "use balancing='oversample' or 'class_weighted_loss' for multi-process training")
            return self.train_sampler
        return super()._get_train_sampler(train_dataset)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        sample_index = inputs.pop("sample_index", None)
        labels = inputs.pop("labels")
        is_student = isinstance(self.accelerator.unwrap_model(model), DeiTCXRForImageClassificationWithTeacher)

        if is_student:
            # Evaluation batches carry no teacher logits: their loss is the label loss of both heads.
            teacher_logits = self.teacher_logits(inputs["pixel_values"], sample_index) if model.training else None
            outputs = model(**inputs, labels=labels, teacher_logits=teacher_logits, class_weights=self.class_weights)
            loss = outputs.loss
            if model.training:
                self._accumulate("loss_ce", outputs.classification_loss)
                self._accumulate("loss_distill", outputs.distillation_loss)
        else:
            outputs = model(**inputs)
            weight = self.class_weights.to(outputs.logits.device) if self.class_weights is not None else None
            loss = F.cross_entropy(outputs.logits.float(), labels, weight=weight)
        return (loss, {"logits": outputs.logits}) if return_outputs else loss

    @torch.no_grad()
    def teacher_logits(self, pixel_values: torch.Tensor, sample_index: torch.Tensor | None) -> torch.Tensor | None:
        if self.teacher_logit_cache is not None:
            if sample_index is None:
                raise ValueError("teacher_logit_cache needs batches with 'sample_index' (collator return_indices=True)")
            return self.teacher_logit_cache[sample_index.cpu()].to(pixel_values.device)
        if self.teacher is None:
            return None
        teacher_inputs = self.teacher_input_adapter(pixel_values) if self.teacher_input_adapter else pixel_values
        with self._teacher_autocast(pixel_values.device):
            return self.teacher(pixel_values=teacher_inputs).logits.float()

    def _teacher_autocast(self, device: torch.device):
        dtype = torch.bfloat16 if self.args.bf16 else torch.float16 if self.args.fp16 else None
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=dtype)

    def _accumulate(self, name: str, value: torch.Tensor | None) -> None:
        if value is not None:
            self._loss_sums[name] += value.item()
            self._loss_counts[name] += 1

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # Average the loss parts over the steps since the last log, next to Trainer's own `loss`.
        if "loss" in logs:
            for name, total in self._loss_sums.items():
                logs[name] = round(total / max(self._loss_counts[name], 1), 4)
            self._loss_sums.clear()
            self._loss_counts.clear()
        super().log(logs, start_time)


@torch.no_grad()
def compute_teacher_logits(
    teacher: nn.Module,
    dataloader: torch.utils.data.DataLoader,
    num_samples: int,
    adapter: TeacherInputAdapter | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Teacher logits for every sample, indexed by `sample_index`: the teacher-logit cache.

    Valid only when the student trains without random augmentation (the teacher must see the student's exact
    input); it then removes the teacher's forward from every training step.
    """
    teacher = teacher.eval().to(device)
    cache: torch.Tensor | None = None
    seen = torch.zeros(num_samples, dtype=torch.bool)
    for batch in dataloader:
        pixels = batch["pixel_values"].to(device)
        logits = teacher(pixel_values=adapter(pixels) if adapter else pixels).logits.float().cpu()
        if cache is None:
            cache = torch.zeros(num_samples, logits.shape[-1])
        cache[batch["sample_index"]] = logits
        seen[batch["sample_index"]] = True
    if cache is None or not bool(seen.all()):
        raise ValueError("the dataloader did not cover every sample: cannot build a complete teacher-logit cache")
    return cache
