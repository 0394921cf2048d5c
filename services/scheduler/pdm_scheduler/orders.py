"""What an event means for work orders, as pure functions: when a prediction puts an asset at
risk (and of which failure mode, by when, how urgently), when a critical alarm calls for an
inspection, what a new order costs, and which lifecycle moves a command may make.

`storage.py` runs these against the rows it reads and writes what they decide.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from pdm_common.events import AlarmEvent, Prediction
from pdm_common.maintenance import FAILURE_MODES, TRANSITIONS, Findings, WorkOrderStatus
from pdm_scheduler.settings import SchedulerSettings

#: A mode that already has an active order keeps it while the newest prediction gives that
#: mode at least this share: a top mode flickering between two close modes must not open
#: a second order for the same asset.
KEEP_MODE_SHARE = 0.2
#: Share of its decision threshold a probability needs before a RUL p10 inside the window
#: opens an order while the RUL median is still outside it.
RUL_CORROBORATION = 0.5

#: Command action -> the status it moves an order to.
ACTION_TARGETS: dict[str, WorkOrderStatus] = {
    "start": "in_progress",
    "hold": "on_hold",
    "resume": "open",
    "complete": "completed",
    "cancel": "cancelled",
}
EVENT_OF_STATUS: dict[WorkOrderStatus, str] = {
    "open": "work_order.resumed",
    "scheduled": "work_order.scheduled",
    "in_progress": "work_order.started",
    "on_hold": "work_order.on_hold",
    "completed": "work_order.completed",
    "cancelled": "work_order.cancelled",
}


@dataclass(frozen=True, slots=True)
class Costing:
    """Defaults of a new order from its failure mode and asset type (the settings' tables)."""

    settings: SchedulerSettings

    def skill(self, mode: str | None) -> str:
        return self.settings.mode_skills.get(mode or "", self.settings.default_skill)

    def hours(self, mode: str | None) -> float:
        return self.settings.mode_hours.get(mode or "", self.settings.default_hours)

    def parts(self, mode: str | None) -> float:
        return self.settings.mode_parts_cost.get(mode or "", self.settings.default_parts_cost)

    def failure_cost(self, asset_type: str | None) -> float:
        return self.settings.failure_cost.get(asset_type or "", self.settings.default_failure_cost)

    def downtime(self, asset_type: str | None) -> float:
        return self.settings.downtime_cost_per_h.get(
            asset_type or "", self.settings.default_downtime_cost_per_h
        )


@dataclass(frozen=True, slots=True)
class Assessment:
    """A prediction read for maintenance: is the asset at risk, by when, how urgently."""

    as_of: datetime
    at_risk: bool
    why: str
    probability: float | None
    rul_h: tuple[float | None, float | None, float | None]
    due_by: datetime | None
    priority: int
    modes: Mapping[str, float]


def rul_hours(
    prediction: Prediction, hours_per_cycle: float
) -> tuple[float | None, float | None, float | None]:
    """The RUL quantiles in hours (a model counting cycles is converted; no RUL: Nones)."""
    unit = (prediction.rul_unit or "hours").lower()
    factor = hours_per_cycle if unit.startswith("cycle") else 1.0
    if unit not in ("hours", "h") and not unit.startswith("cycle"):
        return (None, None, None)

    def h(value: float | None) -> float | None:
        return None if value is None or not math.isfinite(value) else max(0.0, value * factor)

    return (h(prediction.rul_p10), h(prediction.rul_p50), h(prediction.rul_p90))


def priority_for(due_by: datetime, now: datetime) -> int:
    """3 (urgent) due within a day, 2 within three days, else 1."""
    hours = (due_by - now).total_seconds() / 3600
    return 3 if hours <= 24 else 2 if hours <= 72 else 1


def assess(prediction: Prediction, settings: SchedulerSettings) -> Assessment:
    """At risk when the probability crosses the model's own decision threshold, or the RUL
    says so: its median within `rul_open_h`, or its p10 within it while the probability is
    at least `RUL_CORROBORATION` of the threshold. A p10 alone is not enough: a quantile model
    gives a healthy asset a wide lower tail (p10 7 h, p50 72 h, P(failure) 0.03 was seen on a
    healthy simulated pump) and every such asset would get a technician's visit. The deadline
    is the RUL p10 (a 10 % chance of failing before it), else `default_due_h`."""
    as_of = prediction.as_of or prediction.occurred_at
    p10, p50, p90 = rul_hours(prediction, settings.hours_per_cycle)
    probability = prediction.failure_probability
    by_probability = prediction.failure_predicted is True or (
        probability is not None
        and prediction.decision_threshold is not None
        and probability >= prediction.decision_threshold
    )
    threshold = prediction.decision_threshold
    corroborated = (
        probability is None or threshold is None or probability >= RUL_CORROBORATION * threshold
    )
    by_rul = (
        p10 is not None
        and p10 <= settings.rul_open_h
        and (corroborated or (p50 is not None and p50 <= settings.rul_open_h))
    )
    reasons = []
    if by_probability:
        shown = "?" if probability is None else f"{probability:.2f}"
        reasons.append(
            f"P(failure) {shown} >= threshold {'?' if threshold is None else f'{threshold:.2f}'}"
        )
    if by_rul:
        reasons.append(f"RUL p10 {p10:.1f} h <= {settings.rul_open_h:g} h")
    due_by: datetime | None = None
    if by_probability or by_rul:
        due_by = as_of + timedelta(hours=p10 if p10 is not None else settings.default_due_h)
    return Assessment(
        as_of=as_of,
        at_risk=by_probability or by_rul,
        why="; ".join(reasons) or "healthy",
        probability=probability,
        rul_h=(p10, p50, p90),
        due_by=due_by,
        priority=priority_for(due_by, as_of) if due_by else 1,
        modes={m: p for m, p in prediction.failure_modes.items() if p > 0},
    )


def choose_mode(modes: Mapping[str, float], active: Iterable[str | None]) -> str:
    """The failure mode an at-risk prediction is about: an active order's mode while the
    prediction still gives it `KEEP_MODE_SHARE`, else the most probable mode (`unknown`
    when the model names none)."""
    for mode in active:
        if mode is not None and (not modes or modes.get(mode, 0.0) >= KEEP_MODE_SHARE):
            return mode
    if not modes:
        return "unknown"
    return max(sorted(modes), key=lambda m: modes[m])


def wants_inspection(event: AlarmEvent) -> bool:
    """A critical alarm (opened or escalated to critical) calls for an inspection."""
    return event.event_type in ("alarm.opened", "alarm.escalated") and event.severity == "critical"


def transition_error(current: WorkOrderStatus, target: WorkOrderStatus) -> str | None:
    """Why an order cannot move from `current` to `target` (None: it can)."""
    if target in TRANSITIONS[current]:
        return None
    allowed = ", ".join(sorted(TRANSITIONS[current])) or "none (it is closed)"
    return f"a work order that is {current} cannot become {target}; allowed: {allowed}"


def findings_error(findings: Findings) -> str | None:
    """What the schema cannot say about findings (None: fine)."""
    if findings.failure_mode is not None and findings.failure_mode not in FAILURE_MODES:
        return (
            f"findings.failure_mode: {findings.failure_mode!r} is not in the taxonomy; "
            f"one of {', '.join(FAILURE_MODES)}"
        )
    if findings.failure_found and findings.failure_mode is None:
        return "findings.failure_mode: required when failure_found is true (or 'unknown')"
    return None
