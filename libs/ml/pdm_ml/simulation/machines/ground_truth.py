"""Ground truth: what was injected into an asset and when it fails (the evaluation label)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pdm_ml.simulation.machines.kinds import AssetType, FailureMode, SeverityLevel
from pdm_ml.simulation.machines.timestamps import _iso_or_none, iso_utc


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """What was injected into an asset and when it fails: the evaluation label.

    `expected_failure_at` is None and `is_failure` False for modes that are not failures of
    the machine (sensor interference): a detector that alarms on them raises a false alarm.
    """

    asset_id: str
    asset_type: AssetType
    mode: FailureMode
    severity: SeverityLevel
    injected_at: datetime
    expected_failure_at: datetime | None
    failed: bool = False
    is_failure: bool = True
    sensor: str | None = None
    cleared_at: datetime | None = None

    def to_event(self) -> dict[str, Any]:
        """JSON-ready dict for the ground-truth topic (times ISO 8601 UTC)."""
        return {
            "asset_id": self.asset_id,
            "asset_type": self.asset_type,
            "mode": self.mode,
            "severity": self.severity,
            "injected_at": iso_utc(self.injected_at),
            "expected_failure_at": _iso_or_none(self.expected_failure_at),
            "failed": self.failed,
            "is_failure": self.is_failure,
            "sensor": self.sensor,
            "cleared_at": _iso_or_none(self.cleared_at),
        }
