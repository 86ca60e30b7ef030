"""Write README.md (the Hub model card) for a trained model folder, from the run's own files.

Uses huggingface_hub's `ModelCard`/`ModelCardData`/`EvalResult`, so the YAML header (license, tags, model-index with
overall, per-class and per-source metrics) is what the Hub parses. Every number comes from the folder's
`metrics.json`; the method from `config.json`, `training_args.json` and `trainer_state.json`. Local filesystem paths
(teacher folder, dataset folder) are reduced to their last component: a card is public, a home directory is not.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from .model_card_results import (
    calibration_section,
    eval_results,
    fmt,
    interval_description,
    operating_points_section,
    per_source_table,
    results_table,
)

# A link to model_cards/template.md, so the template also ships inside the installed package.
TEMPLATE = Path(__file__).resolve().parent / "model_card_template.md"

CXR3_DESCRIPTION = (
    "`cxr3`: frontal chest radiographs (224 px, 8-bit greyscale JPEG, resized without cropping) from three public "
    "sources:\n"
    "- **Kermany et al. 2018** (`source` = kermany): paediatric (1–5 years), normal and pneumonia, Guangzhou Women "
    "and Children's Medical Center; Mendeley Data, doi:10.17632/rscbjbr9sj.2, **CC BY 4.0**.\n"
    "- **NIH ChestX-ray8** (Wang et al. 2017; `source` = nih): adult 'No Finding' and 'Pneumonia', as "
    "redistributed by DarkCovidNet (Ozturk et al. 2020); NIH Clinical Center public release without restriction "
    "on use; labels text-mined from reports.\n"
    "- **COVID-CXNet** (Haghanifar et al. 2020; `source` = armiro): adult COVID-19 images collected from public "
    "case reports; figshare doi:10.6084/m9.figshare.12580328, **CC BY 4.0**."
)
CXR3_SPLIT = (
    "Splits are **by patient**: no `patient_id` appears in both training and validation, and exact pixel "
    "duplicates were removed (COVID-CXNet has no reliable patient ids: each image is its own patient, so a patient "
    "may repeat there)."
)
CXR3_CITATION = (
    "Data: Kermany D. et al., Mendeley Data 2018, doi:10.17632/rscbjbr9sj.2; Wang X. et al., ChestX-ray8, CVPR 2017; "
    "Haghanifar A. et al., COVID-CXNet, 2020, doi:10.6084/m9.figshare.12580328."
)
DENSENET_NAMES = {(6, 12, 24, 16): "DenseNet-121", (6, 12, 32, 32): "DenseNet-169", (6, 12, 48, 32): "DenseNet-201"}
TAGS = ["medical-imaging", "chest-x-ray", "radiology", "vision-transformer", "knowledge-distillation", "hf_deitcxr"]


def build_model_card(
    model_dir: str | Path, repo_id: str | None = None, teacher_repo_id: str | None = None
) -> ModelCard:
    """The card of the model saved in `model_dir`; `repo_id` is where it will live on the Hub (default: the folder
    name), `teacher_repo_id` the Hub id of its teacher when that is published too."""
    folder = Path(model_dir)
    config = _read_json(folder / "config.json", required=True)
    metrics = _read_json(folder / "metrics.json")
    run = _read_json(folder / "training_args.json")
    state = _read_json(folder / "trainer_state.json")
    model_args, data_args = run.get("model", {}), run.get("data", {})
    dataset = display_name(data_args.get("dataset")) or "unknown"
    is_cxr3 = "cxr3" in dataset
    dataset_id = "cxr3" if is_cxr3 else dataset
    repo_id = repo_id or folder.name
    labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    split = (metrics.get("extra") or {}).get("eval_split") or data_args.get("eval_split", "validation")
    intervals = metrics.get("intervals") or {}  # absent from metrics.json written before intervals existed
    base_model = model_args.get("model_name_or_path")

    card_data = ModelCardData(
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag="image-classification",
        tags=TAGS,
        model_name=repo_id,
        base_model=base_model if _is_hub_id(base_model) else None,
        datasets=[dataset] if _is_hub_id(data_args.get("dataset")) else None,
        metrics=["accuracy", "f1", "roc_auc"] if metrics else None,
        eval_results=eval_results(metrics, dataset_name=dataset_id, split=split) if metrics else None,
    )
    card = ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        model_name=repo_id,
        repo_id=repo_id,
        summary=summary(config, parameter_count(folder)),
        label_list=", ".join(labels),
        is_cxr3=is_cxr3,
        data_description=CXR3_DESCRIPTION if is_cxr3 else f"Trained on `{dataset}`.",
        split_description=split_description(data_args, metrics, is_cxr3),
        data_citation=CXR3_CITATION if is_cxr3 else "",
        method_description=method(config, model_args, data_args, state, metrics, teacher_repo_id),
        eval_split=split,
        results_table=(results_table(metrics["overall"], labels, intervals.get("overall")) if metrics
                       else "Not evaluated: no `metrics.json`."),
        per_source_table=per_source_table(metrics.get("per_source") or {}, intervals.get("per_source")) if metrics
        else "",
        interval_description=interval_description(intervals.get("overall"), split),
        operating_points=operating_points_section(metrics.get("operating_points"), split),
        calibration=calibration_section(config, _read_json(folder / "calibration.json")),
        image_size=config.get("image_size"),
        code_files=", ".join(sorted(path.name for path in folder.glob("*.py"))) or "none",
    )
    return with_shortcut_audit(card, _read_json(folder / "audit.json"))


def with_shortcut_audit(card: ModelCard, audit: dict) -> ModelCard:
    """The card with a 'Shortcut audit' section before 'Limitations' when the folder has an audit.json."""
    if not audit:
        return card
    from .audit.report import shortcut_audit_section

    section = shortcut_audit_section(audit)
    head, marker, tail = card.text.partition("## Limitations")
    card.text = f"{head}{section}\n{marker}{tail}" if marker else f"{card.text.rstrip()}\n\n{section}"
    return card


def write_model_card(model_dir: str | Path, repo_id: str | None = None, teacher_repo_id: str | None = None) -> Path:
    path = Path(model_dir) / "README.md"
    build_model_card(model_dir, repo_id, teacher_repo_id).save(path)
    return path


def summary(config: dict, num_parameters: int | None = None) -> str:
    size = f", {num_parameters / 1e6:.1f} M parameters" if num_parameters else ""
    if config.get("model_type") == "deit_cxr":
        return (f"A DeiT vision transformer (hidden size {config['hidden_size']}, {config['num_hidden_layers']} "
                f"layers, patch {config.get('patch_size')}{size}) with a class token and a distillation token, "
                "trained on chest radiographs with hf_deitcxr." + small_data_vit_note(config))
    if config.get("model_type") == "deitcxr_densenet":
        return (f"A {densenet_name(config)} CNN{size} trained on chest radiographs with hf_deitcxr, the teacher of "
                "DeiT students.")
    return f"A `{config.get('model_type')}` image classifier{size} trained on chest radiographs with hf_deitcxr."


def small_data_vit_note(config: dict) -> str:
    """What SPT / LSA change, and how such a checkpoint must be loaded; empty for a stock DeiT architecture."""
    parts = [name for key, name in (("shifted_patch_tokenization", "Shifted Patch Tokenization"),
                                    ("locality_self_attention", "Locality Self-Attention")) if config.get(key)]
    if not parts:
        return ""
    return (f" It uses {' and '.join(parts)} (Lee, Lee & Song 2021, \"Vision Transformer for Small-Size Datasets\"), "
            "so it loads with hf_deitcxr or `trust_remote_code=True`, not with transformers' stock "
            "`DeiTForImageClassificationWithTeacher`.")


def split_description(data_args: dict, metrics: dict, is_cxr3: bool) -> str:
    lines = [CXR3_SPLIT, ""] if is_cxr3 else []
    extra = metrics.get("extra") or {}
    if extra.get("num_train_images"):
        subset = data_args.get("train_subset")
        samples = extra.get("num_train_samples")
        lines.append(f"- Training images: {extra['num_train_images']}"
                     + (f" (patient-level, class-stratified subset; `train_subset={subset}`)" if subset else "")
                     + (f"; {samples} training samples with their processed variants." if samples else "."))
    if metrics:
        lines.append(f"- Evaluation images ({extra.get('eval_split', 'validation')}): "
                     f"{metrics['overall'].get('num_examples')}.")
    if extra.get("cross_validation"):
        cv = extra["cross_validation"]
        lines.append(f"- Cross-validation: evaluated on fold {cv['fold']} of {cv['n_splits']} (patient-grouped, "
                     f"class-stratified folds of {' + '.join(cv['pooled_splits'])}, seed {cv['seed']}; "
                     f"{cv['eval_patients']} patients held out): one fold's figures, not the mean over folds.")
    if data_args:
        leak = ("allowed (`allow_leakage=true`): check before trusting results" if data_args.get("allow_leakage")
                else "refused: training stops if a patient or an identical image appears in two splits")
        lines.append(f"- Patient/duplicate leakage between splits: {leak}. A dataset without a validation split gets "
                     f"one made by patient ({data_args.get('validation_fraction', 0.15):.0%} of patients).")
    return "\n".join(lines)


def method(config: dict, model_args: dict, data_args: dict | None = None, state: dict | None = None,
           metrics: dict | None = None, teacher_repo_id: str | None = None) -> str:
    data_args, state, extra = data_args or {}, state or {}, (metrics or {}).get("extra") or {}
    stage = model_args.get("stage", "unknown")
    init = model_args.get("model_name_or_path")
    lines = [f"- Stage `{stage}`; initialised from "
             + (f"`{display_name(init)}`." if init else "random weights (trained from scratch)."),
             f"- Input {config.get('image_size')} × {config.get('image_size')} px, {config.get('num_channels', 3)} "
             "channel(s) (greyscale radiographs; 3 channels = grey replicated, ImageNet normalisation).",
             preprocessing_line(model_args)]
    if config.get("model_type") == "deit_cxr":
        teacher = teacher_repo_id or display_name(config.get("teacher_name_or_path"))
        if config.get("distillation_type") == "none" or not teacher:
            lines.append("- No teacher: both the class and the distillation head learn the labels (baseline).")
        else:
            described = teacher_description(config.get("teacher_name_or_path"), teacher, config.get("image_size"))
            lines.append(f"- Teacher: {described}, frozen, "
                         "run on the same augmented batch as the student.")
            if cached := teacher_logits_line(data_args):
                lines.append(cached)
            lines.append(f"- Distillation: **{config.get('distillation_type')}**, alpha "
                         f"{config.get('distillation_alpha')}, tau {config.get('distillation_tau')}: loss = "
                         "(1 − alpha)·CE(class head, labels) + alpha·distillation loss.")
        lines.append(f"- Prediction head: `{config.get('inference_head')}`; stochastic depth "
                     f"{config.get('drop_path_rate')}.")
    if state:
        epochs = state.get("num_train_epochs")
        lines.append(f"- Training: {fmt_number(state.get('epoch') or epochs)} epoch(s)"
                     + (f" of {fmt_number(epochs)} planned" if epochs and state.get("epoch") not in (None, epochs)
                        else "")
                     + f", {state.get('global_step')} optimiser steps, batch size {state.get('train_batch_size')}"
                     + (f", {extra['train_runtime_s']:.0f} s" if extra.get("train_runtime_s") else "") + ".")
    if data_args:
        lines.append(f"- Class balancing `{data_args.get('balancing')}`; augmentation {augmentation_text(data_args)}"
                     f"{remedy_augmentation_text(data_args)}.")
    return "\n".join(lines)


def remedy_augmentation_text(data_args: dict) -> str:
    """The shortcut-remedy augmentations of a run (docs/RESULTS.md), as clauses of its training line."""
    augment, variants = data_args.get("augment"), int(data_args.get("processing_variants") or 0)
    clauses = [text for on, text in (
        (augment and data_args.get("acquisition_augment"),
         "acquisition/processing augmentation on (resampling, blur, gamma, equalisation strength)"),
        (augment and data_args.get("framing_augment"),
         "framing augmentation on (random crops down to 60 % of the area)"),
        (variants, f"{variants} processed variant(s) of every training image (random framing, resampling, blur, gamma, "
                   "clipped contrast/brightness, global or CLAHE equalisation, JPEG before the preprocessing)"),
        (variants and data_args.get("variant_targets") == "original",
         "the variants distilled towards the teacher's logits of the unchanged image"),
    ) if on]
    return "".join(f"; {clause}" for clause in clauses)


def augmentation_text(data_args: dict) -> str:
    """The base augmentation of a run, by its preset (off when the run did not augment)."""
    if not data_args.get("augment"):
        return "off"
    if data_args.get("augmentation_preset") == "low_resolution":
        return ("on, sized for low resolution (rotation ≤ 5°, translation ≤ 3 %, scaling 0.95–1.05, crop, "
                "brightness/contrast; no noise, no flip)")
    return "on (rotation, translation, scaling, crop, brightness/contrast, noise; no flip)"


def teacher_logits_line(data_args: dict) -> str | None:
    """How the student got its teacher's logits when they were cached, else None (online, every step)."""
    views = data_args.get("teacher_views") or 0
    if views:
        return (f"- Teacher logits cached once for {views} seeded augmented view(s) of every training image; each "
                "step the student sees one of them with that view's logits (FKD-style augmented distillation).")
    if data_args.get("teacher_logit_cache"):
        return "- Teacher logits cached once per training image (the student trained without augmentation)."
    return None


