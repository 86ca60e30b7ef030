"""Mammography: exams of up to four views, single-view ViT/DeiT/Swin/PVT transfer learning, a multi-view transformer.

Modules:
- `manifest`: exams from a CSV manifest (or a folder's manifest.csv) or DICOM tags, validation, patient-level splits;
- `exams`: the exam unit (exam / breast / patient) and the rule for several crops of one view;
- `validation`: `validate-data` for mammography (counts, exact duplicates, split leakage);
- `dataset`: decode once (oriented, resized whole), exam- and view-level datasets, the multi-view collator;
- `builders`: single-view backbones and the multi-view model (`hf_deitcxr.models.multiview_mammo`, re-exported
  here) from pretrained checkpoints;
- `evaluation`: exam-level scores from view-level predictions (max / mean);
- `training`: the `--task mammo` run, through the shared training harness;
- `synthetic`: a multi-view synthetic task; `inference`: a predictor; `input_check`: the Space tab's input check;
- `benchmark` (with `bench_models`, `bench_runs`, `bench_summary`): `hf-deitcxr benchmark --task mammo`, backbones,
  distillation and multi view from scratch on a real crop folder (cbis_mass), resumable, with bootstrap intervals.

The data and training API is imported lazily (`from hf_deitcxr.mammo import read_manifest` works), so importing the
package for the model classes does not pull in `datasets` or `pydicom`.
"""

from importlib import import_module

from ..models.multiview_mammo.configuration_multiview import MultiViewMammoConfig
from ..models.multiview_mammo.modeling_multiview import MultiViewMammoForExamClassification, MultiViewMammoModel

_LAZY = {
    "MammoExam": "manifest",
    "MammoManifest": "manifest",
    "ManifestError": "manifest",
    "VIEW_SLOTS": "manifest",
    "load_mammo_manifest": "manifest",
    "read_manifest": "manifest",
    "EXAM_UNITS": "exams",
    "MULTI_CROP_RULES": "exams",
    "MammoImage": "exams",
    "validate_mammo_data": "validation",
    "MammoExamDataset": "dataset",
    "MultiViewCollator": "dataset",
    "orient": "dataset",
    "build_single_view_model": "builders",
    "build_multiview_model": "builders",
    "build_mammo_model": "builders",
    "aggregate_views": "evaluation",
    "MammoPredictor": "inference",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["MultiViewMammoConfig", "MultiViewMammoForExamClassification", "MultiViewMammoModel", *_LAZY]
