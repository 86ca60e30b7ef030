"""Class balancing for imbalanced radiograph data sets (the module from the mammography transfer-learning
work).

Strategies (`BalancingStrategy`):
- `none`: train on the natural class frequencies.
- `weighted_sampler`: draw training samples with probability 1 / (count of their class), with replacement, so
  every class is seen equally often per epoch; single-process only (a custom sampler).
- `class_weighted_loss`: cross-entropy with weights n_samples / (n_classes * count_c) (scikit-learn's
  "balanced"), the same data order as `none`; works with any number of processes.
- `oversample`: an index list repeating minority-class samples up to the majority count (whole copies first,
  then a random remainder), shuffled; with random augmentation each repeat is a different image.
- `source_balanced`: like `weighted_sampler`, but within each class every (class, source) cell is drawn equally
  often: a sample's probability is 1 / (n_classes * sources of its class * count of its cell), so classes stay
  balanced and no source dominates a class (needs the training split's `source` column; single-process only).

Every function validates the labels: empty, non-integer, out of range, or a class without any sample (its
weight would be infinite, and there is nothing to draw or repeat) raise `ValueError`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight
from torch.utils.data import WeightedRandomSampler

Labels = Sequence[int] | np.ndarray | torch.Tensor


class BalancingStrategy(str, Enum):
    NONE = "none"
    WEIGHTED_SAMPLER = "weighted_sampler"
    CLASS_WEIGHTED_LOSS = "class_weighted_loss"
    OVERSAMPLE = "oversample"
    SOURCE_BALANCED = "source_balanced"

    @classmethod
    def parse(cls, value: str | BalancingStrategy) -> BalancingStrategy:
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(repr(member.value) for member in cls)
            raise ValueError(f"unknown balancing strategy {value!r}; choose one of {choices}") from None


def class_counts(labels: Labels, num_classes: int) -> torch.Tensor:
    """Number of samples of each class, int64 (num_classes,); zero counts are allowed here."""
    counts = np.bincount(_label_array(labels, num_classes), minlength=num_classes)
    return torch.from_numpy(counts).to(torch.int64)


def balanced_class_weights(labels: Labels, num_classes: int) -> torch.Tensor:
    """float32 (num_classes,) weights n_samples / (n_classes * count_c), i.e. scikit-learn's "balanced".

    A uniform-class data set gets all ones; the weighted loss then equals plain cross-entropy.
    """
    array = _label_array(labels, num_classes)
    _require_every_class(array, num_classes, "class_weighted_loss")
    weights = compute_class_weight("balanced", classes=np.arange(num_classes), y=array)
    return torch.as_tensor(weights, dtype=torch.float32)


def make_weighted_sampler(
    labels: Labels, num_classes: int, num_samples: int | None = None, seed: int = 0
) -> WeightedRandomSampler:
    """Sampler drawing each sample with probability proportional to 1 / (count of its class), with
    replacement.

    `num_samples` (draws per epoch) defaults to the data set size. A seeded generator makes the sequence of
    epochs reproducible.
    """
    array = _label_array(labels, num_classes)
    counts = _require_every_class(array, num_classes, "weighted_sampler")
    per_sample = torch.from_numpy(1.0 / counts[array]).to(torch.float64)
    return _seeded_sampler(per_sample, num_samples, seed)


def source_balanced_weights(labels: Labels, sources: Sequence[object], num_classes: int) -> torch.Tensor:
    """float64 (n_samples,) draw probabilities: each class gets 1 / n_classes of the mass, split equally over the
    (class, source) cells of that class, and equally over the samples of a cell. They sum to 1."""
    array = _label_array(labels, num_classes)
    _require_every_class(array, num_classes, "source_balanced")
    if sources is None:
        raise ValueError("'source_balanced' balancing needs the source of every training sample (a `source` column)")
    names = [str(source) for source in sources]
    if len(names) != len(array):
        raise ValueError(f"{len(names)} sources for {len(array)} labels")
    cells = Counter(zip(array.tolist(), names, strict=True))
    sources_per_class = Counter(label for label, _ in cells)
    weights = [1.0 / (num_classes * sources_per_class[label] * cells[(label, name)])
               for label, name in zip(array.tolist(), names, strict=True)]
    return torch.tensor(weights, dtype=torch.float64)


def make_source_balanced_sampler(
    labels: Labels, sources: Sequence[object], num_classes: int, num_samples: int | None = None, seed: int = 0
) -> WeightedRandomSampler:
    """Sampler drawing with `source_balanced_weights`, with replacement; `num_samples` defaults to the data set
    size and a seeded generator makes the draws reproducible."""
    return _seeded_sampler(source_balanced_weights(labels, sources, num_classes), num_samples, seed)


def _seeded_sampler(weights: torch.Tensor, num_samples: int | None, seed: int) -> WeightedRandomSampler:
    """Draws with replacement by `weights`, `num_samples` a time (default: one per sample), from a seeded generator."""
    draws = len(weights) if num_samples is None else int(num_samples)
    if draws <= 0:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    generator = torch.Generator().manual_seed(seed)
    return WeightedRandomSampler(weights, num_samples=draws, replacement=True, generator=generator)


def oversample_indices(labels: Labels, num_classes: int, seed: int = 0) -> list[int]:
    """Indices in which every class appears as often as the majority class, shuffled.

    Each minority sample is repeated as evenly as possible (whole copies, then a random subset without
    replacement), so no image is repeated much more than another. Every original index appears at least once.
    """
    array = _label_array(labels, num_classes)
    counts = _require_every_class(array, num_classes, "oversample")
    target = int(counts.max())
    rng = np.random.default_rng(seed)
    chosen = []
    for label in range(num_classes):
        members = np.flatnonzero(array == label)
        copies, remainder = divmod(target, len(members))
        chosen.append(np.tile(members, copies))
        chosen.append(rng.choice(members, size=remainder, replace=False))
    indices = np.concatenate(chosen)
    rng.shuffle(indices)
    return indices.tolist()


def weighted_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Cross-entropy with optional per-class weights (a weighted batch mean, as in `F.cross_entropy`) and label
    smoothing (`F.cross_entropy`'s: the target is (1 - e) one-hot + e / num_classes)."""
    if class_weights is not None:
        if class_weights.shape != (logits.shape[-1],):
            raise ValueError(f"{tuple(class_weights.shape)} class weights for {logits.shape[-1]} classes")
        class_weights = class_weights.to(device=logits.device, dtype=torch.float32)
    return F.cross_entropy(logits.float(), labels, weight=class_weights, label_smoothing=label_smoothing)