def preprocessing_line(model_args: dict) -> str:
    """How the saved image processor prepares the grey image, and whether it is a stock one."""
    steps = []
    if model_args.get("remove_border"):
        steps.append("uniform border bands removed")
    normalization = model_args.get("intensity_normalization") or "none"
    if normalization != "none":
        steps.append({"equalize": "histogram equalisation", "clahe": "CLAHE"}.get(normalization, normalization)
                     + " at the input size")
    if not steps:
        return "- Preprocessing: grey image resized (bicubic, no crop); a stock DeiT image processor."
    return (f"- Preprocessing: {', '.join(steps)}, saved in `preprocessor_config.json` (a non-stock "
            "`RadiographImageProcessor`: load it with `trust_remote_code=True` or after `import hf_deitcxr`, which "
            "`pipeline` and `AutoImageProcessor` then apply for you).")


def teacher_description(teacher_path: str | None, shown: str, student_size: int | None = None) -> str:
    """Architecture, input size (where it is not the student's) and score of a teacher folder present on this
    machine, else just its name."""
    if teacher_path and "," in teacher_path:
        members = [part.strip() for part in teacher_path.split(",")]
        return (f"an ensemble of {len(members)} teachers (mean logits): "
                + "; ".join(teacher_description(member, display_name(member) or member, student_size)
                            for member in members))
    if teacher_path and Path(teacher_path, "config.json").is_file():
        config = _read_json(Path(teacher_path) / "config.json")
        overall = _read_json(Path(teacher_path) / "metrics.json").get("overall") or {}
        name = densenet_name(config) if config.get("model_type") == "deitcxr_densenet" else config.get("model_type")
        score = f", validation accuracy {fmt(overall['accuracy'])}" if "accuracy" in overall else ""
        size = config.get("image_size")
        if size and student_size and size != student_size:  # the student's pixels reach it resized (the adapter)
            return f"{name} at {size} px (`{shown}`{score}; fed the student's {student_size}-px pixels resized)"
        return f"{name} (`{shown}`{score})"
    return f"`{shown}`"


