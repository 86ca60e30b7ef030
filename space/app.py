"""Gradio Space: chest X-ray classification with a distilled DeiT student (and its DenseNet teacher beside it).

    MODEL_ID=<Hub id or folder> [TEACHER_ID=<Hub id or folder>] [MAMMO_MODEL_ID=...] python space/app.py

Environment: MODEL_ID (required), TEACHER_ID, MAMMO_MODEL_ID (adds the mammography tab of mammo_tab.py),
PRECISION (auto | fp32 | bf16; auto = bf16 weights on CPUs with AMX, else fp32), INPUT_CHECK (1 | 0),
MAX_FILE_SIZE (largest upload, e.g. 50mb; default DEFAULT_MAX_FILE_SIZE), CONCURRENCY (chest X-ray requests in
progress at once; default DEFAULT_CONCURRENCY), MAX_BATCH_SIZE (most concurrent requests in one forward pass; default
DEFAULT_MAX_BATCH_SIZE; CONCURRENCY=1 MAX_BATCH_SIZE=1 serves one request at a time, without batching).
API: endpoint "predict" takes one file (PNG, JPEG or DICOM) and returns (student label dict, heatmap overlay,
teacher label dict or None, Markdown status); "analyse" (the page's Classify) takes (file, rollout, cam) and adds
(input preview, its Markdown facts, teacher CAM overlay or None); "batch" takes several files or zips and returns
(table, CSV file) of `hf-deitcxr predict` rows. Bad input raises gr.Error with the reason (HTML-escaped, as Gradio
renders it as HTML). Text taken from a file is never rendered as markup; uploads are deleted DELETE_CACHE after use.
Research demo only: not a medical device.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

try:
    import gradio as gr
except ModuleNotFoundError as missing:  # `pip install -e .` alone (what the quickstart needs) has no gradio
    if missing.name != "gradio":
        raise
    sys.exit(
        "The Space needs gradio, which the base install does not include. Install it with "
        "`pip install -e '.[space]'` in the repository (or `pip install 'gradio>=6,<7'`)."
    )

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent  # in a checkout of the repository: `outputs/...` of the quickstart lives here
try:
    import hf_deitcxr  # noqa: F401 - registers our model classes with the Auto classes
except ImportError:  # a repository checkout where the package is not installed: use the one next to space/
    sys.path.insert(0, str(HERE.parent))
    import hf_deitcxr  # noqa: F401

from hf_deitcxr.data.dicom import UnreadableImageError  # noqa: E402
from hf_deitcxr.serving import ChestXrayPredictor, ChestXrayResult, NotARadiographError  # noqa: E402
from hf_deitcxr.serving.input_preview import input_facts_markdown  # noqa: E402
from hf_deitcxr.serving.memory import release_memory  # noqa: E402
from hf_deitcxr.serving.model_info import ModelInfo, load_model_info  # noqa: E402
from hf_deitcxr.serving.safe_text import html_text, log_name, markdown_literal, shorten, user_message  # noqa: E402
from hf_deitcxr.serving.space_batch import MAX_FILES, batch_rows, expand_uploads, parse_size, write_csv  # noqa: E402
from hf_deitcxr.serving.space_io import env_count, env_flag, fast_png  # noqa: E402

logger = logging.getLogger(__name__)

EXAMPLES_DIR = HERE / "examples"
MAMMO_TAB = HERE / "mammo_tab.py"
TOP_K = 3
DEFAULT_MAX_FILE_SIZE = "50mb"  # a 4096x4096 16-bit uncompressed DICOM is 32 MB
# Several requests in progress let uploads, decoding and PNG encoding of one overlap the forward pass of others, and
# the forwards of concurrent requests run as one batch (hf_deitcxr/serving/micro_batch.py); docs/RESULTS.md has the
# load test and the memory it costs. At most as many uploads are decoded at once as there are cores: the peak
# memory grows with the cores, not with the clients.
DEFAULT_CONCURRENCY = 8
DEFAULT_MAX_BATCH_SIZE = 8
# (every, older than) seconds: Gradio deletes uploads and outputs older than 10 min, checking every 5 min, so they
# do not pile up on disk, yet a second Classify of the same upload still finds it.
DELETE_CACHE = (300, 600)
DISCLAIMER = (
    "**Research demo only — not a medical device.** It is not validated for clinical use and must not be used for "
    "diagnosis or treatment decisions. Predictions can be wrong, and the heatmap shows where the model looked, not "
    "where disease is."
)
INTRO = (
    "# Chest X-ray classifier (DeiT student distilled from a DenseNet teacher)\n"
    "Upload a **frontal chest radiograph** (PNG, JPEG or DICOM). The model predicts normal / pneumonia / COVID-19 "
    "and shows an attention-rollout heatmap of the same forward pass. Images that do not look like a frontal chest "
    "radiograph are refused with the reason: photos, drawings, colour images, other modalities (CT, MRI, "
    "mammography, ultrasound), partial crops, sideways or upside-down images, screenshots, photographed screens and "
    "extreme contrast. The check is not perfect: see the Space's README for what it misses."
)
BATCH_INTRO = (
    f"Upload several files or a `.zip` of them (at most {MAX_FILES} files, each within the upload size limit). Each "
    "row is what `hf-deitcxr predict` writes for the file: the student's label and probabilities, the input check's "
    "verdict (a refused image is still predicted, and says so), or the error that kept it from being read."
)


def build_demo(
    model_id: str,
    teacher_id: str | None = None,
    *,
    mammo_model_id: str | None = None,
    precision: str | None = None,
    check_input: bool | None = None,
    concurrency: int | None = None,
    max_batch_size: int | None = None,
) -> gr.Blocks:
    """Load the model(s) once and build the UI. Unset keyword arguments come from the environment."""
    precision = precision or os.environ.get("PRECISION", "auto")
    check_input = env_flag("INPUT_CHECK", True) if check_input is None else check_input
    concurrency = concurrency or env_count("CONCURRENCY", DEFAULT_CONCURRENCY)
    max_batch_size = max_batch_size or env_count("MAX_BATCH_SIZE", DEFAULT_MAX_BATCH_SIZE)
    mammo_model_id = mammo_model_id if mammo_model_id is not None else os.environ.get("MAMMO_MODEL_ID") or None
    model_id = resolve_model_id(model_id, "MODEL_ID")
    teacher_id = resolve_model_id(teacher_id, "TEACHER_ID") if teacher_id else None
    predictor = ChestXrayPredictor.from_pretrained(
        model_id, teacher_id, precision=precision, check_input=check_input, max_batch_size=max_batch_size,
        decode_slots=min(concurrency, os.cpu_count() or 1),
    )
    quiet_blocked_requests()

    def predict(path: str | None):
        return run_prediction(predictor, path)

    def analyse(path: str | None, rollout: bool = True, cam: bool = True):
        return run_analysis(predictor, path, rollout, cam)

    def batch(paths: list[str] | None):
        return run_batch(predictor, paths, parse_size(launch_options()["max_file_size"]))

    cards = (load_model_info(model_id), load_model_info(teacher_id) if teacher_id else None)
    with gr.Blocks(title="Chest X-ray classifier (research demo)", delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(INTRO)
        gr.Markdown(f"> ⚠️ {DISCLAIMER}")
        with gr.Tab("Chest X-ray"):
            _chest_tab(predict, analyse, cards, concurrency, serving_markdown(predictor, concurrency))
        with gr.Tab("Batch"):
            _batch_tab(batch)
        if mammo_model_id:
            add_tab = _load_mammography_tab()
            if add_tab is None:
                logger.warning("MAMMO_MODEL_ID is set but %s does not exist: no mammography tab", MAMMO_TAB)
            else:
                add_tab(mammo_model_id)
    return demo


def _chest_tab(predict, analyse, cards: tuple[ModelInfo, ModelInfo | None], concurrency: int,
               serving: str) -> None:
    """Upload, explanation switches and examples on the left; labels, heatmaps, preview and status on the right."""
    student_card, teacher_card = cards
    with gr.Row():
        with gr.Column():
            upload = gr.File(label="Chest X-ray (PNG, JPEG or DICOM)", type="filepath")
            with gr.Row():
                rollout = gr.Checkbox(True, label="Student attention rollout")
                cam = gr.Checkbox(bool(teacher_card), label="Teacher CAM", visible=bool(teacher_card))
            button = gr.Button("Classify", variant="primary")
            examples_row = gr.Column()
        with gr.Column():
            student_label = gr.Label(num_top_classes=TOP_K, label=f"Student: {student_card.name}")
            teacher_name = teacher_card.name if teacher_card else "none"
            teacher_label = gr.Label(num_top_classes=TOP_K, label=f"Teacher: {teacher_name}",
                                     visible=bool(teacher_card))
            with gr.Row():
                heatmap = gr.Image(label="Attention rollout (where the student looked)", type="numpy", format="png")
                teacher_map = gr.Image(label="CAM (where the teacher looked)", type="numpy", format="png",
                                       visible=bool(teacher_card))
            status = gr.Markdown()
    with gr.Row():
        preview = gr.Image(label="Input preview (what the student was given)", type="pil", format="png")
        facts = gr.Markdown()
    _card_accordion(student_card, teacher_card, serving)
    outputs = [student_label, heatmap, teacher_label, status]
    # The API endpoint of the contract (one file in; student, heatmap, teacher or None, status out), without a UI.
    # predict and analyse share one pool of `concurrency` slots
    slots = {"concurrency_limit": concurrency, "concurrency_id": "chest_xray"}
    gr.Button(visible=False).click(predict, inputs=[upload], outputs=outputs, api_name="predict", **slots)
    shown = [*outputs, preview, facts, teacher_map]
    button.click(analyse, inputs=[upload, rollout, cam], outputs=shown, api_name="analyse", **slots)
    examples = sorted(EXAMPLES_DIR.glob("*.jpg")) + sorted(EXAMPLES_DIR.glob("*.png"))
    if examples:
        with examples_row:  # clicking an example classifies it at once, with both explanations (not cached)
            gr.Examples([[str(p)] for p in examples], inputs=[upload], outputs=shown, fn=analyse,
                        run_on_click=True, cache_examples=False, label="Examples (see ATTRIBUTION.md)")


def _card_accordion(student: ModelInfo, teacher: ModelInfo | None, serving: str) -> None:
    """The model cards' training data, method, results and audit, folded away (the operator's text, sanitised)."""
    with gr.Accordion("Model cards", open=False):
        gr.Markdown(serving)
        for role, info in (("Student", student), ("Teacher", teacher)):
            if info is not None:
                gr.Markdown(f"## {role}: {markdown_literal(info.name)}\n\n{info.markdown}")


def _batch_tab(batch) -> None:
    """Several files or a zip in; the `hf-deitcxr predict` table and its CSV out (a bad file is a row)."""
    gr.Markdown(BATCH_INTRO)
    files = gr.File(label="Images, DICOMs or a .zip of them", file_count="multiple", type="filepath")
    button = gr.Button("Predict all files", variant="primary")  # not "Classify ...": the chest tab's button
    table = gr.Dataframe(label="Predictions", interactive=False, wrap=True)
    download = gr.File(label="predictions.csv")
    button.click(batch, inputs=[files], outputs=[table, download], api_name="batch")


def run_prediction(predictor: ChestXrayPredictor, path: str | None):
    """The `predict` endpoint: (student label dict, overlay, teacher label dict or None, Markdown status)."""
    result = _predict(predictor, path, rollout=True, cam=False)
    teacher = result.teacher.probabilities if result.teacher is not None else None
    return result.student.probabilities, fast_png(result.overlay), teacher, status_markdown(result)


def run_analysis(predictor: ChestXrayPredictor, path: str | None, rollout: bool, cam: bool):
    """The page's Classify (`analyse`): `predict`'s four outputs, then the input preview, its facts, the teacher CAM."""
    result = _predict(predictor, path, rollout=rollout, cam=cam)
    teacher = result.teacher.probabilities if result.teacher is not None else None
    facts = input_facts_markdown(result, predictor.student)
    return (result.student.probabilities, fast_png(result.overlay), teacher, status_markdown(result),
            fast_png(result.model_input), facts, fast_png(result.teacher_overlay))


def _predict(predictor: ChestXrayPredictor, path: str | None, *, rollout: bool, cam: bool) -> ChestXrayResult:
    if not path:
        raise gr.Error("Please upload a chest X-ray first (PNG, JPEG or DICOM).", title="No image")
    try:
        return predictor.predict(path, heatmap=rollout, teacher_heatmap=cam)
    except NotARadiographError as err:
        raise refusal(path, "Not a chest X-ray", str(err)) from err
    except UnreadableImageError as err:
        raise refusal(path, "Unreadable file", f"Could not read this file as an image: {err}. Upload a PNG, JPEG or "
                      "DICOM chest radiograph.") from err
    except FileNotFoundError as err:  # its message holds the server path: say what happened instead
        raise refusal(path, "File gone", "This upload is no longer on the server (uploads are deleted after a "
                      "while). Please upload the file again.") from err
    except Exception as err:  # a bug, not the user's fault: the log gets the traceback, the user a plain message
        logger.exception("prediction failed on %s", log_name(path))
        raise gr.Error("Something went wrong while processing this file; it has been logged. Please try another "
                       "file.", title="Server error", print_exception=False) from err
    finally:  # the decoded upload's freed heap back to the OS, or the process stays at its largest request's peak
        release_memory(sys.exc_info()[1])  # a refusal's traceback still holds the decoded image: cleared first


def run_batch(predictor: ChestXrayPredictor, paths: list[str] | None, max_bytes: int):
    """The `batch` endpoint: (table of `hf-deitcxr predict` rows, the CSV file). Bad files are rows, not errors."""
    if not paths:
        raise gr.Error("Please upload one or more files (PNG, JPEG, DICOM) or a .zip of them.", title="No files")
    folder = Path(tempfile.mkdtemp(prefix="hf_deitcxr_batch_"))
    try:
        inputs, shown = expand_uploads(paths, folder, max_bytes)
        header, rows = batch_rows(predictor.student, predictor.check, inputs, shown)
        rows = [[user_message(cell) if column == "error" else cell for column, cell in zip(header, row, strict=True)]
                for row in rows]  # an error's text loses server paths and class names, as the single upload's toast
        csv_path = write_csv(_csv_folder() / "predictions.csv", header, rows)
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # the extracted members; Gradio copies the CSV into its cache
        release_memory(None)
    import pandas as pd  # gradio's own dependency: imported after it, so a missing gradio is reported first

    return pd.DataFrame(rows, columns=header), str(csv_path)


def _csv_folder() -> Path:
    """A new folder for one batch's CSV; those older than DELETE_CACHE's age are removed first (Gradio serves its
    own copy, so ours are not needed after the response)."""
    root = Path(tempfile.gettempdir()) / f"hf_deitcxr_batch_csv_{os.getpid()}"
    root.mkdir(exist_ok=True)
    for old in root.iterdir():
        if time.time() - old.stat().st_mtime > DELETE_CACHE[1]:
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=root))


def refusal(path: str, title: str, message: str) -> gr.Error:
    """A refused input: one log line (short name, no traceback) and a toast without server details or markup."""
    clean = user_message(message)
    logger.info("refused %s (%s): %s", log_name(path), title, shorten(clean, 300))
    return gr.Error(html_text(clean), title=title, print_exception=False)


class _BlockedRequestLog:
    """Stands in for `traceback` inside gradio.queueing, which prints a full traceback for every request it refuses
    itself (a path that was not uploaded, a URL it will not fetch): those become one short log line; any other
    error still prints its traceback."""

    def __getattr__(self, name: str):
        return getattr(traceback, name)

    def print_exc(self, *args, **kwargs) -> None:
        err = sys.exc_info()[1]
        if not _is_blocked_request(err):
            traceback.print_exc(*args, **kwargs)
            return
        logger.info("blocked request: %s", shorten(user_message(str(err)), 200))


def _is_blocked_request(err: BaseException | None) -> bool:
    from gradio.exceptions import InvalidPathError

    if isinstance(err, InvalidPathError):
        return True
    frame = err.__traceback__ if isinstance(err, ValueError) else None
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    return frame is not None and frame.tb_frame.f_globals.get("__name__", "").startswith("safehttpx")  # SSRF guard


def quiet_blocked_requests() -> None:
    """Install `_BlockedRequestLog` in gradio.queueing (where Gradio keeps `traceback`; left alone if it moved)."""
    from gradio import queueing

    if getattr(queueing, "traceback", None) is traceback:
        queueing.traceback = _BlockedRequestLog()


def serving_markdown(predictor: ChestXrayPredictor, concurrency: int) -> str:
    """How this app serves: each model's forward (chosen at start-up on this CPU) and the request batching."""
    forwards = [f"student: {predictor.student.forward_name}"]
    if predictor.teacher is not None:
        forwards.append(f"teacher: {predictor.teacher.forward_name}")
    return (f"**Serving:** {'; '.join(forwards)}. Up to {concurrency} requests at once, forward passes of waiting "
            f"requests batched by up to {predictor.max_batch_size}.")


