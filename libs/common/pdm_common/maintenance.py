"""Maintenance contracts: work orders, technicians, preventive plans, the published schedule,
the commands on `pdm.maintenance.commands.v1` and the events on `pdm.maintenance.events.v1`.

`pdm.maintenance.events.v1` is the CMMS-neutral integration point: every change of a work
order (`work_order.*`, with the whole order as it now stands) and every published schedule
(`schedule.published`). A completed order carries its findings (failure found or not, the
failure mode in the one taxonomy below, cause, remedy, hours, cost, 5-whys): these are the
platform's ground-truth labels.
"""

from __future__ import annotations

import uuid
from datetime import time
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from pdm_common.events import ASSET_ID_PATTERN, SENSOR_PATTERN, Envelope

WorkOrderType = Literal["preventive", "predictive", "corrective", "inspection"]
WorkOrderStatus = Literal["open", "scheduled", "in_progress", "on_hold", "completed", "cancelled"]
WorkOrderSource = Literal["prediction", "alarm", "plan", "person"]
ACTIVE_STATUSES: tuple[WorkOrderStatus, ...] = ("open", "scheduled", "in_progress", "on_hold")
#: Allowed lifecycle moves (anything else is refused as a conflict, HTTP 409). `scheduled`
#: and back to `open` are the scheduler's own moves when a plan places or drops an order.
TRANSITIONS: dict[WorkOrderStatus, frozenset[WorkOrderStatus]] = {
    "open": frozenset({"scheduled", "in_progress", "on_hold", "cancelled"}),
    "scheduled": frozenset({"open", "in_progress", "on_hold", "cancelled"}),
    "in_progress": frozenset({"on_hold", "completed", "cancelled"}),
    "on_hold": frozenset({"open", "in_progress", "cancelled"}),
    "completed": frozenset(),
    "cancelled": frozenset(),
}

#: The one failure-mode taxonomy: the modes the prediction service reports (simulated fleet,
#: AI4I milling) -> the ISO 14224 failure-mode code and what it means. Findings must name
#: one of these keys (or `other` / `unknown`), so completions can be joined with predictions.
FAILURE_MODES: dict[str, tuple[str, str]] = {
    "bearing_degradation": ("VIB", "Vibration (bearing wear)"),
    "motor_overheating": ("OHE", "Overheating (winding)"),
    "seal_leak": ("ELP", "External leakage - process medium"),
    "tool_wear": ("PDE", "Parameter deviation (tool wear)"),
    "TWF": ("PDE", "Tool wear failure"),
    "HDF": ("OHE", "Heat dissipation failure"),
    "PWF": ("ERO", "Power failure (erratic output)"),
    "OSF": ("STD", "Overstrain (structural deficiency)"),
    "RNF": ("UNK", "Random failure"),
    "other": ("OTH", "Other"),
    "unknown": ("UNK", "Unknown"),
}

Name = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Text = Annotated[str, StringConstraints(max_length=4000)]
Skill = Annotated[str, StringConstraints(pattern=SENSOR_PATTERN)]
Identifier = Annotated[str, StringConstraints(pattern=ASSET_ID_PATTERN)]
Money = Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)]
Hours = Annotated[float, Field(gt=0, le=2000, allow_inf_nan=False)]


class RootCause(BaseModel):
    """A 5-whys record: the problem, each "why?" answered in turn, the root cause reached."""

    model_config = ConfigDict(extra="forbid")

    problem: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    whys: list[Annotated[str, StringConstraints(min_length=1, max_length=2000)]] = Field(
        min_length=1, max_length=10
    )
    root_cause: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    actions: list[Annotated[str, StringConstraints(max_length=2000)]] = Field(
        default_factory=list, max_length=20
    )


class Findings(BaseModel):
    """What the technician found: the ground-truth label of a completed order."""

    model_config = ConfigDict(extra="forbid")

    failure_found: bool
    failure_mode: str | None = Field(
        None, description="A key of the failure-mode taxonomy (`FAILURE_MODES`)."
    )
    cause: Text | None = None
    remedy: Text | None = None
    actual_hours: Annotated[float, Field(ge=0, le=2000, allow_inf_nan=False)] | None = None
    actual_cost: Money | None = None
    root_cause: RootCause | None = None
    notes: Text | None = None

    @property
    def iso14224(self) -> str | None:
        """The ISO 14224 failure-mode code of `failure_mode`."""
        return FAILURE_MODES[self.failure_mode][0] if self.failure_mode else None


