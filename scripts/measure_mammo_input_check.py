"""The Space's mammography tab on real CBIS-DDSM crops, and its input check's rejection rates; prints Markdown tables.

    python scripts/measure_mammo_input_check.py --dataset ../shared/data/cbis_mass \
        --single_model /work/runs/mammo/real64/runs/vit-seed0/model \
        --multi_model /work/runs/mammo/real64/runs/multi_view-seed1/model \
        --chest ../shared/data/cxr3/validation [--per_kind 40]

1. Predictions through the real tab (`space/mammo_tab.py`, served on loopback, called with gradio_client as a user's
   client would) for every breast of the validation patients (patient-level split, the benchmark's
   `--validation_fraction 0.15 --split_seed 0`, so the models never saw them) that has a CC and an MLO crop: CC
   alone, MLO alone and the pair; how often the pair's answer differs from a single view's.
2. Rejection rates of the tab's input check (`hf_deitcxr.mammo.input_check.MammogramCheck`, the code the tab
   runs): (a) real mammogram crops, validation patients apart from training patients (the thresholds were set
   beyond the training patients' range); (b) real chest X-rays, as they are and as benign variants (other sites);
   (c) GENERATED non-mammograms (`measure_input_rejection.generators()`: gradients, shapes, text, noise, drawings,
   textures, crops of matplotlib's sample pictures: a photo portrait, a product photo, elevation maps, an MRI
   slice), grey and colour apart; there is no real photo set here; (d) GENERATED full-field-like mammograms
   (`hf_deitcxr.mammo.synthetic`, should pass). A sample of each is also sent through the tab, to check that the
   tab refuses exactly what the check refuses. Rates: Wilson 95 % intervals (crops of one patient are not
   independent; most patients here have one or two); accuracy and AUC: patient-clustered bootstrap.
"""

from __future__ import annotations

import collections
import importlib.util
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from transformers import HfArgumentParser

from hf_deitcxr.mammo.input_check import MammogramCheck
from hf_deitcxr.mammo.manifest import load_mammo_manifest
from hf_deitcxr.mammo.synthetic import SyntheticMammoConfig, write_synthetic_mammo
from hf_deitcxr.metrics.intervals import bootstrap_intervals
from hf_deitcxr.serving import decode_upload

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from measure_input_rejection import generators, png_bytes, rate_with_interval  # noqa: E402
from radiograph_outliers import benign_variant  # noqa: E402

SPACE = Path(__file__).resolve().parents[1] / "space"
SLOTS = ("L-CC", "L-MLO", "R-CC", "R-MLO")


@dataclass
class MammoMeasureArguments:
    dataset: str = field(default="../shared/data/cbis_mass", metadata={"help": "CBIS-shaped crop folder"})
    single_model: str = field(default="/work/runs/mammo/real64/runs/vit-seed0/model")
    multi_model: str = field(default="/work/runs/mammo/real64/runs/multi_view-seed1/model")
    chest: str = field(default="../shared/data/cxr3/validation", metadata={"help": "Folder of chest X-rays"})
    validation_fraction: float = field(default=0.15)
    split_seed: int = field(default=0)
    per_kind: int = field(default=40, metadata={"help": "Generated images per kind"})
    tab_sample: int = field(default=20, metadata={"help": "Images per set also sent through the tab"})
    seed: int = field(default=0)
    examples: int = field(default=3, metadata={"help": "Tab answers printed in full"})


def load_tab():
    spec = importlib.util.spec_from_file_location("space_mammo_tab", SPACE / "mammo_tab.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TabClient:
    """The mammography tab of one model, served on loopback; `call({slot: path})` -> (label, details) or an error."""

    def __init__(self, model: str) -> None:
        import gradio as gr
        from gradio_client import Client

        with gr.Blocks() as self.demo:
            load_tab().add_mammography_tab(model)
        self.demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True)
        self.client = Client(self.demo.local_url, verbose=False, ssl_verify=False)  # plain HTTP loopback

    def call(self, views: dict[str, str | Path]) -> tuple[dict | None, str]:
        from gradio_client import handle_file
        from gradio_client.exceptions import AppError

        args = [handle_file(str(views[slot])) if slot in views else None for slot in SLOTS]
        try:
            label, details = self.client.predict(*args, api_name="/predict_mammography")
        except AppError as err:
            return None, str(err)
        return {item["label"]: item["confidence"] for item in label["confidences"]}, details

    def close(self) -> None:
        self.demo.close()


# --- 1. predictions -----------------------------------------------------------------------------------------------


