"""From the scheduler's rows to the optimiser's `Problem` and back, as pure functions.

Time: hour 0 is the clock hour that holds "now" (`anchor`, the hour floored), so a slot at
hour 0 means "start now". Shifts and production windows are turned into whole hours inside
the plan, rounded inwards (a shift 06:30-14:00 offers 07:00-14:00). An order in progress is
frozen at hour 0 with the hours it still has to go, on its technician; an order a person
pinned to a technician keeps that technician; on-hold and closed orders are not planned.

The risk of each order (the objective's expected failure cost) comes from its newest
prediction's RUL quantiles, moved to the plan's hour 0 (the hours since the prediction are
subtracted); `pdm_scheduling.risk` turns them into the probability of failing before a start.

Frozen horizon: orders the previous plan starts within `frozen_horizon_h` stay where they are
(the technician may already be on the way); new orders, however, may start at once.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pdm_scheduling as opt
from pdm_common.maintenance import (
    PlanMove,
    PlannedOrder,
    ProductionWindow,
    ScheduleSummary,
    Technician,
    WorkOrder,
)

HOUR = timedelta(hours=1)
PLANNED_STATUSES = ("open", "scheduled", "in_progress")
BUDGET_ID = "weekly"


def anchor_of(now: datetime) -> datetime:
    """Hour 0 of a plan made at `now`: the clock hour that holds it (UTC)."""
    return now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def hours_from(anchor: datetime, at: datetime, *, up: bool) -> int:
    """`at` in whole hours after `anchor`, rounded up (`up`) or down."""
    x = (at - anchor) / HOUR
    return math.ceil(x - 1e-9) if up else math.floor(x + 1e-9)


def at_hour(anchor: datetime, hour: int | None) -> datetime | None:
    return None if hour is None else anchor + hour * HOUR


def _inside(anchor: datetime, start: datetime, end: datetime, horizon_h: int) -> tuple[int, int]:
    s = max(0, hours_from(anchor, start, up=True))
    e = min(horizon_h, hours_from(anchor, end, up=False))
    return s, e


def shift_spans(
    technician: Technician, anchor: datetime, horizon_h: int
) -> tuple[tuple[int, int], ...]:
    """A technician's weekly shifts as hour spans of the plan."""
    spans: list[tuple[int, int]] = []
    first = anchor.date() - timedelta(days=1)  # a night shift from yesterday may still run
    for offset in range(horizon_h // 24 + 3):
        day = first + timedelta(days=offset)
        for shift in technician.shifts:
            if day.weekday() not in shift.days:
                continue
            start = datetime.combine(day, shift.start, UTC)
            end = datetime.combine(day, shift.end, UTC)
            if end <= start:
                end += timedelta(days=1)
            s, e = _inside(anchor, start, end, horizon_h)
            if s < e:
                spans.append((s, e))
    return tuple(sorted(set(spans)))


def window_spans(
    windows: Sequence[ProductionWindow], anchor: datetime, horizon_h: int
) -> tuple[tuple[int, int], ...]:
    spans = (_inside(anchor, w.start, w.end, horizon_h) for w in windows)
    return tuple(sorted({(s, e) for s, e in spans if s < e}))


def rul_quantiles(order: WorkOrder, anchor: datetime) -> dict[float, float] | None:
    """The order's RUL quantiles in hours after `anchor` (non-decreasing; None: no RUL)."""
    if order.risk_as_of is None:
        return None
    elapsed = (anchor - order.risk_as_of) / HOUR
    out: dict[float, float] = {}
    floor = 0.0
    for p, hours in ((0.1, order.rul_p10_h), (0.5, order.rul_p50_h), (0.9, order.rul_p90_h)):
        if hours is not None and math.isfinite(hours):
            floor = max(floor, hours - elapsed)
            out[p] = floor
    return out or None


@dataclass(frozen=True)
class Inputs:
    """Everything a plan is made from, as read from the scheduler's tables."""

    now: datetime
    orders: Sequence[WorkOrder]
    technicians: Sequence[Technician]
    windows: Mapping[str, Sequence[ProductionWindow]]
    horizon_h: int
    frozen_horizon_h: int = 4
    budget_per_week: float | None = None
    lateness_cost_per_h: float | None = None

    @property
    def anchor(self) -> datetime:
        return anchor_of(self.now)


def build_problem(inputs: Inputs) -> tuple[opt.Problem, dict[str, WorkOrder]]:
    """The optimiser's problem, and the work orders it plans by order id."""
    anchor, horizon = inputs.anchor, inputs.horizon_h
    technicians = tuple(
        opt.Technician(
            t.technician_id,
            frozenset(t.skills),
            shift_spans(t, anchor, horizon),
            t.hourly_cost,
        )
        for t in inputs.technicians
        if t.active
    )
    staff = {t.id for t in technicians}
    budget = BUDGET_ID if inputs.budget_per_week is not None else None
    orders: list[opt.Order] = []
    planned: dict[str, WorkOrder] = {}
    for wo in inputs.orders:
        if wo.status not in PLANNED_STATUSES:
            continue
        key = str(wo.work_order_id)
        duration = max(1, math.ceil(wo.estimated_hours - 1e-9))
        frozen_start: int | None = None
        frozen_tech: str | None = wo.technician_id if wo.pinned else None
        if wo.status == "in_progress":
            if wo.technician_id not in staff:
                continue  # worked on by someone the plan does not know: it holds no one
            started = wo.started_at or inputs.now
            done = (inputs.now - started) / HOUR
            duration = max(1, math.ceil(wo.estimated_hours - done - 1e-9))
            frozen_start, frozen_tech = 0, wo.technician_id
        due_h = None if wo.due_by is None else max(0, hours_from(anchor, wo.due_by, up=False))
        orders.append(
            opt.Order(
                id=key,
                asset_id=wo.asset_id,
                skill=wo.skill,
                duration_h=duration,
                due_h=due_h,
                parts_cost=wo.parts_cost,
                failure_cost=wo.failure_cost,
                rul_quantiles=rul_quantiles(wo, anchor),
                priority=wo.priority,
                downtime_cost_per_h=wo.downtime_cost_per_h,
                frozen_start=frozen_start,
                frozen_technician=frozen_tech,
                budget=budget,
            )
        )
        planned[key] = wo
    windows = tuple(
        opt.Window(asset, window_spans(spans, anchor, horizon))
        for asset, spans in sorted(inputs.windows.items())
        if spans
    )
    budgets = (
        (opt.Budget(BUDGET_ID, 168, inputs.budget_per_week),)
        if inputs.budget_per_week is not None
        else ()
    )
    problem = opt.Problem(
        horizon_h=horizon,
        technicians=technicians,
        orders=tuple(orders),
        windows=windows,
        budgets=budgets,
        frozen_until_h=min(inputs.frozen_horizon_h, horizon),
        lateness_cost_per_h=inputs.lateness_cost_per_h,
    )
    return problem, planned


def previous_plan(rows: Iterable[PlannedOrder], anchor: datetime) -> opt.Plan | None:
    """A stored plan as the optimiser's warm start, in hours after the new `anchor`; slots
    that already began are left out (their orders are in progress, or start afresh)."""
    assignments = []
    for row in rows:
        if row.status != "scheduled" or row.start is None or row.technician_id is None:
            # kept, so that an order still unschedulable is not reported as a move
            reason = row.reason or "unschedulable"
            assignments.append(
                opt.Assignment(str(row.work_order_id), "unschedulable", reason=reason)
            )
            continue
        start = hours_from(anchor, row.start, up=False)
        end = hours_from(anchor, row.end, up=True) if row.end else start + 1
        if start < 0:
            continue
        assignments.append(
            opt.Assignment(str(row.work_order_id), "scheduled", row.technician_id, start, end)
        )
    if not any(a.status == "scheduled" for a in assignments):
        return None
    return opt.Plan(tuple(assignments), opt.SolveStats("stored", "STORED", 0, None, None, 0.0))


def summary(
    plan: opt.Plan,
    planned: Mapping[str, WorkOrder],
    anchor: datetime,
    *,
    horizon_h: int,
    trigger: str,
    created_at: datetime,
    moves: Sequence[opt.Move] = (),
    plan_id: int | None = None,
) -> ScheduleSummary:
    """The plan in the contract's terms: times in UTC, one line per order, the moves."""
    orders = []
    for a in plan.assignments:
        wo = planned[a.order_id]
        orders.append(
            PlannedOrder(
                work_order_id=wo.work_order_id,
                asset_id=wo.asset_id,
                status=a.status,
                technician_id=a.technician_id,
                start=at_hour(anchor, a.start_h),
                end=at_hour(anchor, a.end_h),
                due_by=wo.due_by,
                lateness_h=a.lateness_h,
                bound_by=list(a.bound_by),
                expected_failure_cost=round(a.expected_failure_cost, 2),
                risk_removed=round(a.risk_removed, 2),
                frozen=a.frozen,
                reason=a.reason,
                detail=a.detail or a.note or None,
            )
        )
    orders.sort(key=lambda o: (o.start or datetime.max.replace(tzinfo=UTC), str(o.work_order_id)))
    stats = plan.stats
    return ScheduleSummary(
        plan_id=plan_id,
        created_at=created_at,
        anchor=anchor,
        horizon_h=horizon_h,
        trigger=trigger,
        method=stats.method,
        solver_status=stats.status,
        objective=stats.objective,
        best_bound=stats.best_bound,
        gap=stats.gap,
        wall_time_s=round(stats.wall_time_s, 3),
        expected_failure_cost=round(plan.expected_failure_cost, 2),
        risk_removed=round(plan.risk_removed, 2),
        scheduled=len(plan.scheduled),
        unschedulable=len(plan.unschedulable),
        late=plan.late_orders,
        orders=orders,
        moves=[
            PlanMove(
                work_order_id=planned[m.order_id].work_order_id,
                change=m.change,
                old_technician=m.old_technician,
                old_start=at_hour(anchor, m.old_start),
                new_technician=m.new_technician,
                new_start=at_hour(anchor, m.new_start),
                why=m.why,
            )
            for m in moves
            if m.order_id in planned
        ],
    )


def make_plan(
    inputs: Inputs,
    previous: Sequence[PlannedOrder],
    params: opt.SolverParams,
    *,
    trigger: str,
    full: bool,
) -> tuple[ScheduleSummary, list[str], dict[str, WorkOrder]]:
    """Solve (warm-started from `previous`; only a neighbourhood of what changed unless
    `full`) and check the plan with the independent validator. Returns the summary, the
    violations the validator found (empty for a good plan) and the planned orders."""
    problem, planned = build_problem(inputs)
    anchor = inputs.anchor
    before = previous_plan(previous, anchor)
    # The frozen horizon keeps what the previous plan starts soon where it is; it must not
    # keep a new urgent order from starting now, so once those are frozen the optimiser's
    # own horizon (which bars every unfrozen order) is lifted.
    if before is not None:
        problem = opt.freeze_started(before, problem)
    problem = dataclasses.replace(problem, frozen_until_h=0)
    if before is None:
        plan = opt.solve(problem, params)
        moves: list[opt.Move] = []
    else:
        plan = opt.replan(before, problem, params, neighbourhood_h=None if full else 12)
        known = set(planned)
        moves = [m for m in opt.diff(before, plan) if m.order_id in known]
    violations = opt.validate(problem, plan)
    result = summary(
        plan,
        planned,
        anchor,
        horizon_h=inputs.horizon_h,
        trigger=trigger,
        created_at=inputs.now,
        moves=moves,
    )
    return result, violations, planned