def status_markdown(result: ChestXrayResult) -> str:
    width, height = result.upload.size
    upload = result.upload
    tags = [t for t in (upload.modality, upload.body_part, upload.view_position) if t]  # the file's text: literal
    kind = ("DICOM" + (f" ({', '.join(markdown_literal(t) for t in tags)})" if tags else "")) if upload.is_dicom else (
        "image"
    )
    lines = [f"**Student:** {_top(result.student.probabilities)}"]
    if result.teacher is not None:
        agree = "agrees" if result.teacher.label == result.student.label else "**disagrees**"
        lines.append(f"**Teacher:** {_top(result.teacher.probabilities)} ({agree} with the student)")
    if result.overlay is None:
        lines.append("No heatmap for this model type.")
    lines.append(f"Input: {kind}, {width}×{height} px.")
    lines.append(f"_{DISCLAIMER}_")
    return "\n\n".join(lines)


def _top(probabilities: dict[str, float]) -> str:
    label, probability = next(iter(probabilities.items()))
    return f"{label} ({probability:.0%})"


def resolve_model_id(model_id: str, variable: str = "MODEL_ID") -> str:
    """A saved model folder (as given, or relative to the repository root) or a Hub id; exits with a clear message.

    `hf-deitcxr quickstart` prints `MODEL_ID=outputs/quickstart/distill`, a path relative to the repository root;
    it also works from inside space/ (the Space's own folder). A path that names no saved model stops the app with
    what was looked for instead of a traceback from the Hub client.
    """
    value = str(model_id).strip()
    for candidate in (Path(value).expanduser(), REPO_ROOT / value):
        if candidate.is_dir():
            if (candidate / "config.json").is_file():
                return str(candidate)
            saved = sorted(str(p.parent) for p in candidate.glob("*/config.json"))
            hint = f" Saved models inside it: {', '.join(saved)}." if saved else ""
            sys.exit(f"{variable}={value}: {candidate} is not a saved model folder (no config.json).{hint}")
    if _looks_like_local_path(value):
        sys.exit(
            f"{variable}={value}: no such folder (looked in {Path.cwd()} and {REPO_ROOT}). Train one with "
            "`hf-deitcxr quickstart` (it prints the MODEL_ID to use) or give a Hub id such as OWNER/NAME."
        )
    return value