def two_view_breasts(args: MammoMeasureArguments):
    """(manifest class names, validation exams with a CC and an MLO of one breast as {slot: path}, labels, patients)."""
    manifest = load_mammo_manifest(args.dataset, exam_unit="breast", multi_crop="pair")
    validation = manifest.split(args.validation_fraction, seed=args.split_seed)["validation"]
    pairs = [exam for exam in validation.exams if len(exam.views) == 2 and len({s[0] for s in exam.views}) == 1]
    return (manifest.class_names, [{s: v.path for s, v in e.views.items()} for e in pairs],
            [e.label_index(manifest.class_names) for e in pairs], [e.patient_id for e in pairs])


def tab_answers(tab: TabClient, views: dict[str, str], positive: str) -> dict[str, tuple[float, str, str]] | None:
    """mode (CC alone / MLO alone / pair) -> (P(positive), top class, details); None if the tab refused any."""
    cc, mlo = (next(s for s in views if s.endswith(v)) for v in ("-CC", "-MLO"))
    answers = {}
    for mode, chosen in (("CC alone", {cc: views[cc]}), ("MLO alone", {mlo: views[mlo]}), ("pair", views)):
        probabilities, details = tab.call(chosen)
        if probabilities is None:
            print(f"  refused ({mode}, {', '.join(Path(p).name for p in chosen.values())}): {details}")
            return None
        answers[mode] = (probabilities[positive], max(probabilities, key=probabilities.get), details)
    return answers


def interval(entry: dict, percent: bool = True) -> str:
    text = "{:.1%}" if percent else "{:.3f}"
    if entry["low"] is None:
        return text.format(entry["estimate"])
    return f"{text.format(entry['estimate'])} ({text.format(entry['low'])}-{text.format(entry['high'])})"


def measure_predictions(name: str, model: str, breasts, labels, patients, class_names, examples: int) -> None:
    tab, positive = TabClient(model), class_names[-1]
    kept, kept_patients, refused = [], [], 0
    try:
        for views, label, patient in zip(breasts, labels, patients, strict=True):
            answers = tab_answers(tab, views, positive)
            if answers is None:
                refused += 1
                continue
            kept.append((answers, label))
            kept_patients.append(patient)
            if len(kept) <= examples:
                score, top, details = answers["pair"]
                print(f"\n  example ({name}, {', '.join(views)}; truth {class_names[label]}; pair P({positive}) "
                      f"{score:.3f}, CC alone {answers['CC alone'][0]:.3f}, MLO alone {answers['MLO alone'][0]:.3f}):"
                      "\n  " + details.replace("\n", "\n  "))
    finally:
        tab.close()
    truth = np.asarray([label for _, label in kept])
    print(f"\n{name}: {model}, {len(breasts)} breasts of validation patients with a CC and an MLO crop "
          f"({refused} refused by the input check)\n")
    print(f"| input | accuracy (95 % CI) | AUC of P({positive}) (95 % CI) | top class differs from the pair's "
          "(Wilson 95 % CI) | mean abs P change vs pair |")
    print("|---|---:|---:|---:|---:|")
    if len(class_names) != 2:
        raise SystemExit(f"expected two classes, got {class_names}")
    pair_score = np.asarray([a["pair"][0] for a, _ in kept])
    pair_top = [a["pair"][1] for a, _ in kept]
    for mode in ("CC alone", "MLO alone", "pair"):
        score = np.asarray([a[mode][0] for a, _ in kept])
        top = [a[mode][1] for a, _ in kept]
        # patient-clustered percentile bootstrap (2000 resamples, seed 0), as the benchmark's tables
        found = bootstrap_intervals(np.stack([1 - score, score], 1), truth, class_names, patient_ids=kept_patients)
        differs = sum(t != p for t, p in zip(top, pair_top, strict=True))
        print(f"| {mode} | {interval(found['accuracy'])} | {interval(found['macro_auc'], False)} | "
              f"{rate_with_interval(differs, len(truth)) if mode != 'pair' else '-'} | "
              f"{np.abs(score - pair_score).mean():.3f} |")


# --- 2. rejection rates -------------------------------------------------------------------------------------------


# What the tab refused before the chest, flat-fill, roughness, contrast and header rules were added.
OLD_RULE = ("colour", "modality")


class Tally:
    def __init__(self) -> None:
        self.rows: dict[str, list] = collections.defaultdict(lambda: [0, 0, 0, collections.Counter()])

    def add(self, group: str, found: dict[str, str]) -> None:
        row = self.rows[group]
        row[0], row[1], row[2] = row[0] + 1, row[1] + bool(found), row[2] + any(k in found for k in OLD_RULE)
        row[3].update(found.keys())

    def print(self, title: str) -> None:
        print(f"\n{title}\n\n| set | images | refused | rate (Wilson 95 % CI) | old rule (colour / modality only) | "
              "criteria that fired (count) |")
        print("|---|---:|---:|---:|---:|---|")
        for name, (total, refused, old, reasons) in self.rows.items():
            fired = ", ".join(f"{k} {v}" for k, v in reasons.most_common()) or "-"
            print(f"| {name} | {total} | {refused} | {rate_with_interval(refused, total)} | "
                  f"{rate_with_interval(old, total)} | {fired} |")


