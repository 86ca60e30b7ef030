"""The Space's input preview: what the student was given, and the facts of the decoding, as Markdown.

Everything comes from the prediction already made (`ChestXrayResult.model_input`, the `DecodedUpload`'s DICOM
facts): nothing is decoded or resized again. Text taken from the file is escaped (`markdown_literal`).
"""

from __future__ import annotations

from .chest_predictor import ChestXrayResult
from .predictor import RadiographClassifier
from .safe_text import markdown_literal


def preprocessing_text(classifier: RadiographClassifier) -> str:
    """The saved image processor's steps before the model, in words."""
    steps = []
    if classifier.preprocessing.remove_border:
        steps.append("border removed")
    if classifier.preprocessing.intensity_normalization != "none":
        steps.append(f"intensity normalisation `{classifier.preprocessing.intensity_normalization}`")
    steps.append(f"bicubic resize to {classifier.size}×{classifier.size} (no crop)")
    return ", ".join(steps)


def input_facts_markdown(result: ChestXrayResult, classifier: RadiographClassifier) -> str:
    """Decoded size, the model's preprocessing and, for DICOM, photometric interpretation, window, pixel spacing."""
    upload = result.upload
    width, height = upload.size
    lines = [f"**Decoded:** {width}×{height} px, 8-bit grey.", f"**Model input:** {preprocessing_text(classifier)}."]
    if upload.is_dicom:
        photometric = upload.photometric
        grey = photometric is None or photometric.startswith("MONOCHROME")
        note = "inverted so that bone is bright" if upload.inverted else "as stored" if grey else "converted to grey"
        shown = markdown_literal(photometric) if photometric else "not stated"
        lines.append(f"**Photometric interpretation:** {shown} ({note}).")
        lines.append(f"**Window:** {upload.window or 'unknown'}.")
        lines.append(f"**Pixel spacing:** {upload.pixel_spacing or 'not in the file'}.")
    return "\n\n".join(lines)


__all__ = ["input_facts_markdown", "preprocessing_text"]