class WorkOrderFields(BaseModel):
    """What a person may set on a work order (create: `asset_id`, `type`, `title` required)."""

    model_config = ConfigDict(extra="forbid")

    asset_id: Identifier | None = None
    asset_type: Skill | None = None
    type: WorkOrderType | None = None
    title: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    description: Text | None = None
    priority: Annotated[int, Field(ge=0, le=3)] | None = Field(
        None, description="0 low, 1 medium, 2 high, 3 urgent."
    )
    failure_mode: str | None = None
    skill: Skill | None = None
    estimated_hours: Hours | None = None
    parts_cost: Money | None = None
    failure_cost: Money | None = None
    downtime_cost_per_h: Money | None = None
    due_by: AwareDatetime | None = None
    technician_id: Identifier | None = Field(
        None, description="Pin the order to this technician (the optimiser keeps it there)."
    )


class WorkOrder(BaseModel):
    """A work order as it stands: one row of the scheduler's `work_orders` table."""

    work_order_id: uuid.UUID
    asset_id: str
    asset_type: str | None = None
    type: WorkOrderType
    status: WorkOrderStatus
    priority: int
    source: WorkOrderSource
    source_ref: str | None = None
    failure_mode: str | None = None
    title: str
    description: str | None = None
    skill: str
    estimated_hours: float
    parts_cost: float
    labour_cost_estimate: float | None = Field(
        None, description="estimated_hours x the assigned (or cheapest qualified) rate."
    )
    failure_cost: float
    downtime_cost_per_h: float
    due_by: AwareDatetime | None = None
    failure_probability: float | None = None
    rul_p10_h: float | None = None
    rul_p50_h: float | None = None
    rul_p90_h: float | None = None
    risk_as_of: AwareDatetime | None = Field(None, description="Time of the newest prediction.")
    healthy_since: AwareDatetime | None = None
    technician_id: str | None = None
    pinned: bool = False
    scheduled_start: AwareDatetime | None = None
    scheduled_end: AwareDatetime | None = None
    bound_by: list[str] = Field(default_factory=list)
    schedule_note: str | None = None
    findings: Findings | None = None
    started_at: AwareDatetime | None = None
    completed_at: AwareDatetime | None = None
    cancelled_reason: str | None = None
    created_at: AwareDatetime
    created_by: str
    updated_at: AwareDatetime
    version: int


class Transition(BaseModel):
    """One recorded lifecycle move: who moved the order from what to what, when and why."""

    work_order_id: uuid.UUID
    from_status: WorkOrderStatus | None
    to_status: WorkOrderStatus
    actor: str
    reason: str | None = None
    at: AwareDatetime


class Shift(BaseModel):
    """A weekly working pattern: on `days` (0 = Monday), from `start` to `end` (UTC); an end
    at or before the start runs past midnight."""

    model_config = ConfigDict(extra="forbid")

    days: list[Annotated[int, Field(ge=0, le=6)]] = Field(min_length=1, max_length=7)
    start: time
    end: time


class Technician(BaseModel):
    model_config = ConfigDict(extra="forbid")

    technician_id: Identifier
    name: Name
    skills: list[Skill] = Field(min_length=1, max_length=32)
    shifts: list[Shift] = Field(min_length=1, max_length=21)
    hourly_cost: Money = 0.0
    active: bool = True


class MaintenancePlan(BaseModel):
    """A time-based preventive plan: every `interval_hours`, for one asset or every known
    asset of a type, an order due `interval_hours` after the previous one."""

    model_config = ConfigDict(extra="forbid")

    plan_id: Identifier
    name: Name
    asset_id: Identifier | None = None
    asset_type: Skill | None = None
    interval_hours: Annotated[float, Field(ge=1, le=24 * 3650)]
    skill: Skill
    estimated_hours: Hours = 1.0
    parts_cost: Money = 0.0
    priority: Annotated[int, Field(ge=0, le=3)] = 1
    active: bool = True


class ProductionWindow(BaseModel):
    """When maintenance may stop an asset; an asset with windows is worked on only inside
    them, one without any at any time."""

    model_config = ConfigDict(extra="forbid")

    start: AwareDatetime
    end: AwareDatetime


class WhatIf(BaseModel):
    """Constraints of a plan computed and answered, never committed."""

    model_config = ConfigDict(extra="forbid")

    horizon_h: Annotated[int, Field(ge=1, le=24 * 60)] | None = None
    budget_per_week: Money | None = None
    technicians: list[Identifier] | None = Field(
        None, description="Only these technicians (default: every active one)."
    )
    extra_technicians: list[Technician] = Field(default_factory=list, max_length=100)
    time_limit_s: Annotated[float, Field(gt=0, le=60)] | None = Field(
        None,
        description="Solver time limit; at most (and by default) the scheduler's "
        "PDM_SCHEDULER_WHAT_IF_TIME_LIMIT_S.",
    )

    @model_validator(mode="after")
    def _one_extra_technician_per_id(self) -> WhatIf:
        ids = [t.technician_id for t in self.extra_technicians]
        if twice := sorted({i for i in ids if ids.count(i) > 1}):
            raise ValueError(f"extra_technicians names {', '.join(twice)} more than once")
        return self


