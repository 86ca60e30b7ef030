"""Write README.md (the Hub model card) for a trained model folder, from the run's own files.

Uses huggingface_hub's `ModelCard`/`ModelCardData` so the YAML header (license, tags, model-index with the measured
metrics) is what the Hub parses. Every number comes from the folder's `metrics.json`.
"""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

# A link to model_cards/template.md, so the template also ships inside the installed package.
TEMPLATE = Path(__file__).resolve().parent / "model_card_template.md"

CXR3_DESCRIPTION = (
    "`cxr3`: 224 px greyscale frontal chest radiographs from three public sources, split by patient "
    "(no patient in two splits, exact duplicates removed): **Kermany et al. 2018** (paediatric, normal and "
    "pneumonia; CC BY 4.0, doi:10.17632/rscbjbr9sj.2), **NIH ChestX-ray8** (Wang et al. 2017; adult 'No Finding' "
    "and 'Pneumonia', as redistributed by DarkCovidNet) and **COVID-CXNet** (Haghanifar et al. 2020; adult "
    "COVID-19; CC BY 4.0, doi:10.6084/m9.figshare.12580328)."
)
CXR3_CITATION = (
    "Data: Kermany D. et al., Mendeley Data 2018, doi:10.17632/rscbjbr9sj.2; Wang X. et al., ChestX-ray8, CVPR 2017; "
    "Haghanifar A. et al., COVID-CXNet, 2020, doi:10.6084/m9.figshare.12580328."
)


def build_model_card(model_dir: str | Path, repo_id: str | None = None) -> ModelCard:
    folder = Path(model_dir)
    config = json.loads((folder / "config.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text())
    run = json.loads((folder / "training_args.json").read_text()) if (folder / "training_args.json").exists() else {}
    model_args, data_args = run.get("model", {}), run.get("data", {})
    dataset = str(data_args.get("dataset", "unknown"))
    is_cxr3 = "cxr3" in dataset
    repo_id = repo_id or folder.name
    labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    split = metrics.get("extra", {}).get("eval_split", data_args.get("eval_split", "validation"))

    card_data = ModelCardData(
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag="image-classification",
        tags=["medical-imaging", "chest-x-ray", "vision-transformer", "knowledge-distillation", "hf_deitcxr"],
        model_name=repo_id,
        eval_results=eval_results(metrics, dataset_name="cxr3" if is_cxr3 else dataset, split=split),
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        model_name=repo_id,
        repo_id=repo_id,
        summary=summary(config),
        label_list=", ".join(labels),
        data_description=CXR3_DESCRIPTION if is_cxr3 else f"Trained on `{dataset}`.",
        data_citation=CXR3_CITATION if is_cxr3 else "",
        method_description=method(config, model_args),
        eval_split=split,
        results_table=results_table(metrics["overall"], labels),
        per_source_table=per_source_table(metrics.get("per_source") or {}),
        image_size=config.get("image_size"),
    )


def write_model_card(model_dir: str | Path, repo_id: str | None = None) -> Path:
    path = Path(model_dir) / "README.md"
    build_model_card(model_dir, repo_id).save(path)
    return path


def summary(config: dict) -> str:
    if config.get("model_type") == "deit_cxr":
        return (f"A DeiT vision transformer (hidden size {config['hidden_size']}, {config['num_hidden_layers']} "
                "layers) with a class token and a distillation token, trained on chest radiographs with hf_deitcxr.")
    return f"A `{config.get('model_type')}` image classifier trained on chest radiographs with hf_deitcxr."


def method(config: dict, model_args: dict) -> str:
    lines = [f"- Stage: `{model_args.get('stage', 'unknown')}`; input {config.get('image_size')} px, "
             f"{config.get('num_channels', 3)} channel(s)."]
    if config.get("model_type") == "deit_cxr":
        lines.append(f"- Distillation: `{config.get('distillation_type')}`, alpha {config.get('distillation_alpha')}, "
                     f"tau {config.get('distillation_tau')}; teacher `{config.get('teacher_name_or_path')}`; "
                     f"inference head `{config.get('inference_head')}`; drop-path {config.get('drop_path_rate')}.")
    return "\n".join(lines)


def eval_results(metrics: dict, dataset_name: str, split: str) -> list[EvalResult]:
    overall = metrics["overall"]
    common = dict(task_type="image-classification", dataset_type=dataset_name, dataset_name=dataset_name,
                  dataset_split=split)
    results = [EvalResult(metric_type="accuracy", metric_value=overall["accuracy"], **common),
               EvalResult(metric_type="f1", metric_name="macro F1", metric_value=overall["macro_f1"], **common)]
    if overall.get("macro_auc") is not None:
        results.append(EvalResult(metric_type="roc_auc", metric_name="macro ROC-AUC (one-vs-rest)",
                                  metric_value=overall["macro_auc"], **common))
    for source, values in sorted((metrics.get("per_source") or {}).items()):
        results.append(EvalResult(metric_type="accuracy", metric_name=f"accuracy ({source})",
                                  metric_value=values["accuracy"], **common))
    return results


def results_table(overall: dict, labels: list[str]) -> str:
    rows = [f"Accuracy {fmt(overall.get('accuracy'))} · macro-F1 {fmt(overall.get('macro_f1'))} · "
            f"macro ROC-AUC {fmt(overall.get('macro_auc'))} · ECE {fmt(overall.get('ece'))} "
            f"(n = {overall.get('num_examples')})", "", "| class | sensitivity | specificity | PPV | AUC |",
            "|---|---|---|---|---|"]
    per_class = overall.get("per_class", {})
    for name in labels:
        values = per_class.get(name, {})
        rows.append(f"| {name} | {fmt(values.get('sensitivity'))} | {fmt(values.get('specificity'))} | "
                    f"{fmt(values.get('ppv'))} | {fmt(values.get('auc'))} |")
    return "\n".join(rows)


def per_source_table(per_source: dict) -> str:
    if not per_source:
        return ""
    rows = ["Per source (images from one hospital/population):", "", "| source | n | accuracy | macro-F1 |",
            "|---|---|---|---|"]
    for source, values in sorted(per_source.items()):
        rows.append(f"| {source} | {values.get('num_examples')} | {fmt(values.get('accuracy'))} | "
                    f"{fmt(values.get('macro_f1'))} |")
    return "\n".join(rows)


def fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"
