"""Shortcut audit of a saved classifier: per-source metrics with patient-bootstrap intervals, a perturbation probe,
a source probe on the model's features, and the class x source confounding of the data (`run_audit`,
`hf-deitcxr audit`)."""

from .perturbations import Perturbation, default_perturbations
from .probes import confounding_table, source_probe, within_class_source_probes
from .report import shortcut_audit_section, write_audit_report
from .runner import AuditResult, run_audit

__all__ = [
    "AuditResult", "Perturbation", "confounding_table", "default_perturbations", "run_audit",
    "shortcut_audit_section", "source_probe", "within_class_source_probes", "write_audit_report",
]
