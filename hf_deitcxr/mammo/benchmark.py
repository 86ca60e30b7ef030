"""`hf-deitcxr benchmark --task mammo`: the single-view backbone screen, the seed's distillation and the two-view
comparison on a real CBIS-DDSM mass-crop folder (`shared/data/cbis_mass`), as one resumable command.

Every method (see `bench_runs`) trains from scratch on the patient-level train split of the folder's breasts
(`--exam_unit breast`, every crop used once) and is scored on the validation split: per crop, per breast (max and
mean over its views; the mean is the late fusion of the single-view probabilities) and, for `multi_view`, by the
multi-view model on the CC+MLO breasts, its encoder from this seed's `--multi_view_encoder` run. `--screen_seeds`
run every method, `--seeds` only the `--final_methods` (and what they need: the encoder, the teacher).

Like the chest X-ray `benchmark`: one line per finished run in `<output_dir>/results.jsonl`, and a rerun skips the
(method, seed) runs found there; `benchmark.md` and `benchmark.json` are rewritten after every run. With
`--deadline_utc`, a run that would not finish before it (by the mean wall time of the runs so far) is not started
and is listed as not run.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from ..hardware import cpu_description
from ..training.arguments import configure_logging
from .bench_models import ModelSize
from .bench_runs import TEACHER_METHOD, BenchData, Budget, load_bench_data, parse_method, run_method
from .bench_summary import markdown, summarise

logger = logging.getLogger(__name__)

BEST = "best"
VIT_LIKE = ("vit", "deit", "deit_student", "deit_distilled")
DEFAULT_METHODS = "vit,deit,swin,pvt_v2,densenet,deit_noaug,deit_unbalanced,deit_student,deit_distilled,multi_view"
RESULTS_FILE = "results.jsonl"


@dataclass
class MammoBenchmarkArguments:
    task: str = field(default="mammo", metadata={"help": "mammo: this benchmark", "choices": ["mammo"]})
    dataset: str = field(default="../shared/data/cbis_mass", metadata={"help": "Folder with manifest.csv"})
    output_dir: str = field(default="outputs/bench_mammo_real")
    methods: str = field(default=DEFAULT_METHODS, metadata={"help": "Comma-separated methods (hf_deitcxr.mammo."
                                                           "bench_runs: a base plus _noaug/_unbalanced/...)"})
    screen_seeds: str = field(default="0", metadata={"help": "Seeds at which every method runs"})
    seeds: str = field(default="0,1,2", metadata={"help": "Seeds at which the --final_methods run"})
    final_methods: str = field(default=f"{BEST},multi_view", metadata={
        "help": f"Methods run at every --seeds seed ({BEST}: the chosen --multi_view_encoder)"})
    multi_view_encoder: str = field(
        default=BEST, metadata={"help": "Single-view ViT/DeiT method whose trained model (same seed) initialises the "
                                "multi-view encoder; best: the ViT/DeiT method of --methods with the highest mean "
                                "breast AUC (late fusion) at the screen seeds (chosen on validation)"})
    image_size: int = field(default=64, metadata={"help": "Crops (128 px) are resized whole to this size"})
    epochs: float = field(default=30)
    multi_view_epochs: float = field(default=20)
    batch_size: int = field(default=64)
    multi_view_batch_size: int = field(default=32)
    learning_rate: float = field(default=5e-4)
    multi_view_learning_rate: float = field(default=2e-4)
    hidden_size: int = field(default=192, metadata={"help": "ViT/DeiT width (Swin/PVT-v2 start at a quarter)"})
    num_layers: int = field(default=6)
    num_heads: int = field(default=3)
    densenet_growth_rate: int = field(default=12)
    num_global_layers: int = field(default=2)
    global_tokens: str = field(default="cls", metadata={"choices": ["cls", "all"]})
    distillation_alpha: float = field(default=0.7)
    distillation_tau: float = field(default=2.0)
    validation_fraction: float = field(default=0.15)
    split_seed: int = field(default=0)
    num_resamples: int = field(default=2000, metadata={"help": "Bootstrap replicates of each interval"})
    threads: int | None = field(default=None, metadata={"help": "torch threads (default: torch's)"})
    deadline_utc: str | None = field(default=None, metadata={"help": "YYYY-MM-DD HH:MM (UTC): start no run that "
                                                             "would end after it"})

    def __post_init__(self) -> None:
        for name in {*self.method_list, *self.final_list} - {BEST}:
            parse_method(name)  # unknown names fail before any data is read
        if self.multi_view_encoder != BEST and parse_method(self.multi_view_encoder).base not in VIT_LIKE:
            raise ValueError(f"--multi_view_encoder must be a ViT/DeiT method or {BEST}, got "
                             f"{self.multi_view_encoder!r}")
        self.deadline  # noqa: B018 - validates the deadline early

    @property
    def method_list(self) -> list[str]:
        return _items(self.methods)

    @property
    def final_list(self) -> list[str]:
        return [m for m in _items(self.final_methods) if m in self.method_list or m == BEST]

    @property
    def screen_list(self) -> list[int]:
        return [int(s) for s in _items(self.screen_seeds)]

    @property
    def encoder_candidates(self) -> list[str]:
        if self.multi_view_encoder != BEST:
            return [self.multi_view_encoder]
        return [m for m in self.method_list if parse_method(m).base in VIT_LIKE]

    @property
    def deadline(self) -> datetime | None:
        if not self.deadline_utc:
            return None
        return datetime.strptime(self.deadline_utc, "%Y-%m-%d %H:%M").replace(tzinfo=timezone.utc)

    def budget(self) -> Budget:
        size = ModelSize(self.hidden_size, self.num_layers, self.num_heads, self.densenet_growth_rate)
        return Budget(self.epochs, self.multi_view_epochs, self.batch_size, self.multi_view_batch_size,
                      self.learning_rate, self.multi_view_learning_rate, self.num_global_layers, self.global_tokens,
                      self.distillation_alpha, self.distillation_tau, size)


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def dependencies(method: str, args: MammoBenchmarkArguments, encoder: str | None = None) -> list[str]:
    """The runs of the same seed a method needs first (the teacher of a distilled student; the multi-view encoder's
    single-view model: `encoder`, or while `best` is undecided every candidate)."""
    base = parse_method(method).base
    if base == "deit_distilled":
        return [TEACHER_METHOD]
    if base == "multi_view":
        needed = []
        for candidate in [encoder] if encoder else args.encoder_candidates:
            needed += [*dependencies(candidate, args), candidate]
        return needed
    return []


def planned_runs(args: MammoBenchmarkArguments, encoder: str | None = None) -> list[tuple[str, int]]:
    """(method, seed) in run order: every screen seed's methods, then the other seeds' final methods (`best`
    standing for the chosen encoder); each run after the runs it depends on."""
    if args.multi_view_encoder != BEST:
        encoder = args.multi_view_encoder
    screen = args.screen_list
    seeds = screen + [int(s) for s in _items(args.seeds) if int(s) not in screen]
    plan: list[tuple[str, int]] = []
    for seed in seeds:
        wanted = args.method_list if seed in screen else final_methods(args, encoder)
        for method in wanted:
            for needed in [*dependencies(method, args, encoder), method]:
                if (needed, seed) not in plan:
                    plan.append((needed, seed))
    return plan


def final_methods(args: MammoBenchmarkArguments, encoder: str | None) -> list[str]:
    """The --final_methods with `best` replaced by the encoder; while it is undecided (the screen has not run)
    neither it nor the multi-view model."""
    if encoder is None:
        return [m for m in args.final_list if m != BEST and not parse_method(m).is_multi_view]
    return list(dict.fromkeys(encoder if m == BEST else m for m in args.final_list))


def chosen_encoder(args: MammoBenchmarkArguments, rows: list[dict[str, Any]]) -> str | None:
    """The multi-view encoder: the given method, or under `best` the candidate with the highest mean late-fusion
    breast AUC at the screen seeds once every candidate has run there (None before)."""
    if args.multi_view_encoder != BEST:
        return args.multi_view_encoder
    scores: dict[str, list[float]] = {}
    for row in rows:
        if row["method"] in args.encoder_candidates and row["seed"] in args.screen_list:
            scores.setdefault(row["method"], []).append(breast_auc(row))
    if not scores or set(scores) != set(args.encoder_candidates) or any(
            len(v) < len(args.screen_list) for v in scores.values()):
        return None
    return max(scores, key=lambda method: statistics.mean(scores[method]))


def breast_auc(row: dict[str, Any]) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(row["exam_labels"], row["exam_scores"]["mean"]))


def read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_benchmark(args: MammoBenchmarkArguments) -> dict[str, Any]:
    """Run every planned (method, seed) not yet in results.jsonl; write benchmark.md / benchmark.json."""
    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(args.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    results = root / RESULTS_FILE
    rows = read_rows(results)
    not_run: list[tuple[str, int]] = []
    data: BenchData | None = None
    while True:
        encoder = chosen_encoder(args, rows)
        done = {(row["method"], row["seed"]) for row in rows} | set(not_run)
        pending = [run for run in planned_runs(args, encoder) if run not in done]
        if not pending:
            break
        method, seed = pending[0]
        needs = dependencies(method, args, encoder)
        if any((need, seed) in not_run for need in needs) or past_deadline(args, rows) or (
                parse_method(method).is_multi_view and encoder is None):
            not_run.append((method, seed))
            continue
        data = data or load_bench_data(args.dataset, args.image_size, args.validation_fraction, args.split_seed)
        logger.info("mammo benchmark: %s seed %d", method, seed)
        row = run_method(parse_method(method), data, args.budget(), seed, run_dir(root, method, seed),
                         teacher_dir=model_dir(root, TEACHER_METHOD, seed),
                         encoder_dir=model_dir(root, encoder, seed) if encoder else None)
        with open(results, "a") as handle:
            handle.write(json.dumps(row) + "\n")
        rows.append(row)
        write_summary(args, root, rows, not_run)
    return write_summary(args, root, rows, not_run)


def run_dir(root: Path, method: str, seed: int) -> Path:
    return root / "runs" / f"{method}-seed{seed}"


def model_dir(root: Path, method: str, seed: int) -> Path | None:
    folder = run_dir(root, method, seed) / "model"
    return folder if (folder / "config.json").is_file() else None


def past_deadline(args: MammoBenchmarkArguments, rows: list[dict[str, Any]]) -> bool:
    """Whether a run started now would end after --deadline_utc (by the mean wall time of the runs so far)."""
    if args.deadline is None:
        return False
    expected = statistics.mean(row["wall_s"] for row in rows) if rows else 0.0
    return datetime.now(timezone.utc).timestamp() + expected > args.deadline.timestamp()


def write_summary(args: MammoBenchmarkArguments, root: Path, rows: list[dict[str, Any]],
                  not_run: list[tuple[str, int]]) -> dict[str, Any]:
    label_names = rows[0]["label_names"] if rows else []
    encoder = chosen_encoder(args, rows)
    wanted = set(planned_runs(args, encoder))
    summary = summarise([r for r in rows if (r["method"], r["seed"]) in wanted], label_names, args.num_resamples,
                        reference=encoder)
    missing = [f"{m} seed {s}" for m, s in not_run]
    header = (f"Mammography on real crops: {args.dataset}, patient-level validation split (fraction "
              f"{args.validation_fraction}, split seed {args.split_seed}), breasts = CC+MLO of one breast, "
              f"{args.image_size} px, from scratch, {args.epochs:g} epochs single view / {args.multi_view_epochs:g} "
              f"multi view; CPU: {cpu_description()}; written {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} "
              "UTC.")
    (root / "benchmark.md").write_text(markdown(summary, header, missing))
    report = {"arguments": asdict(args), "multi_view_encoder": encoder, "summary": summary, "not_run": missing,
              "runs": [{k: r[k] for k in ("method", "seed", "wall_s", "started_utc", "finished_utc",
                                          "num_train_items", "global_step", "teacher_logits")} for r in rows]}
    (root / "benchmark.json").write_text(json.dumps(report, indent=2))
    return report


def mammo_benchmark_main(argv: list[str]) -> int:
    from transformers import HfArgumentParser

    configure_logging()
    (args,) = HfArgumentParser(MammoBenchmarkArguments).parse_args_into_dataclasses(args=list(argv))
    run_benchmark(args)
    print((Path(args.output_dir) / "benchmark.md").read_text())
    return 0


__all__ = ["DEFAULT_METHODS", "MammoBenchmarkArguments", "dependencies", "mammo_benchmark_main", "planned_runs",
           "run_benchmark"]
