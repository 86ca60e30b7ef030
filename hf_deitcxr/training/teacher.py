"""Feed the student's batch to a teacher that expects other normalisation, channels or resolution."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class InputSpec:
    """How a model wants its pixels: normalised with mean/std, with `num_channels` channels, size x size."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_channels: int
    size: int

    @classmethod
    def create(cls, mean: Sequence[float], std: Sequence[float], num_channels: int, size: int) -> InputSpec:
        if len(mean) != len(std) or len(mean) not in (1, num_channels):
            raise ValueError(f"mean/std of length {len(mean)}/{len(std)} do not fit {num_channels} channels")
        return cls(tuple(float(m) for m in mean), tuple(float(s) for s in std), num_channels, int(size))


class TeacherInputAdapter(torch.nn.Module):
    """Re-expresses student-normalised pixels in the teacher's input convention (identity when they agree).

    The teacher sees the very same augmented image as the student, as DeiT distillation requires; only the encoding
    changes (undo the student's normalisation, adapt channels and size, apply the teacher's).
    """

    def __init__(self, student: InputSpec, teacher: InputSpec) -> None:
        super().__init__()
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


def _column(values: tuple[float, ...], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)
