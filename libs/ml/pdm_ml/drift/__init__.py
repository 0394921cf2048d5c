"""Drift checks from reference statistics prepared once per model version.

`build_profile` at registration (small JSON stored with the model version), `check` on every
scheduled window (never re-reads the reference; the tests Evidently would pick by default), and
`evidently_report` for the human-readable report on bounded samples.
"""

from pdm_ml.drift.check import ColumnDrift, DriftResult, check
from pdm_ml.drift.profile import (
    CategoricalProfile,
    NumericProfile,
    ReferenceProfile,
    build_profile,
    infer_kind,
)
from pdm_ml.drift.report import bounded_sample, evidently_report, evidently_verdicts

__all__ = [
    "CategoricalProfile",
    "ColumnDrift",
    "DriftResult",
    "NumericProfile",
    "ReferenceProfile",
    "bounded_sample",
    "build_profile",
    "check",
    "evidently_report",
    "evidently_verdicts",
    "infer_kind",
]
