"""The validator finds each kind of violation in a hand-broken plan; and the greedy baseline."""

from __future__ import annotations

import dataclasses

import pytest

from pdm_scheduling import (
    Assignment,
    Budget,
    Order,
    Plan,
    Problem,
    SolveStats,
    Technician,
    Window,
    schedule_edf,
    validate,
)

TECHS = (
    Technician("T1", frozenset({"mech"}), ((0, 8), (8, 12), (24, 32)), 50.0),
    Technician("T2", frozenset({"elec"}), ((0, 8),), 50.0),
)
ORDERS = (
    Order("a", "A", "mech", 2, due_h=10, parts_cost=100.0),
    Order("b", "B", "mech", 3),
    Order("f", "C", "mech", 1, frozen_start=20, frozen_technician="T1"),  # off shift: released
    Order("k", "D", "elec", 2, frozen_start=1, frozen_technician="T2"),
)
PROBLEM = Problem(
    horizon_h=48,
    technicians=TECHS,
    orders=ORDERS,
    windows=(Window("B", ((2, 6), (6, 7), (24, 30))),),
    budgets=(Budget("default", 24, 500.0),),
)
STATS = SolveStats("hand", "HAND", 0, None, None, 0.0)


def on(oid: str, tech: str | None, start: int | None, **kw) -> Assignment:
    order = next(o for o in ORDERS if o.id == oid)
    if tech is None:
        return Assignment(oid, "unschedulable", reason=kw.pop("reason", "no_capacity"), **kw)
    end = start + order.duration_h
    late = 0 if order.due_h is None else max(0, end - order.due_h)
    return Assignment(oid, "scheduled", tech, start, end, kw.pop("lateness_h", late), **kw)


GOOD = {
    "a": on("a", "T1", 0),
    "b": on("b", "T1", 3),  # windows (2, 6) and (6, 7) join; shifts (0, 8) and (8, 12) join
    "f": on("f", "T1", 7),
    "k": on("k", "T2", 1, frozen=True),
}


def plan(**changes: Assignment | None) -> Plan:
    rows = {**GOOD, **changes}
    return Plan(tuple(a for a in rows.values() if a is not None), STATS)


def test_a_valid_hand_made_plan_passes():
    assert validate(PROBLEM, plan()) == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"b": on("b", "T2", 3)}, "lacks skill"),
        ({"a": on("a", "T1", 12)}, "not inside one shift"),
        ({"a": on("a", "T1", 11)}, "not inside one shift"),
        ({"b": on("b", "T1", 20)}, "not inside one shift"),
        ({"b": on("b", "T1", 25), "f": on("f", "T1", 26)}, "overlaps"),
        ({"b": on("b", "T1", 1)}, "overlaps"),
        ({"b": on("b", "T1", 8)}, "not inside a window"),
        ({"a": on("a", "T1", 47)}, "outside"),
        ({"k": on("k", "T2", 3)}, "frozen at"),
        ({"k": None}, "missing from the plan"),
        ({"a": on("a", "T1", 0, lateness_h=3)}, "lateness"),
        ({"a": on("a", None, None, reason="")}, "without a reason"),
        ({"a": on("a", None, None)}, "left out although"),
        ({"x": Assignment("x", "scheduled", "T1", 0, 1)}, "not an order"),
    ],
)
def test_each_violation_is_found(changes, message):
    errors = validate(PROBLEM, plan(**changes))
    assert any(message in e for e in errors), errors


def test_budget_violation_and_committed_frozen_spend():
    expensive = dataclasses.replace(PROBLEM, budgets=(Budget("default", 24, 250.0),))
    errors = validate(expensive, plan())
    assert any("budget default period 0" in e for e in errors), errors
    # frozen spend alone over the limit is committed: nothing else may start in that period
    tight = dataclasses.replace(PROBLEM, budgets=(Budget("default", 24, 50.0),))
    only_frozen = plan(
        a=on("a", None, None, reason="over_budget"),
        b=on("b", None, None, reason="over_budget"),
        f=on("f", None, None, reason="over_budget"),
    )
    assert validate(tight, only_frozen) == []


def test_frozen_horizon():
    later = dataclasses.replace(PROBLEM, frozen_until_h=2)
    errors = validate(later, plan())
    assert any("inside the frozen horizon" in e for e in errors), errors


def test_edf_baseline_is_valid_and_earliest_deadline_first():
    techs = (Technician("T", frozenset({"m"}), ((0, 24),), 10.0),)
    orders = (
        Order("late-due", "A", "m", 2, due_h=20),
        Order("no-due", "A", "m", 2, rul_quantiles={0.1: 5, 0.5: 9, 0.9: 30}),
        Order("soon", "A", "m", 2, due_h=3),
        Order("never", "A", "m", 2),
    )
    problem = Problem(24, techs, orders)
    plan = schedule_edf(problem)
    assert validate(problem, plan) == []
    starts = {a.order_id: a.start_h for a in plan.assignments}
    assert starts == {"soon": 0, "no-due": 2, "late-due": 4, "never": 6}
    assert plan.stats.method == "edf-greedy" and plan.stats.best_bound is None
