"""Mammography tab of the Space: one to four views of an exam in, an exam-level prediction out.

`add_mammography_tab(model_id)` is called inside the `gr.Blocks` context of `space/app.py`'s `build_demo` when
`MAMMO_MODEL_ID` is set. The model (single- or multi-view, a folder or Hub id saved by `hf-deitcxr train --task
mammo`) is loaded once, when the tab is built. The prediction is exposed as the API endpoint
`predict_mammography`, taking four file paths (L-CC, L-MLO, R-CC, R-MLO; any may be empty) and returning the
exam-level `gr.Label` value and a Markdown details/disclaimer string. Bad input raises `gr.Error` with a clear message,
without server details and HTML-escaped (Gradio renders it as HTML; the message can quote the file).
"""

from __future__ import annotations

import logging
from functools import partial

import gradio as gr

from hf_deitcxr.data.dicom import UnreadableImageError
from hf_deitcxr.mammo.inference import VIEW_SLOTS, MammoPredictor
from hf_deitcxr.serving.safe_text import html_text, log_name, shorten, user_message

logger = logging.getLogger(__name__)

DISCLAIMER = ("Research demo, not a medical device: the model is not clinically validated and must not be used "
              "for diagnosis.")
INTRO = ("Upload one image (in the slot of its view) or the four views of a screening exam (PNG/JPEG/DICOM). "
         "Right-breast views are mirrored to the training orientation automatically; missing views are left out. "
         "Images that are clearly not mammograms are refused: colour images, chest X-rays, drawings, text, noise and "
         "DICOMs of other modalities (CT, MR, US, ...) or of the chest. A grey photo can still pass: upload "
         "mammograms only.")


def predict_exam(predictor: MammoPredictor, *paths: str | None) -> tuple[dict[str, float], str]:
    """The tab's handler: file paths in `VIEW_SLOTS` order (None for an empty slot) -> (label values, details)."""
    if len(paths) != len(VIEW_SLOTS):
        raise gr.Error(f"expected {len(VIEW_SLOTS)} view slots ({', '.join(VIEW_SLOTS)}), got {len(paths)}")
    views = {slot: path for slot, path in zip(VIEW_SLOTS, paths, strict=True) if path}
    if not views:
        raise gr.Error("Upload at least one mammogram (in the slot of its view: L-CC, L-MLO, R-CC or R-MLO).")
    try:
        prediction = predictor.predict(views)
    except UnreadableImageError as err:
        raise refusal(views, f"Could not read the uploaded file as a mammogram (DICOM or image): {err}") from err
    except FileNotFoundError as err:  # its message holds the server path
        raise refusal(views, "An upload is no longer on the server (uploads are deleted after a while). Please "
                      "upload the files again.") from err
    except ValueError as err:
        raise refusal(views, str(err)) from err
    except Exception as err:  # a bug, not the user's fault: the log gets the traceback, the user a plain message
        logger.exception("mammography prediction failed (%s)", ", ".join(log_name(p) for p in views.values()))
        raise gr.Error("Something went wrong while processing these files; it has been logged. Please try other "
                       "files.", title="Server error", print_exception=False) from err
    kind = "multi-view model (views read together)" if predictor.multiview else (
        f"single-view model (exam score = {predictor.aggregation} over views)")
    lines = [f"**Views used:** {', '.join(prediction.views_used)} — {kind}."]
    for slot, probabilities in prediction.per_view.items():
        top = max(probabilities, key=probabilities.get)
        lines.append(f"- {slot}: {top} ({probabilities[top]:.1%})")  # slot and labels are ours, not the file's
    lines.append(f"\n_{DISCLAIMER}_")
    return prediction.exam, "\n".join(lines)


def refusal(views: dict[str, str], message: str) -> gr.Error:
    """A refused exam: one log line (short names, no traceback) and a toast without server details or markup."""
    clean = user_message(message)
    names = ", ".join(f"{slot}={log_name(path)}" for slot, path in views.items())
    logger.info("refused mammography exam (%s): %s", names, shorten(clean, 300))
    return gr.Error(html_text(clean), title="Input refused", print_exception=False)


def add_mammography_tab(model_id: str) -> None:
    """Build the "Mammography" tab inside the current `gr.Blocks` context; loads the model once, here."""
    predictor = MammoPredictor(model_id)
    with gr.Tab("Mammography"):
        gr.Markdown(f"### Mammography (exam level)\n{INTRO}")
        with gr.Row():
            inputs = [gr.File(label=slot, type="filepath") for slot in VIEW_SLOTS]
        button = gr.Button("Predict exam", variant="primary")
        result = gr.Label(label="Exam-level prediction", num_top_classes=len(predictor.label_names))
        details = gr.Markdown(DISCLAIMER)
        button.click(partial(predict_exam, predictor), inputs=inputs, outputs=[result, details],
                     api_name="predict_mammography")


__all__ = ["add_mammography_tab", "predict_exam"]
