"""From the scheduler's rows to the optimiser's problem and back."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta

import pytest
from pydantic import ValidationError

import pdm_scheduling as opt
from pdm_common.delivery import PermanentError
from pdm_common.maintenance import (
    MaintenanceCommand,
    ProductionWindow,
    Shift,
    Technician,
    WhatIf,
    WorkOrder,
)
from pdm_scheduler import planner as planner_module
from pdm_scheduler.handlers import CommandsProcessor
from pdm_scheduler.planner import Planner
from pdm_scheduler.planning import (
    Inputs,
    anchor_of,
    build_problem,
    make_plan,
    rul_quantiles,
    shift_spans,
    window_spans,
)
from pdm_scheduler.settings import SchedulerSettings

NOW = datetime(2026, 12, 7, 10, 30, tzinfo=UTC)  # a Monday
ANCHOR = anchor_of(NOW)


def order(**fields: object) -> WorkOrder:
    base: dict[str, object] = {
        "work_order_id": uuid.uuid4(),
        "asset_id": "pump-001",
        "type": "predictive",
        "status": "open",
        "priority": 1,
        "source": "prediction",
        "title": "t",
        "skill": "mechanical",
        "estimated_hours": 2.5,
        "parts_cost": 100.0,
        "failure_cost": 20000.0,
        "downtime_cost_per_h": 500.0,
        "created_at": NOW,
        "created_by": "scheduler",
        "updated_at": NOW,
        "version": 1,
    }
    return WorkOrder.model_validate(base | fields)


def tech(tid: str = "t1", shifts: list[Shift] | None = None) -> Technician:
    day = Shift(days=[0, 1, 2, 3, 4], start=time(6), end=time(14))
    return Technician(
        technician_id=tid, name=tid, skills=["mechanical"], shifts=shifts or [day], hourly_cost=50
    )


def test_shifts_become_hour_spans_rounded_inwards_and_night_shifts_cross_midnight() -> None:
    assert datetime(2026, 12, 7, 10, tzinfo=UTC) == ANCHOR
    spans = shift_spans(tech(), ANCHOR, 48)
    assert spans[:2] == ((0, 4), (20, 28))  # today until 14:00, tomorrow 06:00-14:00
    night = Shift(days=[6], start=time(22, 30), end=time(6))  # Sunday night into Monday
    assert shift_spans(tech(shifts=[night]), ANCHOR, 48) == ()  # ended at 06:00 today
    assert shift_spans(tech(shifts=[night]), ANCHOR - timedelta(hours=8), 24) == ((0, 4),)


def test_windows_outside_the_horizon_leave_an_asset_that_cannot_be_worked_on() -> None:
    inside = ProductionWindow(start=ANCHOR + timedelta(hours=3), end=ANCHOR + timedelta(hours=5))
    far = ProductionWindow(start=ANCHOR + timedelta(days=30), end=ANCHOR + timedelta(days=31))
    assert window_spans([inside, far], ANCHOR, 48) == ((3, 5),)
    problem, _ = build_problem(Inputs(NOW, [order()], [tech()], {"pump-001": [far]}, 48))
    assert problem.window_spans("pump-001") == ()


def test_rul_quantiles_move_to_the_plans_hour_zero() -> None:
    wo = order(
        rul_p10_h=10.0, rul_p50_h=20.0, rul_p90_h=40.0, risk_as_of=ANCHOR - timedelta(hours=4)
    )
    assert rul_quantiles(wo, ANCHOR) == {0.1: 6.0, 0.5: 16.0, 0.9: 36.0}
    late = order(rul_p10_h=2.0, rul_p50_h=3.0, risk_as_of=ANCHOR - timedelta(hours=5))
    assert rul_quantiles(late, ANCHOR) == {0.1: 0.0, 0.5: 0.0}
    assert rul_quantiles(order(), ANCHOR) is None


def test_in_progress_orders_are_frozen_with_their_remaining_hours_and_held_ones_not_planned() -> (
    None
):
    running = order(
        status="in_progress",
        technician_id="t1",
        started_at=NOW - timedelta(hours=1),
        estimated_hours=4,
    )
    held = order(status="on_hold")
    pinned = order(technician_id="t1", pinned=True)
    problem, planned = build_problem(Inputs(NOW, [running, held, pinned], [tech()], {}, 48))
    by_id = {o.id: o for o in problem.orders}
    assert str(held.work_order_id) not in by_id
    r = by_id[str(running.work_order_id)]
    assert (r.frozen_start, r.frozen_technician, r.duration_h) == (0, "t1", 3)
    p = by_id[str(pinned.work_order_id)]
    assert (p.frozen_start, p.frozen_technician, p.duration_h) == (None, "t1", 3)
    assert set(planned) == set(by_id)


def test_a_plan_places_orders_before_their_deadline_and_passes_the_validator() -> None:
    urgent = order(due_by=NOW + timedelta(hours=3), rul_p10_h=3.0, rul_p50_h=6.0, risk_as_of=NOW)
    later = order(asset_id="pump-002", due_by=NOW + timedelta(hours=30))
    unskilled = order(asset_id="motor-001", skill="electrical")
    inputs = Inputs(NOW, [urgent, later, unskilled], [tech()], {}, 48)
    summary, violations, _ = make_plan(
        inputs, [], opt.SolverParams(time_limit_s=2), trigger="test", full=True
    )
    assert violations == []
    placed = {o.work_order_id: o for o in summary.orders}
    u = placed[urgent.work_order_id]
    assert u.status == "scheduled" and u.end is not None and u.end <= urgent.due_by
    assert placed[later.work_order_id].status == "scheduled"
    no_skill = placed[unskilled.work_order_id]
    assert no_skill.status == "unschedulable" and no_skill.reason == "no_skill"
    # re-planned from the stored plan: nothing moves without a reason
    again, violations, _ = make_plan(
        inputs, summary.orders, opt.SolverParams(time_limit_s=2), trigger="test", full=False
    )
    assert violations == [] and again.moves == []


def test_the_frozen_horizon_holds_planned_orders_but_lets_a_new_urgent_one_start_now() -> None:
    risk = {"rul_p10_h": 8.0, "rul_p50_h": 16.0, "rul_p90_h": 30.0, "risk_as_of": NOW}
    soon = order(due_by=NOW + timedelta(hours=8), **risk)
    inputs = Inputs(NOW, [soon], [tech()], {}, 48, frozen_horizon_h=4)
    first, _, _ = make_plan(inputs, [], opt.SolverParams(time_limit_s=2), trigger="t", full=True)
    assert first.orders[0].start == ANCHOR  # the sooner the less risk: it starts now
    urgent = order(asset_id="pump-009", due_by=NOW + timedelta(hours=3), failure_cost=9e4, **risk)
    second, violations, _ = make_plan(
        Inputs(NOW, [soon, urgent], [tech()], {}, 48, frozen_horizon_h=4),
        first.orders,
        opt.SolverParams(time_limit_s=2),
        trigger="t",
        full=False,
    )
    by_id = {o.work_order_id: o for o in second.orders}
    assert violations == []
    assert by_id[soon.work_order_id].frozen and by_id[soon.work_order_id].start == ANCHOR
    assert by_id[urgent.work_order_id].status == "scheduled"  # after it, not barred for 4 h


async def test_a_what_if_may_shorten_its_time_limit_never_lengthen_it(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    class Store:
        async def planning_inputs(self) -> tuple[list, list, dict]:
            return [], [], {}

    limits: list[float] = []

    def make_plan(inputs, previous, params, **kw):  # type: ignore[no-untyped-def]
        limits.append(params.time_limit_s)
        return "summary", [], {}

    monkeypatch.setattr(planner_module, "make_plan", make_plan)
    p = Planner(Store(), SchedulerSettings(what_if_time_limit_s=3))  # type: ignore[arg-type]
    for asked in (None, 1.0, 60.0):
        await p.what_if(WhatIf(time_limit_s=asked))
    assert limits == [3, 1.0, 3]


def test_a_what_if_names_each_extra_technician_once() -> None:
    tech = Technician(
        technician_id="t-1",
        name="Ann",
        skills=["pump"],
        shifts=[Shift(days=[0], start=time(8), end=time(16))],
    )
    with pytest.raises(ValidationError, match="t-1 more than once"):
        WhatIf(extra_technicians=[tech, tech])


async def test_a_what_if_the_optimiser_refuses_is_answered_invalid_not_retried() -> None:
    class Refusing:
        async def what_if(self, spec: WhatIf | None) -> None:
            raise ValueError("technician ids are not unique")

    processor = CommandsProcessor(None, None, Refusing(), SchedulerSettings(), lambda: None)  # type: ignore[arg-type]
    command = MaintenanceCommand(action="what_if", actor="planner", what_if=WhatIf())
    with pytest.raises(PermanentError, match="what-if refused: technician ids"):
        await processor.answer(command)
