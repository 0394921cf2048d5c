"""Outcome labels from events, as pure functions: a completed work order's findings (was a
failure found, which mode) and the simulator's ground truth (a machine really failed). One
label per source event (`label_id` = the event id), so a redelivery stores nothing more."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from pdm_common.events import GroundTruth
from pdm_common.maintenance import WorkOrderEvent


@dataclass(frozen=True, slots=True)
class Label:
    label_id: uuid.UUID
    asset_id: str
    asset_type: str | None
    source: str  # work_order | simulator
    failure_found: bool
    failure_mode: str | None
    occurred_at: datetime
    ref: str | None


def from_work_order(event: WorkOrderEvent) -> Label | None:
    """The label of `work_order.completed` with findings; None for anything else."""
    order = event.work_order
    if event.event_type != "work_order.completed" or order.findings is None:
        return None
    findings = order.findings
    return Label(
        label_id=event.event_id,
        asset_id=order.asset_id,
        asset_type=order.asset_type,
        source="work_order",
        failure_found=findings.failure_found,
        failure_mode=findings.failure_mode if findings.failure_found else None,
        occurred_at=order.completed_at or event.occurred_at,
        ref=f"work_order:{order.work_order_id}",
    )


def from_truth(event: GroundTruth) -> Label | None:
    """The label of `failure.failed` (the machine really failed; a sensor fault is labelled
    no failure); None for injections and clears (no outcome yet, or a repair)."""
    if event.event_type != "failure.failed":
        return None
    return Label(
        label_id=event.event_id,
        asset_id=event.asset_id,
        asset_type=event.asset_type,
        source="simulator",
        failure_found=event.is_failure,
        failure_mode=event.mode if event.is_failure else None,
        occurred_at=event.occurred_at,
        ref=f"simulator:{event.mode}/{event.severity}",
    )