@dataclass
class BalancingPlan:
    """What a strategy changes: the loss weights, the sampler, or the training indices (None = unchanged)."""

    strategy: BalancingStrategy
    class_weights: torch.Tensor | None = None
    sampler: WeightedRandomSampler | None = None
    indices: list[int] | None = None


def plan_balancing(
    strategy: str | BalancingStrategy, labels: Labels, num_classes: int, seed: int = 0,
    sources: Sequence[object] | None = None,
) -> BalancingPlan:
    """The balancing ingredients of `strategy` for these training labels (`sources`: only `source_balanced`
    uses them)."""
    strategy = BalancingStrategy.parse(strategy)
    _label_array(labels, num_classes)  # validate even for "none": bad labels are a data error regardless
    if strategy is BalancingStrategy.CLASS_WEIGHTED_LOSS:
        return BalancingPlan(strategy, class_weights=balanced_class_weights(labels, num_classes))
    if strategy is BalancingStrategy.WEIGHTED_SAMPLER:
        return BalancingPlan(strategy, sampler=make_weighted_sampler(labels, num_classes, seed=seed))
    if strategy is BalancingStrategy.OVERSAMPLE:
        return BalancingPlan(strategy, indices=oversample_indices(labels, num_classes, seed=seed))
    if strategy is BalancingStrategy.SOURCE_BALANCED:
        return BalancingPlan(strategy, sampler=make_source_balanced_sampler(labels, sources, num_classes, seed=seed))
    return BalancingPlan(strategy)


def _label_array(labels: Labels, num_classes: int) -> np.ndarray:
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    array = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if array.size == 0:
        raise ValueError("no labels: cannot balance an empty training set")
    if array.ndim != 1:
        raise ValueError(f"labels must be one class index per sample (1-D), got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        if not np.issubdtype(array.dtype, np.floating) or not np.all(array == np.round(array)):
            raise ValueError(f"labels must be integer class indices, got dtype {array.dtype}")
        array = array.astype(np.int64)
    low, high = int(array.min()), int(array.max())
    if low < 0 or high >= num_classes:
        raise ValueError(
            f"labels must be in [0, {num_classes - 1}] for {num_classes} classes, found {low}..{high}"
        )
    return array.astype(np.int64, copy=False)


def _require_every_class(array: np.ndarray, num_classes: int, strategy: str) -> np.ndarray:
    counts = np.bincount(array, minlength=num_classes)
    missing = np.flatnonzero(counts == 0).tolist()
    if missing:
        raise ValueError(
            f"class(es) {missing} have no training samples, so {strategy!r} balancing is undefined: "
            "the balanced weight n_samples / (n_classes * count) would be infinite (division by zero) and "
            "there is nothing to draw or repeat. Add samples of those classes, drop them from the class "
            "list, or use balancing='none'."
        )
    return counts


__all__ = [
    "BalancingPlan",
    "BalancingStrategy",
    "balanced_class_weights",
    "class_counts",
    "make_source_balanced_sampler",
    "make_weighted_sampler",
    "oversample_indices",
    "plan_balancing",
    "source_balanced_weights",
    "weighted_cross_entropy",
]
