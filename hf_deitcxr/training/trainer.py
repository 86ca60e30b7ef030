"""`DistillationTrainer`: the HF `Trainer` with DeiT distillation from a frozen CNN teacher, an evaluation collator
of its own, and checkpoint loading that reads our Hub-layout checkpoints."""

from __future__ import annotations

import contextlib
import copy
import logging
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel, Trainer
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME

from ..data.balancing import weighted_cross_entropy
from ..models.deit_cxr.modeling_deit_cxr import DeiTCXRForImageClassificationWithTeacher
from .teacher import FrozenTeacher

logger = logging.getLogger(__name__)


class DistillationTrainer(Trainer):
    """Trains a student (or, with no teacher, any image classifier) with the DeiT objective.

    - `teacher`: a `FrozenTeacher` (model, input adapter, autocast, optional logit or view-logit cache) whose logits
      on the same augmented batch as the student's feed the distillation head.
    - `eval_data_collator`: the collator of evaluation and prediction batches (no augmentation); `data_collator`
      is the training one. Defaults to `data_collator`.
    - `class_weights`: class-balanced cross-entropy (see `hf_deitcxr.data.balancing`).
    - `train_sampler`: e.g. a class-balancing `WeightedRandomSampler` (single process).

    `args.label_smoothing_factor` smooths the cross-entropy to the labels of every model, in training and in the
    evaluation loss as Trainer's own `LabelSmoother` does (that smoother never runs: `compute_loss` is ours). The
    distillation term is left unsmoothed (see `deit_distillation_loss`).

    Resuming (`train(resume_from_checkpoint=...)`) and `load_best_model_at_end` load checkpoints the way
    `from_pretrained` does (see `load_checkpoint_weights`), since our checkpoints are written in the Hub layout.
    The loss parts (`loss_ce`, `loss_distill`) are logged separately next to `loss`.
    """

    def __init__(
        self,
        *args,
        teacher: FrozenTeacher | None = None,
        eval_data_collator: Callable | None = None,
        class_weights: torch.Tensor | None = None,
        train_sampler: torch.utils.data.Sampler | None = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        # Our loss is a batch mean: let Trainer divide it by the gradient-accumulation steps.
        self.model_accepts_loss_kwargs = False
        self.teacher = teacher.to(self.args.device) if teacher is not None else None
        self.eval_data_collator = eval_data_collator
        self.class_weights = class_weights
        self.train_sampler = train_sampler
        self._loss_sums: dict[str, float] = defaultdict(float)
        self._loss_counts: dict[str, int] = defaultdict(int)

    def _get_train_sampler(self, train_dataset=None):
        if self.train_sampler is not None:
            if self.args.world_size > 1:
                raise ValueError("a custom train sampler (weighted_sampler balancing) needs a single process; "
                                 "use balancing='oversample' or 'class_weighted_loss' for multi-process training")
            return self.train_sampler
        return super()._get_train_sampler(train_dataset)

    def get_eval_dataloader(self, eval_dataset=None):
        with self._collating_with(self.eval_data_collator):
            return super().get_eval_dataloader(eval_dataset)

    def get_test_dataloader(self, test_dataset):
        with self._collating_with(self.eval_data_collator):
            return super().get_test_dataloader(test_dataset)

    @contextlib.contextmanager
    def _collating_with(self, collator: Callable | None):
        # Trainer builds every dataloader from `self.data_collator`; evaluation must not augment.
        if collator is None:
            yield
            return
        training_collator, self.data_collator = self.data_collator, collator
        try:
            yield
        finally:
            self.data_collator = training_collator

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        sample_index = inputs.pop("sample_index", None)
        view_index = inputs.pop("view_index", None)  # a view-bank batch: which cached view each sample shows
        labels = inputs.pop("labels")
        is_student = isinstance(self.accelerator.unwrap_model(model), DeiTCXRForImageClassificationWithTeacher)

        if is_student:
            # Evaluation batches carry no teacher logits: their loss is the label loss of both heads.
            teacher_logits = (self.teacher_logits(inputs["pixel_values"], sample_index, view_index) if model.training
                              else None)
            outputs = model(**inputs, labels=labels, teacher_logits=teacher_logits, class_weights=self.class_weights,
                            label_smoothing=self.args.label_smoothing_factor)
            loss = outputs.loss
            if model.training:
                self._accumulate("loss_ce", outputs.classification_loss)
                self._accumulate("loss_distill", outputs.distillation_loss)
        else:
            # Every other model (teacher, mammography) is trained on the trainer side with the one class-weighted
            # cross-entropy; the model files keep their own `F.cross_entropy` call because, copied next to
            # checkpoints for remote code, they may import only torch and transformers.
            outputs = model(**inputs)
            loss = weighted_cross_entropy(outputs.logits, labels, self.class_weights,
                                          label_smoothing=self.args.label_smoothing_factor)
        return (loss, {"logits": outputs.logits}) if return_outputs else loss

    def teacher_logits(self, pixel_values: torch.Tensor, sample_index: torch.Tensor | None,
                       view_index: torch.Tensor | None = None) -> torch.Tensor | None:
        """The frozen teacher's logits for this batch (cached, per view, or online), None without a teacher."""
        return self.teacher(pixel_values, sample_index, view_index) if self.teacher is not None else None

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        target = self.accelerator.unwrap_model(model if model is not None else self.model)
        if not self._loads_like_from_pretrained(target, resume_from_checkpoint):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        logger.info("loading the model weights of %s", resume_from_checkpoint)
        load_checkpoint_weights(target, resume_from_checkpoint)

    def _load_best_model(self) -> None:
        folder = self.state.best_model_checkpoint
        if not self._loads_like_from_pretrained(self.model, folder):
            return super()._load_best_model()
        logger.info("loading the best model from %s (score: %s)", folder, self.state.best_metric)
        load_checkpoint_weights(self.model, folder)

    def _loads_like_from_pretrained(self, model: nn.Module, folder: str | None) -> bool:
        # Sharded strategies (DeepSpeed, FSDP) and adapters keep Trainer's own loading.
        return (isinstance(model, PreTrainedModel) and folder is not None and has_model_weights(folder)
                and not (self.is_deepspeed_enabled or self.is_fsdp_enabled or hasattr(model, "peft_config")))

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


def has_model_weights(folder: str | Path) -> bool:
    """Whether `folder` holds `save_pretrained` weights (safetensors or torch, single file or sharded)."""
    names = (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_NAME, WEIGHTS_INDEX_NAME)
    return any((Path(folder) / name).is_file() for name in names)


@torch.no_grad()
def load_checkpoint_weights(model: PreTrainedModel, folder: str | Path) -> None:
    """Load the weights of a `save_pretrained` folder (e.g. a Trainer checkpoint) into `model`, in place.

    The checkpoint is read by `from_pretrained` of the model's own class, so the weight renamings registered for it
    apply (ours are saved in the Hub layout, `deit.encoder.layer.*`, while the modules are named `deit.layers.*`);
    Trainer's own resume path reads the raw state dict and would leave every renamed weight at its initial value.
    A checkpoint that does not provide every weight of the model is an error, not a warning.
    """
    loaded, info = type(model).from_pretrained(str(folder), config=copy.deepcopy(model.config),
                                               output_loading_info=True)
    problems = {kind: sorted(keys) for kind in ("missing_keys", "unexpected_keys", "mismatched_keys")
                if (keys := info.get(kind))}
    if problems:
        raise ValueError(f"the checkpoint {folder} does not match the {type(model).__name__} being trained: {problems}")
    model.load_state_dict(loaded.state_dict())


__all__ = ["DistillationTrainer", "has_model_weights", "load_checkpoint_weights"]
