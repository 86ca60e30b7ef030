"""What the Space calls for one upload: decode, input check, student (and teacher) prediction, heatmap overlay.

`ChestXrayPredictor` puts the pieces together: `decode.py` (PNG/JPEG/DICOM to a grey image), `input_check.py` (is it a
frontal chest radiograph?), `predictor.RadiographClassifier` (one model, loaded once) and `explain.overlay`. Under
concurrent requests the model forwards are batched across requests (`micro_batch.py`).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial

import numpy as np
from PIL import Image

from .decode import DecodedUpload, decode_upload
from .explain import overlay
from .input_check import ImageStatistics, RadiographCheck, resize_for_statistics
from .micro_batch import MicroBatcher
from .predictor import Prediction, RadiographClassifier


@dataclass(frozen=True)
class ChestXrayResult:
    student: Prediction
    teacher: Prediction | None
    overlay: np.ndarray | None  # (H, W, 3) uint8 heatmap over the image
    statistics: ImageStatistics | None  # None when the input check is off
    upload: DecodedUpload
    model_input: Image.Image | None = None  # the student's input image (grey, model size, saved preprocessing)
    teacher_overlay: np.ndarray | None = None  # the teacher's CAM over its view; None unless asked for


class ChestXrayPredictor:
    """Upload -> decoded grey image -> input check -> student (+ teacher) predictions and a heatmap overlay.

    Safe to call from several threads at once (the Space's concurrent requests). With `max_batch_size` > 1 the
    student's and the teacher's forward passes of concurrent requests are batched (`micro_batch.py`); each request
    still decodes, checks and colours its own image, and gets its own errors. `decode_slots` bounds how many uploads
    are decoded and checked at the same time, so that the peak memory of concurrent large files is bounded (None:
    no bound).
    """

    def __init__(
        self,
        student: RadiographClassifier,
        teacher: RadiographClassifier | None = None,
        check: RadiographCheck | None = None,
        *,
        max_batch_size: int = 1,
        max_wait_s: float = 0.0,
        decode_slots: int | None = None,
    ) -> None:
        self.student = student
        self.teacher = teacher
        self.check = check
        self.max_batch_size = max_batch_size
        self._decoding = threading.BoundedSemaphore(decode_slots) if decode_slots else None
        self.batchers = {
            role: MicroBatcher(partial(_classify_requests, model), max_batch_size, max_wait_s, name=f"{role}-batcher")
            for role, model in (("student", student), ("teacher", teacher))
            if model is not None and max_batch_size > 1
        }

    @classmethod
    def from_pretrained(
        cls,
        model_id: str | os.PathLike,
        teacher_id: str | os.PathLike | None = None,
        *,
        precision: str = "auto",
        check_input: bool = True,
        fused: bool = True,
        **batching,
    ) -> ChestXrayPredictor:
        """batching: `max_batch_size`, `max_wait_s`, `decode_slots` of the constructor."""
        student = RadiographClassifier.from_pretrained(model_id, precision=precision, fused=fused)
        teacher = (
            RadiographClassifier.from_pretrained(teacher_id, precision=precision) if teacher_id else None
        )  # explain: a CAM costs only when asked for (`teacher_heatmap`); the hook is a reference per forward
        return cls(student, teacher, RadiographCheck() if check_input else None, **batching)

    def predict(
        self, source: str | os.PathLike | bytes, heatmap: bool = True, teacher_heatmap: bool = False
    ) -> ChestXrayResult:
        """Raises `UnreadableImageError` (cannot decode) or `NotARadiographError` (input check failed).

        heatmap: the student's attention rollout; teacher_heatmap: the teacher's CAM (if it has one)."""
        with self._decoding or nullcontext():
            upload, statistics, view, model_input = self._prepare(source)
            teacher_view = self.teacher.model_view(upload.grey) if self.teacher is not None else None
            teacher_input = self.teacher.resize(teacher_view, framed=True) if self.teacher is not None else None
        student_future = self._submit("student", model_input, heatmap)
        teacher_future = self._submit("teacher", teacher_input, teacher_heatmap) if teacher_input is not None else None
        student = student_future.result()
        teacher = teacher_future.result() if teacher_future is not None else None
        image = overlay(view, student.heatmap) if student.heatmap is not None else None
        teacher_image = (
            overlay(teacher_view, teacher.heatmap) if teacher is not None and teacher.heatmap is not None else None
        )
        return ChestXrayResult(student, teacher, image, statistics, upload, model_input, teacher_image)

    def _prepare(self, source) -> tuple[DecodedUpload, ImageStatistics | None, Image.Image, Image.Image]:
        """(upload, input-check statistics, the part the student sees, the student's input image)."""
        upload = decode_upload(source)
        resized = None
        statistics = None
        if self.check is not None:
            resized = resize_for_statistics(upload.grey)
            statistics = self.check.check(upload, resized)
        # the check's thumbnail is the student's input when it has the size and the model resizes only (a border must
        # be removed at the image's own resolution, as the saved processor does)
        reuse = resized is not None and resized.size == (self.student.size,) * 2 and self.student.preprocessing.is_stock
        view = self.student.model_view(upload.grey)  # the border is found once, for the input and the overlay
        return upload, statistics, view, resized if reuse else self.student.resize(view, framed=True)

    def _submit(self, role: str, model_input: Image.Image, heatmap: bool) -> Future:
        """The prediction of `role`'s model on its input: batched with other requests', or run here and now."""
        batcher = self.batchers.get(role)
        if batcher is not None:
            return batcher.submit((model_input, heatmap))
        done: Future = Future()
        model = self.student if role == "student" else self.teacher
        done.set_result(model.predict_resized(model_input, heatmap=heatmap))
        return done


def _classify_requests(model: RadiographClassifier, requests: list[tuple[Image.Image, bool]]) -> list[Prediction]:
    """One forward pass for a micro-batch of (model input, heatmap wanted) requests."""
    return model.predict_resized_batch([image for image, _ in requests], [wanted for _, wanted in requests])


__all__ = ["ChestXrayPredictor", "ChestXrayResult"]
