"""A small ensemble of trained teachers distilled as one: the mean of their logits.

`--teacher_name_or_path a,b,c` distils from several teachers trained alike (e.g. three seeds of the quickstart's
DenseNet): the student's targets are the mean of their logits, i.e. the normalised geometric mean of their class
probabilities, whose argmax is the hard-distillation label. Every member must predict the same classes and take the
same input convention (one adapter feeds them all). Cached logits (the quickstart's case) cost one pass of each
member over the training images, once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from transformers.modeling_outputs import ImageClassifierOutput

ENSEMBLE_SEPARATOR = ","


def teacher_paths(name_or_path: str) -> list[str]:
    """The member paths of `--teacher_name_or_path` (one, or several separated by commas)."""
    paths = [part.strip() for part in str(name_or_path).split(ENSEMBLE_SEPARATOR)]
    if not all(paths):
        raise ValueError(f"--teacher_name_or_path {name_or_path!r} has an empty member (a stray comma?)")
    if len(set(paths)) != len(paths):
        raise ValueError(f"--teacher_name_or_path {name_or_path!r} names a teacher twice")
    return paths


class TeacherEnsemble(nn.Module):
    """Classifiers with the same classes and input, answering with the mean of their logits."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two teachers")
        self.members = nn.ModuleList(members)
        self.config = members[0].config  # the classes and input channels every member shares

    def forward(self, pixel_values: torch.Tensor, **kwargs) -> ImageClassifierOutput:
        logits = torch.stack([member(pixel_values=pixel_values).logits.float() for member in self.members])
        return ImageClassifierOutput(logits=logits.mean(dim=0))


__all__ = ["ENSEMBLE_SEPARATOR", "TeacherEnsemble", "teacher_paths"]
