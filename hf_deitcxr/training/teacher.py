"""The frozen teacher of distillation: its model, the conversion of the student's batch into its input convention,
the autocast it runs under and the optional cache of its logits, held together (as timm's
`TokenDistillationTeacher` holds the teacher and its normalisation)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ..data.input_spec import InputSpec

if TYPE_CHECKING:
    from ..data.view_bank import AugmentedViewBank


class TeacherInputAdapter(nn.Module):
    """Re-expresses student-normalised pixels in the teacher's input convention (identity when they agree).

    The teacher sees the very same augmented image as the student, as DeiT distillation requires; only the encoding
    changes (undo the student's normalisation, adapt channels and size, apply the teacher's).
    """

    def __init__(self, student: InputSpec, teacher: InputSpec) -> None:
        super().__init__()
        if student.preprocessing != teacher.preprocessing:
            # the adapter can re-encode pixels, not undo or redo an equalisation or a border crop
            raise ValueError(
                f"the teacher was trained on images prepared with {teacher.preprocessing.to_dict()}, the student "
                f"would see {student.preprocessing.to_dict()}: give the student the teacher's "
                "--intensity_normalization / --remove_border")
        self.student, self.teacher = student, teacher
        self.is_identity = student == teacher

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.is_identity:
            return pixel_values
        images = pixel_values * _column(self.student.std, pixel_values) + _column(self.student.mean, pixel_values)
        if self.teacher.num_channels == 1 and images.shape[1] == 3:
            images = images.mean(dim=1, keepdim=True)
        elif self.teacher.num_channels == 3 and images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        if images.shape[-1] != self.teacher.size or images.shape[-2] != self.teacher.size:
            images = F.interpolate(images, size=(self.teacher.size,) * 2, mode="bilinear", antialias=True)
        return (images - _column(self.teacher.mean, images)) / _column(self.teacher.std, images)


class FrozenTeacher(nn.Module):
    """A trained classifier used only for its logits on the student's batch.

    - `model`: put in eval mode with gradients off here, and kept so (`train()` does not unfreeze it), so dropout
      and batch-norm statistics never change and no optimizer can reach it;
    - `adapter`: converts the student's (augmented, normalised) pixels to the teacher's convention;
    - `autocast_dtype`: bf16/fp16 autocast for the teacher forward (the student's mixed precision), None for fp32;
    - a logit cache (`cache_logits`): logits of every training image computed once, looked up by `sample_index`
      instead of running the forward. Valid only when the student trains without random augmentation.
    - a view-logit cache (`cache_view_logits`): logits of each of the K augmented views of every training image of
      an `AugmentedViewBank`, looked up by (`view_index`, `sample_index`): augmented distillation without a teacher
      forward per step, valid when the student's batches are drawn from that bank (`ViewBankCollator`).

    Calling it returns float32 logits, from a cache when one was built, else from the forward.
    """

    def __init__(
        self, model: nn.Module, adapter: TeacherInputAdapter | None = None, autocast_dtype: torch.dtype | None = None
    ) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.adapter = adapter
        self.autocast_dtype = autocast_dtype
        self.logit_cache: torch.Tensor | None = None  # (N, C)
        self.view_logit_cache: torch.Tensor | None = None  # (K, N, C)

    def train(self, mode: bool = True) -> FrozenTeacher:
        # Frozen means frozen: whoever calls .train() on a parent module, the teacher stays in eval mode.
        return super().train(False)

    @torch.no_grad()
    def forward(self, pixel_values: torch.Tensor, sample_index: torch.Tensor | None = None,
                view_index: torch.Tensor | None = None) -> torch.Tensor:
        if self.view_logit_cache is not None:
            if sample_index is None or view_index is None:
                raise ValueError("a teacher view-logit cache needs batches with 'sample_index' and 'view_index' "
                                 "(drawn from its view bank by ViewBankCollator)")
            return self.view_logit_cache[view_index.cpu(), sample_index.cpu()].to(pixel_values.device)
        if self.logit_cache is not None:
            if sample_index is None:
                raise ValueError("a teacher-logit cache needs batches with 'sample_index' (collator return_indices)")
            return self.logit_cache[sample_index.cpu()].to(pixel_values.device)
        return self.online_logits(pixel_values)

    @torch.no_grad()
    def online_logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The teacher's forward on the student's pixels (never the cache)."""
        inputs = self.adapter(pixel_values) if self.adapter is not None else pixel_values
        with self._autocast(pixel_values.device):
            return self.model(pixel_values=inputs).logits.float()

    def _autocast(self, device: torch.device):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.autocast_dtype)

    @torch.no_grad()
    def cache_logits(self, dataloader: torch.utils.data.DataLoader, num_samples: int) -> torch.Tensor:
        """Compute the logits of every sample once (batches with `sample_index`) and answer from them from now on.

        The forward is the one of every training step (adapter, autocast), so cached logits equal online ones.
        """
        device = next(self.model.parameters()).device
        cache: torch.Tensor | None = None
        seen = torch.zeros(num_samples, dtype=torch.bool)
        for batch in dataloader:
            logits = self.online_logits(batch["pixel_values"].to(device)).cpu()
            if cache is None:
                cache = torch.zeros(num_samples, logits.shape[-1])
            cache[batch["sample_index"]] = logits
            seen[batch["sample_index"]] = True
        if cache is None or not bool(seen.all()):
            raise ValueError("the dataloader did not cover every sample: cannot build a complete teacher-logit cache")
        self.logit_cache, self.view_logit_cache = cache, None
        return cache

    def repeat_logit_cache(self, times: int) -> torch.Tensor:
        """The logit cache of N images as that of `times` x N (images i, N + i, 2N + i, ... share image i's logits):
        processed variants of an image taught with the logits of the original (`--variant_targets original`)."""
        if self.logit_cache is None or times < 1:
            raise ValueError("repeat_logit_cache needs a built logit cache (cache_logits) and times >= 1")
        self.logit_cache = self.logit_cache.repeat(times, 1)
        return self.logit_cache

    @torch.no_grad()
    def cache_view_logits(self, bank: AugmentedViewBank, batch_size: int) -> torch.Tensor:
        """Compute the logits of every view of `bank` once, (K, N, C) float32, and answer from them from now on.

        Each view's pixels are the bank's model input (`bank.pixel_values`, what `ViewBankCollator` gives the
        student) through the forward of every training step (adapter, autocast), so cached logits equal online ones.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        device = next(self.model.parameters()).device
        cache: torch.Tensor | None = None
        for view in range(bank.num_views):
            for start in range(0, bank.num_images, batch_size):
                sample_index = torch.arange(start, min(start + batch_size, bank.num_images))
                view_index = torch.full_like(sample_index, view)
                logits = self.online_logits(bank.pixel_values(view_index, sample_index).to(device)).cpu()
                if cache is None:
                    cache = torch.empty(bank.num_views, bank.num_images, logits.shape[-1], dtype=torch.float32)
                cache[view, sample_index] = logits
        if cache is None:
            raise ValueError("the view bank is empty: cannot build a teacher view-logit cache")
        self.view_logit_cache, self.logit_cache = cache, None
        return cache


def mixed_precision_dtype(bf16: bool, fp16: bool) -> torch.dtype | None:
    """The autocast dtype of a run's mixed precision (`TrainingArguments.bf16` / `.fp16`); None for fp32."""
    return torch.bfloat16 if bf16 else torch.float16 if fp16 else None


def _column(values: tuple[float, ...], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)


__all__ = ["FrozenTeacher", "InputSpec", "TeacherInputAdapter", "mixed_precision_dtype"]
