"""`hf-deitcxr audit MODEL --dataset D ...`: the arguments (an HfArgumentParser dataclass) and the entry point."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..metrics.intervals import DEFAULT_NUM_RESAMPLES
from .inference import PRECISIONS
from .measures import AGREEMENT_THRESHOLD
from .probes import DEFAULT_FOLDS


@dataclass
class AuditArguments:
    model_name_or_path: str = field(metadata={"help": "Saved model folder or Hub id (also the first positional "
                                                      "argument)"})
    dataset: str = field(metadata={"help": "Dataset (same forms as for training)"})
    split: str = field(default="validation", metadata={"help": "Split to audit"})
    output_dir: str | None = field(default=None, metadata={"help": "Where audit.md/audit.json/PNGs go (default: "
                                                                   "the model folder)"})
    batch_size: int = field(default=64, metadata={"help": "Inference batch size"})
    image_size: int = field(default=224, metadata={"help": "Size of the 8-bit grey image the perturbations act on"})
    seed: int = field(default=0, metadata={"help": "Seeds the bootstrap, the probe folds and torch"})
    num_resamples: int = field(default=DEFAULT_NUM_RESAMPLES, metadata={"help": "Bootstrap replicates"})
    num_folds: int = field(default=DEFAULT_FOLDS, metadata={"help": "GroupKFold folds of the source probe"})
    agreement_threshold: float = field(default=AGREEMENT_THRESHOLD, metadata={
        "help": "Flag a perturbation when agreement on a source falls below this"})
    precision: str = field(default="auto", metadata={
        "help": "The forward's precision; auto: bf16 where training would use bf16 (CUDA with bf16, or a CPU with "
                "native bf16), else fp32", "choices": list(PRECISIONS)})


def audit_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `hf-deitcxr audit`; prints the flags and where the report went."""
    from transformers import HfArgumentParser

    from .runner import run_audit

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith("-"):
        argv = ["--model_name_or_path", argv[0], *argv[1:]]
    (args,) = HfArgumentParser(AuditArguments).parse_args_into_dataclasses(args=argv)
    result = run_audit(args.model_name_or_path, args.dataset, args.split, args.output_dir,
                       batch_size=args.batch_size, image_size=args.image_size, seed=args.seed,
                       num_resamples=args.num_resamples, num_folds=args.num_folds,
                       agreement_threshold=args.agreement_threshold, precision=args.precision)
    print("\n".join(f"flag: {flag}" for flag in result.flags) or "no flags")
    print(f"wrote {', '.join(str(path) for path in result.files)} "
          f"({result.audit['timings']['total_s']:.0f} s)")
    return 0


__all__ = ["AuditArguments", "audit_main"]