def densenet_name(config: dict) -> str:
    return DENSENET_NAMES.get(tuple(config.get("block_config") or ()), "DenseNet")


def parameter_count(folder: Path) -> int | None:
    """Parameters in the folder's safetensors weights, from the file headers (no tensor is loaded)."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for path in files:
        with safe_open(str(path), framework="np") as weights:
            for key in weights.keys():
                count = 1
                for dim in weights.get_slice(key).get_shape():
                    count *= dim
                total += count
    return total


def display_name(value: Any) -> str | None:
    """A Hub id as it is; a local path reduced to its folder name (no home directories in public cards)."""
    if value is None or value == "":
        return None
    text = str(value)
    if "," in text:  # a teacher ensemble (`--teacher_name_or_path a,b`): each member shown so
        return ", ".join(display_name(part.strip()) or part for part in text.split(","))
    if _is_hub_id(text):
        return text
    return Path(text.rstrip("/\\")).name or text


def _is_hub_id(value: Any) -> bool:
    # "namespace/name" that is not a path on this machine and not absolute/relative-looking.
    if not isinstance(value, str) or value.count("/") != 1 or os.path.exists(value):
        return False
    return not value.startswith((".", "/", "~")) and "\\" not in value


def _read_json(path: Path, required: bool = False) -> dict:
    if not path.is_file():
        if required:
            raise FileNotFoundError(f"{path} is missing: not a saved model folder (run save_pretrained first)")
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error


def fmt_number(value) -> str:
    return "n/a" if value is None else f"{value:g}"
