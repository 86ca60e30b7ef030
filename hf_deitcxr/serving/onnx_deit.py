"""The fused DeiT forward (`fast_deit.py`) exported to ONNX and run by ONNX Runtime: same call, same outputs.

At batch 1 the student is latency-bound by per-operation overhead; ONNX Runtime's CPU kernels and graph fusions
(LayerNorm, GELU, MatMul + Add) cut that overhead further than PyTorch eager can. The graph is exported once with
`torch.onnx.export(dynamo=True)` from the fused forward with the attention maps as outputs (the served logits,
calibration temperature included, plus every layer's attention probabilities for the rollout); without a heatmap
only the logits are fetched. The exported file is cached, keyed by a hash of the weights, the config and the
exporter's version, so a restart loads it instead of exporting again (`HF_DEITCXR_ONNX_CACHE`, default
`$HF_HOME/hf_deitcxr/onnx`).

`OnnxDeiT.from_fused` returns None (with a warning) when onnxruntime / onnxscript are missing or the export fails;
`forward_choice.choose_forward` checks its outputs against the PyTorch forward before using it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .fast_deit import FusedDeiT

logger = logging.getLogger(__name__)

CACHE_ENV = "HF_DEITCXR_ONNX_CACHE"
# Bumped when the exported graph changes for the same weights (inputs, outputs, export options).
_GRAPH_VERSION = "1"
_INPUT = "pixel_values"
_LOGITS = "logits"


class _ExportedForward(nn.Module):
    """The fused forward as a module for `torch.onnx.export`: pixel_values -> (logits, attentions of each layer)."""

    def __init__(self, fused: FusedDeiT) -> None:
        super().__init__()
        self.fused = fused

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits, attentions = self.fused(pixel_values, output_attentions=True)
        return (logits, *attentions)


class OnnxDeiT:
    """Callable `(pixel_values (batch, C, H, W), output_attentions) -> (logits (batch, labels), attentions or None)`,
    as `FusedDeiT`, on an ONNX Runtime session of the exported batch-1 graph (a batch runs one image at a time)."""

    def __init__(self, session, num_channels: int, height: int, width: int) -> None:
        self.session = session
        self.shape = (num_channels, height, width)
        self.output_names = [output.name for output in session.get_outputs()]
        if not self.output_names or self.output_names[0] != _LOGITS:
            raise ValueError(f"not an exported DeiT graph: outputs {self.output_names}")

    @classmethod
    def from_fused(
        cls, fused: FusedDeiT, model: nn.Module, *, cache_dir: str | os.PathLike | None = None,
        threads: int | None = None,
    ) -> OnnxDeiT | None:
        """The ONNX Runtime forward of `fused` (an fp32 `FusedDeiT` of `model`), exported or loaded from the cache;
        None, with a warning, when onnxruntime is missing or the export or the session fails."""
        try:
            import onnxruntime  # noqa: F401 - checked here so a missing package is a fallback, not an error
        except ImportError:
            logger.warning("onnxruntime is not installed (pip install 'hf-deitcxr[onnx]'): no ONNX Runtime forward")
            return None
        try:
            path = cached_graph(fused, model, cache_dir)
            return cls(make_session(path, threads), *fused.input_shape)
        except Exception as err:  # noqa: BLE001 - the exporter and ORT raise many kinds; any of them means fallback
            logger.warning("ONNX export of the DeiT forward failed (%s: %s): keeping the PyTorch forward",
                           type(err).__name__, str(err).splitlines()[0] if str(err) else "")
            return None

    def __call__(
        self, pixel_values: torch.Tensor, output_attentions: bool = False
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        if pixel_values.dim() != 4 or tuple(pixel_values.shape[1:]) != self.shape or not len(pixel_values):
            raise ValueError(f"expected pixel_values of shape (batch, {', '.join(map(str, self.shape))}) at the "
                             f"model size, got {tuple(pixel_values.shape)}")
        names = self.output_names if output_attentions else [_LOGITS]
        images = pixel_values.detach().to("cpu", torch.float32).numpy()
        runs = [self.session.run(names, {_INPUT: images[i : i + 1]}) for i in range(len(images))]
        # batch 1 (the Space's case) takes ORT's arrays as they are; a batch joins them
        outputs = runs[0] if len(runs) == 1 else [np.concatenate(parts) for parts in zip(*runs, strict=True)]
        logits = torch.from_numpy(outputs[0])
        return logits, (tuple(torch.from_numpy(maps) for maps in outputs[1:]) if output_attentions else None)


def graph_key(model: nn.Module) -> str:
    """A hash of what the exported graph depends on: the weights, the config, torch's and the graph's version."""
    digest = hashlib.sha256(f"{_GRAPH_VERSION}|{torch.__version__}|".encode())
    digest.update(model.config.to_json_string(use_diff=False).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def default_cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "hf_deitcxr" / "onnx"


def cached_graph(fused: FusedDeiT, model: nn.Module, cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of the exported graph of `fused`, exporting it first unless the cache already holds it."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / f"deit-{graph_key(model)}.onnx"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    export_graph(fused, path)
    return path


def export_graph(fused: FusedDeiT, path: Path) -> None:
    """Export the fused forward (fp32, batch 1, attention maps as outputs) to `path`, atomically."""
    probe = torch.zeros(1, *fused.input_shape)
    layers = len(fused.layers)
    with torch.no_grad(), _quiet("onnx_ir", "onnxscript"):
        program = torch.onnx.export(
            _ExportedForward(fused).eval(), (probe,), dynamo=True, optimize=True, verbose=False,
            input_names=[_INPUT], output_names=[_LOGITS, *(f"attentions.{i}" for i in range(layers))],
        )
    # a temporary file in the same folder, then a rename: a concurrent start never reads a half-written graph
    handle, temporary = tempfile.mkstemp(suffix=".onnx.tmp", dir=path.parent)
    os.close(handle)
    try:
        program.save(temporary, external_data=False)
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide a shared cache from other users
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    logger.info("exported the DeiT forward to %s", path)


@contextlib.contextmanager
def _quiet(*names: str):
    """The exporter's optimiser logs every pass at INFO (hundreds of lines): at most warnings while it runs."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(max(log.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)


def make_session(path: str | os.PathLike, threads: int | None = None):
    """A CPU ONNX Runtime session: all graph optimisations, `threads` (default torch's) intra-op threads, which do not
    spin-wait between runs under OMP_WAIT_POLICY=PASSIVE (as torch's OpenMP threads: on a small shared CPU a spinning
    pool would take a core from the decoding, input check and overlay around each forward)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE":
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


__all__ = ["CACHE_ENV", "OnnxDeiT", "cached_graph", "default_cache_dir", "export_graph", "graph_key", "make_session"]