def crop_sets(args: MammoMeasureArguments) -> dict[str, list[str]]:
    manifest = load_mammo_manifest(args.dataset, exam_unit="breast", multi_crop="pair")
    splits = manifest.split(args.validation_fraction, seed=args.split_seed)
    named = {"validation": "real crops, validation patients (held out)", "train": "real crops, training patients"}
    return {named[s]: sorted({v.path for e in splits[s].exams for v in e.views.values()}) for s in named}


def generated_sets(args: MammoMeasureArguments, chest_files: list[Path]) -> dict[str, list[bytes]]:
    rng = np.random.default_rng(args.seed)
    sets: dict[str, list[bytes]] = collections.defaultdict(list)
    for index in rng.choice(len(chest_files), size=min(5 * args.per_kind, len(chest_files)), replace=False):
        variant = benign_variant(rng, Image.open(chest_files[int(index)]).convert("L"))
        sets["chest X-rays, benign variants (other sites)"].append(png_bytes(variant))
    for kind, make in generators().items():
        for _ in range(args.per_kind):
            image = make(rng)
            sets[f"GENERATED {kind} ({'grey' if image.mode == 'L' else 'colour'})"].append(png_bytes(image))
    with tempfile.TemporaryDirectory() as folder:
        write_synthetic_mammo(folder, args.per_kind // 4 + 1, seed=args.seed, config=SyntheticMammoConfig(size=256))
        synthetic = sorted(Path(folder, "images").glob("*.png"))
        sets["GENERATED full-field-like mammograms, 256 px (should pass)"] = [p.read_bytes() for p in synthetic]
    return dict(sorted(sets.items()))


def measure_rejection(args: MammoMeasureArguments) -> dict[str, list]:
    """Tables (a)-(d); returns a few sources per set for the tab cross-check."""
    check = MammogramCheck()
    chest_files = sorted(p for p in Path(args.chest).rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    sources = {**crop_sets(args), "real chest X-rays (cxr3 validation)": chest_files,
               **generated_sets(args, chest_files)}
    tally, samples, chest_scores = Tally(), {}, {}
    for name, items in sources.items():
        results = [check.all_failures(decode_upload(item)) for item in items]
        for _, found in results:
            tally.add(name, found)
        samples[name], chest_scores[name] = list(items[: args.tab_sample]), [s.chest_score for s, _ in results]
    tally.print(f"Input check (MammogramCheck, {check.config}) rejection rates")
    print_chest_thresholds(chest_scores, sorted({check.max_chest_score, check.chest_gate_threshold}))
    return samples


def print_chest_thresholds(chest_scores: dict[str, list[float]], thresholds: list[float]) -> None:
    """The chest criterion alone at each threshold, on the real sets and the generated mammograms."""
    print("\nThe chest criterion alone (chest gate score >= threshold)\n")
    print("| set | " + " | ".join(f"refused at {t:.3f} (Wilson 95 % CI)" for t in thresholds) + " |")
    print("|---|" + "---:|" * len(thresholds))
    for name, scores in chest_scores.items():
        if "GENERATED" in name and "mammogram" not in name:
            continue
        rates = [rate_with_interval(sum(s >= t for s in scores), len(scores)) for t in thresholds]
        print(f"| {name} | " + " | ".join(rates) + " |")


def cross_check_tab(model: str, samples: dict[str, list]) -> None:
    """The tab refuses exactly what the check refuses, on a sample of every set."""
    check, tab, agree, total = MammogramCheck(), TabClient(model), 0, 0
    try:
        with tempfile.TemporaryDirectory() as folder:
            for index, item in enumerate(x for items in samples.values() for x in items):
                path = Path(item) if not isinstance(item, bytes) else Path(folder, f"upload{index}.png")
                if isinstance(item, bytes):
                    path.write_bytes(item)
                refused_by_tab = tab.call({"L-CC": path})[0] is None
                agree += refused_by_tab == bool(check.all_failures(decode_upload(path))[1])
                total += 1
    finally:
        tab.close()
    print(f"\nTab cross-check ({model}): the tab's answer (refused / answered) matched the check on {agree}/{total}")


def main() -> None:
    (args,) = HfArgumentParser(MammoMeasureArguments).parse_args_into_dataclasses()
    class_names, breasts, labels, patients = two_view_breasts(args)
    print(f"# Mammography tab on real crops: {len(breasts)} two-view breasts of {len(set(patients))} validation "
          f"patients (split seed {args.split_seed}, validation fraction {args.validation_fraction})")
    for name, model in (("single-view model", args.single_model), ("multi-view model", args.multi_model)):
        measure_predictions(name, model, breasts, labels, patients, class_names, args.examples)
    samples = measure_rejection(args)
    cross_check_tab(args.single_model, samples)


if __name__ == "__main__":
    main()
