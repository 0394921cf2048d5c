"""The CP-SAT planner: exact on small instances (against brute force), valid and reproducible
on random ones, and the behaviour each constraint family should have."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings

from pdm_scheduling import (
    Budget,
    Order,
    Plan,
    Problem,
    Reason,
    SolverParams,
    Technician,
    Window,
    diff,
    schedule_edf,
    solve,
    validate,
)
from pdm_scheduling.cpmodel import relaxed_bound
from pdm_scheduling.precheck import prepare
from pdm_scheduling.timeline import Timeline

from .helpers import brute_force, small_problems

FAST = SolverParams(time_limit_s=10.0)


def planned(problem: Problem, params: SolverParams = FAST) -> Plan:
    plan = solve(problem, params)
    assert validate(problem, plan) == []
    return plan


def tech(tid: str, skills: str = "mech", shifts=((0, 8),), cost: float = 50.0) -> Technician:
    return Technician(tid, frozenset(skills.split(",")), tuple(shifts), cost)


def slot(plan: Plan, oid: str) -> tuple[str | None, int | None]:
    a = plan.by_order()[oid]
    return a.technician_id, a.start_h


# ---- exactness and properties on random small instances --------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_problems())
def test_objective_equals_the_brute_force_optimum(problem):
    plan = planned(problem)
    optimum, skip = brute_force(problem)
    assert plan.stats.status == "OPTIMAL"
    assert plan.stats.objective == optimum
    assert plan.stats.best_bound == optimum and plan.stats.gap == 0
    prep = prepare(problem)
    assert relaxed_bound(prep, Timeline(prep)) <= optimum
    assert {a.order_id for a in plan.unschedulable if a.reason != Reason.NO_CAPACITY} == skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_problems())
def test_plans_are_valid_reasoned_and_reproducible(problem):
    plan = planned(problem)
    for a in plan.unschedulable:
        assert a.reason in {r.value for r in Reason} and a.detail
    for a in plan.scheduled:
        assert a.bound_by
        assert (
            a.end_h == a.start_h + next(o for o in problem.orders if o.id == a.order_id).duration_h
        )
    again = solve(problem, FAST)
    assert again.slots() == plan.slots()
    assert again.stats.objective == plan.stats.objective
    greedy = schedule_edf(problem)
    assert validate(problem, greedy) == []
    assert plan.stats.objective <= greedy.stats.objective


def _earlier_start_open(problem: Problem, plan: Plan, oid: str) -> bool:
    """Could `oid` start earlier, anywhere, with the rest of the plan as it is (validator)?"""
    order = next(o for o in problem.orders if o.id == oid)
    a = plan.by_order()[oid]
    assert a.start_h is not None
    for tech in problem.technicians:
        for start in range(problem.frozen_until_h, a.start_h):
            end = start + order.duration_h
            late = 0 if order.due_h is None else max(0, end - order.due_h)
            moved = dataclasses.replace(
                a, technician_id=tech.id, start_h=start, end_h=end, lateness_h=late
            )
            rows = tuple(moved if x.order_id == oid else x for x in plan.assignments)
            errors = validate(problem, Plan(rows, plan.stats))
            if not [e for e in errors if "left out although" not in e]:
                return True
    return False


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_problems())
def test_bound_by_objective_exactly_when_an_earlier_start_is_open(problem):
    plan = planned(problem)
    for a in plan.scheduled:
        if a.frozen:
            assert a.bound_by == ("frozen",)
            continue
        families = set(a.bound_by) - {"deadline"}
        assert ("objective" in families) == _earlier_start_open(problem, plan, a.order_id)
        if families & {"now", "frozen_horizon"}:
            assert a.start_h == problem.frozen_until_h


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_problems(frozen=False))
def test_window_decomposition_is_valid_and_never_worse_than_the_rules(problem):
    plan = solve(problem, SolverParams(strategy="lns", time_limit_s=2.0, lns_window_h=6))
    assert validate(problem, plan) == []
    assert plan.stats.best_bound is not None
    assert plan.stats.best_bound <= plan.stats.objective
    assert plan.stats.objective <= schedule_edf(problem).stats.objective


# ---- the reasons an order is unschedulable ---------------------------------------------------


def only(*orders: Order, techs=None, **kw) -> Plan:
    problem = Problem(
        horizon_h=kw.pop("horizon_h", 48),
        technicians=techs or (tech("T1", shifts=((0, 8), (24, 32))),),
        orders=orders,
        **kw,
    )
    return planned(problem)


@pytest.mark.parametrize(
    ("order", "kw", "reason"),
    [
        (Order("o", "A", "weld", 2), {}, Reason.NO_SKILL),
        (Order("o", "A", "mech", 9), {}, Reason.LONGER_THAN_SHIFTS),
        (Order("o", "A", "mech", 2), {"windows": (Window("A", ()),)}, Reason.NO_WINDOW),
        (
            Order("o", "A", "mech", 3),
            {"windows": (Window("A", ((3, 5), (30, 31))),)},
            Reason.LONGER_THAN_WINDOWS,
        ),
        (
            Order("o", "A", "mech", 3),
            {"windows": (Window("A", ((10, 20),)),)},
            Reason.NO_SHIFT_IN_WINDOW,
        ),
        (
            Order("o", "A", "mech", 3),
            {"horizon_h": 26, "frozen_until_h": 6},
            Reason.NO_SLOT_IN_HORIZON,
        ),
        (
            Order("o", "A", "mech", 2, parts_cost=1000.0),
            {"budgets": (Budget("default", 24, 500.0),)},
            Reason.OVER_BUDGET,
        ),
    ],
)
def test_each_precheck_reason(order, kw, reason):
    plan = only(order, Order("ok", "B", "mech", 1), **kw)
    a = plan.by_order()["o"]
    assert (a.status, a.reason) == ("unschedulable", reason)
    assert a.detail and a.technician_id is None
    assert plan.by_order()["ok"].status == "scheduled"  # the others still get scheduled


def test_no_capacity_when_every_slot_is_taken():
    orders = [Order(f"o{i}", "A", "mech", 4, due_h=8, failure_cost=100.0 * i) for i in range(3)]
    plan = only(*orders, techs=(tech("T1"),), horizon_h=8)
    assert [a.reason for a in plan.unschedulable] == [Reason.NO_CAPACITY]
    assert plan.by_order()["o0"].status == "unschedulable"  # the cheapest failure waits


def test_high_priority_order_is_kept_when_one_must_go():
    orders = [
        Order("low", "A", "mech", 8, failure_cost=5000.0),
        Order("high", "A", "mech", 8, failure_cost=10.0, priority=2),
    ]
    plan = only(*orders, techs=(tech("T1"),), horizon_h=8)
    assert plan.by_order()["high"].status == "scheduled"
    assert plan.by_order()["low"].reason == Reason.NO_CAPACITY


# ---- constraint families ---------------------------------------------------------------------


def test_windows_and_shifts_bound_the_start():
    o = Order("o", "A", "mech", 2, failure_cost=1000.0, rul_quantiles={0.1: 5, 0.5: 20, 0.9: 40})
    plan = only(o, windows=(Window("A", ((4, 6), (26, 40))),))
    a = plan.by_order()["o"]
    assert (a.start_h, a.end_h) == (4, 6)
    assert a.bound_by == ("window",)


def test_skill_and_crew_in_bound_by():
    techs = (tech("T1", "mech"), tech("T2", "elec"))
    orders = (
        Order("a", "A", "mech", 4, due_h=4, failure_cost=1000.0),
        Order("b", "B", "mech", 2, failure_cost=10.0),
    )
    plan = only(*orders, techs=techs)
    assert slot(plan, "b") == ("T1", 4)
    assert plan.by_order()["b"].bound_by == ("crew", "skill")  # T1 busy, T2 free but elec
    assert plan.by_order()["a"].bound_by == ("now", "deadline")


def test_budget_pushes_work_to_the_next_period():
    orders = tuple(
        Order(f"o{i}", "A", "mech", 2, parts_cost=300.0, failure_cost=1000.0 - i) for i in range(3)
    )
    budgets = (Budget("default", 24, 800.0),)  # 2 h x 50 + 300 = 400 per order: 2 per day
    plan = only(*orders, budgets=budgets)
    starts = sorted(a.start_h for a in plan.scheduled)
    assert starts[:2] == [0, 2] and starts[2] >= 24
    late = max(plan.scheduled, key=lambda a: a.start_h)
    assert "budget" in late.bound_by


def test_budget_limits_per_period_and_orders_outside_budgets():
    orders = (
        Order("a", "A", "mech", 2, parts_cost=500.0),
        Order("free", "B", "mech", 2, parts_cost=500.0, budget=None),
    )
    plan = only(*orders, budgets=(Budget("default", 24, (700.0, 0.0)),))
    assert slot(plan, "a")[1] in range(0, 7)
    assert plan.by_order()["free"].status == "scheduled"


def test_deadline_kept_where_possible():
    techs = (tech("T1", shifts=((0, 24),)),)
    orders = (
        Order(
            "risky", "A", "mech", 4, failure_cost=50_000.0, rul_quantiles={0.1: 2, 0.5: 6, 0.9: 12}
        ),
        Order("due", "B", "mech", 4, due_h=4),
    )
    plan = only(*orders, techs=techs, horizon_h=24)
    assert slot(plan, "due") == ("T1", 0)
    assert plan.late_orders == 0


def test_unavoidable_lateness_is_reported():
    plan = only(Order("o", "A", "mech", 2, due_h=5), windows=(Window("A", ((24, 30),)),))
    a = plan.by_order()["o"]
    assert (a.start_h, a.lateness_h) == (24, 21)


# ---- frozen orders ---------------------------------------------------------------------------


def test_frozen_orders_keep_their_start_and_technician():
    techs = (tech("T1"), tech("T2", cost=10.0))
    orders = (
        Order("f", "A", "mech", 3, frozen_start=5, frozen_technician="T1", failure_cost=1e5),
        Order("g", "B", "mech", 2),
    )
    plan = only(*orders, techs=techs, frozen_until_h=4)
    a = plan.by_order()["f"]
    assert (a.technician_id, a.start_h, a.frozen, a.bound_by) == ("T1", 5, True, ("frozen",))
    assert slot(plan, "g")[1] >= 4  # others start after the frozen horizon


def test_infeasible_frozen_assignment_is_released_with_a_note():
    techs = (tech("T1"), tech("T2", "elec"))
    orders = (
        Order("a", "A", "mech", 3, frozen_start=0, frozen_technician="T1"),
        Order("b", "B", "mech", 3, frozen_start=1, frozen_technician="T1"),  # overlaps a
        Order("c", "C", "mech", 2, frozen_start=0, frozen_technician="T2"),  # lacks skill
    )
    plan = only(*orders, techs=techs)
    assert slot(plan, "a") == ("T1", 0)
    for oid in ("b", "c"):
        a = plan.by_order()[oid]
        assert not a.frozen and "released" in a.note
        assert a.status == "scheduled"


def test_pinned_technician():
    techs = (tech("T1", cost=10.0), tech("T2", cost=90.0))
    plan = only(Order("o", "A", "mech", 2, frozen_technician="T2"), techs=techs)
    assert slot(plan, "o") == ("T2", 0)


# ---- diff ------------------------------------------------------------------------------------


def test_diff_names_moved_orders_and_why():
    techs = (tech("T1"),)
    first = Problem(48, techs, (Order("a", "A", "mech", 3, failure_cost=100.0),))
    urgent = Order("u", "B", "mech", 3, due_h=3, failure_cost=1e4, priority=2)
    second = dataclasses.replace(first, orders=(*first.orders, urgent))
    old, new = planned(first), planned(second)
    moves = {m.order_id: m for m in diff(old, new)}
    assert moves["u"].change == "added"
    assert moves["a"].change == "moved"
    assert (moves["a"].old_start, moves["a"].new_start) == (0, 3)
    assert "old slot now used by u" in moves["a"].why


def test_prepare_reports_candidates_only_for_placeable_orders():
    problem = Problem(24, (tech("T1"),), (Order("a", "A", "mech", 2), Order("b", "A", "x", 1)))
    prep = prepare(problem)
    assert set(prep.candidates) == {"a"} and set(prep.unschedulable) == {"b"}
