"""Bodies of the maintenance routes. Work orders, technicians, plans, windows and schedules
are the scheduler's contract (`pdm_common.maintenance`): their fields are defined there once;
only pages, request bodies whose id is in the path, and the Gantt view are the gateway's own."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from pdm_common.maintenance import (
    Findings,
    Hours,
    Identifier,
    MaintenancePlan,
    Money,
    Name,
    PlannedOrder,
    ProductionWindow,
    ScheduleSummary,
    Shift,
    Skill,
    Technician,
    Transition,
    WorkOrder,
    WorkOrderFields,
    WorkOrderType,
)
from pdm_gateway.api.schemas.common import Page

__all__ = [
    "MaintenancePlan",
    "ScheduleSummary",
    "Technician",
    "WorkOrder",
    "WorkOrderFields",
]

Reason = Annotated[str, StringConstraints(min_length=1, max_length=2000)]
TransitionAction = Literal["start", "hold", "resume", "complete", "cancel"]


class WorkOrderPage(Page):
    items: list[WorkOrder]


class WorkOrderDetail(WorkOrder):
    """A work order with every lifecycle move it made, oldest first."""

    transitions: list[Transition] = Field(default_factory=list)


class WorkOrderCreate(WorkOrderFields):
    """`POST /v1/work-orders`: `asset_id`, `type` and `title` are required; the scheduler
    fills in the rest (skill from the asset type, estimates, costs) where not given."""

    asset_id: Identifier
    type: WorkOrderType
    title: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class TransitionBody(BaseModel):
    """A lifecycle move. `complete` needs the findings (the ground-truth label); the other
    moves take none. `reason` is recorded with the move; `cancel` needs one."""

    model_config = ConfigDict(extra="forbid")

    action: TransitionAction
    reason: Reason | None = None
    findings: Findings | None = None
    technician_id: Identifier | None = Field(
        None,
        description="`start`: who does the work (pins the order to them); needed when the "
        "order has no technician yet.",
    )

    @model_validator(mode="after")
    def _findings_with_complete_only(self) -> TransitionBody:
        if self.action == "complete" and self.findings is None:
            raise ValueError("`complete` needs `findings` (at least `failure_found`)")
        if self.action != "complete" and self.findings is not None:
            raise ValueError(f"`{self.action}` takes no `findings` (only `complete` does)")
        if self.action == "cancel" and self.reason is None:
            raise ValueError("`cancel` needs a `reason`")
        if self.technician_id is not None and self.action != "start":
            raise ValueError(f"`{self.action}` takes no `technician_id`")
        return self


class TechnicianBody(BaseModel):
    """`PUT /v1/technicians/{technician_id}`: the whole technician (the id is the path's)."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    skills: list[Skill] = Field(min_length=1, max_length=32)
    shifts: list[Shift] = Field(min_length=1, max_length=21)
    hourly_cost: Money = 0.0
    active: bool = True


class PlanBody(BaseModel):
    """`PUT /v1/maintenance/plans/{plan_id}`: the whole plan (the id is the path's); exactly
    one of `asset_id` and `asset_type`."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    asset_id: Identifier | None = None
    asset_type: Skill | None = None
    interval_hours: Annotated[float, Field(ge=1, le=24 * 3650)]
    skill: Skill
    estimated_hours: Hours = 1.0
    parts_cost: Money = 0.0
    priority: Annotated[int, Field(ge=0, le=3)] = 1
    active: bool = True

    @model_validator(mode="after")
    def _one_target(self) -> PlanBody:
        if (self.asset_id is None) == (self.asset_type is None):
            raise ValueError("give exactly one of `asset_id` and `asset_type`")
        return self


class ProductionWindows(BaseModel):
    """The asset's production windows (replacing all it had; an empty list removes them:
    the asset may then be worked on at any time)."""

    model_config = ConfigDict(extra="forbid")

    windows: list[ProductionWindow] = Field(max_length=500)

    @model_validator(mode="after")
    def _ordered(self) -> ProductionWindows:
        for w in self.windows:
            if w.end <= w.start:
                raise ValueError(f"a window must end after it starts ({w.start} .. {w.end})")
        return self


class AssetWindows(ProductionWindows):
    asset_id: str


class ReplanBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason | None = Field(None, description="Recorded as the plan's trigger detail.")


class CommandOutcome(BaseModel):
    """What the scheduler answered to a command that returns no single record."""

    status: str
    message: str | None = None
    schedule: ScheduleSummary | None = None


class GanttLane(BaseModel):
    """One row of a Gantt chart: a technician's or an asset's scheduled orders by start."""

    key: str | None = Field(description="Technician id or asset id (null: no technician).")
    orders: list[PlannedOrder]
    busy_h: float = Field(description="Hours of work in the lane.")
    first_start: datetime | None = None
    last_end: datetime | None = None


class CurrentSchedule(ScheduleSummary):
    """The newest plan. With `view=technician` or `view=asset` its scheduled orders are in
    `lanes` (one per technician or asset, ordered by key) and `orders` holds only the orders
    in no lane (unschedulable); without a view, `orders` holds them all and `lanes` is empty."""

    view: Literal["plan", "technician", "asset"] = "plan"
    lanes: list[GanttLane] = Field(default_factory=list)


class UpcomingOrders(BaseModel):
    """Scheduled orders starting before `until` and active orders due before it (overdue
    ones included), soonest first."""

    now: datetime
    until: datetime
    hours: int
    items: list[WorkOrder]