CommandAction = Literal[
    "create", "update", "start", "hold", "resume", "complete", "cancel",
    "technician.upsert", "technician.remove", "plan.upsert", "plan.remove",
    "windows.set", "replan", "what_if",
]  # fmt: skip
WORK_ORDER_ACTIONS = ("update", "start", "hold", "resume", "complete", "cancel")


class MaintenanceCommand(BaseModel):
    """A request on `pdm.maintenance.commands.v1` (key: work order, technician or asset id),
    answered on its `reply_to` with a `MaintenanceCommandResult`. Applied once per
    `command_id`: a redelivered command gets the first answer again and changes nothing."""

    model_config = ConfigDict(extra="forbid")

    command_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    action: CommandAction
    actor: Name
    work_order_id: uuid.UUID | None = None
    fields: WorkOrderFields | None = None
    findings: Findings | None = None
    reason: Annotated[str, StringConstraints(min_length=1, max_length=2000)] | None = None
    technician: Technician | None = None
    technician_id: Identifier | None = None
    plan: MaintenancePlan | None = None
    plan_id: Identifier | None = None
    asset_id: Identifier | None = None
    windows: list[ProductionWindow] | None = Field(None, max_length=500)
    what_if: WhatIf | None = None


CommandStatus = Literal["ok", "created", "updated", "unchanged", "not_found", "conflict", "invalid"]


class PlannedOrder(BaseModel):
    """One order in a published plan (times in UTC; `bound_by` says what keeps it from
    starting earlier; an unschedulable order has `reason` and `detail`)."""

    work_order_id: uuid.UUID
    asset_id: str
    status: Literal["scheduled", "unschedulable"]
    technician_id: str | None = None
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None
    due_by: AwareDatetime | None = None
    lateness_h: int = 0
    bound_by: list[str] = Field(default_factory=list)
    expected_failure_cost: float = 0.0
    risk_removed: float = 0.0
    frozen: bool = False
    reason: str | None = None
    detail: str | None = None


class PlanMove(BaseModel):
    work_order_id: uuid.UUID
    change: str
    old_technician: str | None = None
    old_start: AwareDatetime | None = None
    new_technician: str | None = None
    new_start: AwareDatetime | None = None
    why: str = ""


class ScheduleSummary(BaseModel):
    """A plan: its solve figures, every order's place and what moved since the last plan."""

    plan_id: int | None = Field(None, description="None for a what-if (not stored).")
    created_at: AwareDatetime
    anchor: AwareDatetime = Field(description="Hour 0 of the plan.")
    horizon_h: int
    trigger: str
    method: str
    solver_status: str
    objective: int
    best_bound: float | None = None
    gap: float | None = None
    wall_time_s: float
    expected_failure_cost: float
    risk_removed: float
    scheduled: int
    unschedulable: int
    late: int
    orders: list[PlannedOrder] = Field(default_factory=list)
    moves: list[PlanMove] = Field(default_factory=list)


class MaintenanceCommandResult(Envelope):
    """The reply to a `MaintenanceCommand` (the gateway maps `status` to HTTP: created 201,
    ok/updated/unchanged 200, not_found 404, conflict 409 (e.g. an impossible transition),
    invalid 422)."""

    event_type: Literal["maintenance.command_result"] = "maintenance.command_result"
    command_id: uuid.UUID | None = None
    action: str | None = None
    status: CommandStatus
    message: str | None = None
    work_order: WorkOrder | None = None
    technician: Technician | None = None
    plan: MaintenancePlan | None = None
    schedule: ScheduleSummary | None = None


WorkOrderEventType = Literal[
    "work_order.created", "work_order.updated", "work_order.scheduled",
    "work_order.unscheduled", "work_order.started", "work_order.on_hold",
    "work_order.resumed", "work_order.completed", "work_order.cancelled",
]  # fmt: skip


class WorkOrderEvent(Envelope):
    """A change of one work order on `pdm.maintenance.events.v1` (key: asset id), with the
    order as it stands after it. `work_order.completed` carries the findings (labels)."""

    event_type: WorkOrderEventType
    work_order: WorkOrder
    actor: str
    from_status: WorkOrderStatus | None = None
    reason: str | None = None


class SchedulePublished(Envelope):
    """A new plan on `pdm.maintenance.events.v1` (key: `schedule`)."""

    event_type: Literal["schedule.published"] = "schedule.published"
    schedule: ScheduleSummary


SCHEDULE_KEY = "schedule"