def _looks_like_local_path(value: str) -> bool:
    """Hub ids are NAME or OWNER/NAME; anything else with a path separator or a leading ./~ is meant as a folder."""
    return value.startswith((".", "/", "~")) or value.count("/") > 1 or "\\" in value


def _load_mammography_tab():
    """`add_mammography_tab` from mammo_tab.py next to this file, or None when the file is absent."""
    if not MAMMO_TAB.is_file():
        return None
    spec = importlib.util.spec_from_file_location("mammo_tab", MAMMO_TAB)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.add_mammography_tab


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    model_id = os.environ.get("MODEL_ID")
    if not model_id:
        sys.exit("Set MODEL_ID to a Hub model id or a saved model folder, e.g. MODEL_ID=outputs/student python app.py")
    try:
        demo = build_demo(model_id, os.environ.get("TEACHER_ID") or None)
    except (OSError, ValueError) as err:  # e.g. a Hub id that does not exist or cannot be reached
        sys.exit(f"Could not load the model(s) (MODEL_ID={model_id}): {err}")
    demo.launch(**launch_options())


def launch_options(environ=os.environ) -> dict:
    """`demo.launch` keywords: the upload size limit (MAX_FILE_SIZE, e.g. 50mb), checked by Gradio before our code."""
    return {"max_file_size": environ.get("MAX_FILE_SIZE", "").strip() or DEFAULT_MAX_FILE_SIZE}


if __name__ == "__main__":
    main()
