"""What every detector returns, and the shared severity scale."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pdm_common.events import SEVERITY_ORDER, Severity


@dataclass(frozen=True, slots=True)
class Score:
    """One detector's verdict on one reading (univariate) or one snapshot (multivariate).

    `value` is the detector's anomaly score, comparable with its `threshold`; `severity` is
    None below the threshold. `contributors` name the sensors behind the score (with their
    share) so an operator sees *why*.
    """

    detector: str
    value: float
    threshold: float
    severity: Severity | None
    contributors: Mapping[str, float] = field(default_factory=dict)
    model_name: str | None = None
    model_version: str | None = None

    @property
    def is_anomalous(self) -> bool:
        return self.severity is not None


def max_severity(a: Severity | None, b: Severity | None) -> Severity | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if SEVERITY_ORDER.index(a) >= SEVERITY_ORDER.index(b) else b


def severity_rank(s: Severity | None) -> int:
    """-1 for none, then 0 (info) .. 4 (critical)."""
    return -1 if s is None else SEVERITY_ORDER.index(s)
