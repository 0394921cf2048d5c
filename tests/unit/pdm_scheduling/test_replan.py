"""Re-planning: an urgent order goes into an existing plan; frozen and started work stays."""

from __future__ import annotations

import dataclasses
import random

from pdm_scheduling import (
    Budget,
    Order,
    Problem,
    SolverParams,
    Technician,
    Window,
    diff,
    freeze_started,
    replan,
    schedule_edf,
    solve,
    validate,
)


def instance(n_orders: int = 40, seed: int = 3) -> Problem:
    rng = random.Random(seed)
    techs = tuple(
        Technician(
            f"T{i}",
            frozenset({("mech", "elec")[i % 2], *(("mech",) if i % 3 == 0 else ())}),
            tuple(
                (d * 24 + (6 if i % 2 else 14), d * 24 + (14 if i % 2 else 22)) for d in range(4)
            ),
            float(rng.choice((40, 60))),
        )
        for i in range(6)
    )
    orders = tuple(
        Order(
            f"O{i:02d}",
            f"A{rng.randrange(10)}",
            rng.choice(("mech", "elec")),
            rng.randint(1, 4),
            due_h=rng.choice((None, rng.randrange(12, 96))),
            parts_cost=float(rng.randrange(0, 300)),
            failure_cost=float(rng.randrange(1000, 20_000)),
            rul_quantiles={0.1: 10 + i, 0.5: 40 + 2 * i, 0.9: 90 + 3 * i} if i % 2 else None,
        )
        for i in range(n_orders)
    )
    return Problem(
        horizon_h=96,
        technicians=techs,
        orders=orders,
        windows=(Window("A1", ((30, 40), (54, 64))),),
        budgets=(Budget("default", 48, 6000.0),),
    )


URGENT = Order(
    "URGENT", "A9", "mech", 3, due_h=18, failure_cost=100_000.0, priority=2,
    rul_quantiles={0.1: 4, 0.5: 10, 0.9: 30},
)  # fmt: skip


def test_urgent_order_is_inserted_and_frozen_work_kept():
    problem = instance()
    first = solve(problem, SolverParams(time_limit_s=1.0))
    assert validate(problem, first) == []
    # six hours later: what started before hour 8 is frozen, an urgent order arrives
    later = dataclasses.replace(problem, orders=(*problem.orders, URGENT), frozen_until_h=8)
    second = replan(first, later, SolverParams(time_limit_s=1.0))
    assert validate(freeze_started(first, later), second) == []
    assert validate(later, second)  # without the freeze, started work would be "too early"
    urgent = second.by_order()["URGENT"]
    assert urgent.status == "scheduled" and urgent.lateness_h == 0
    before, after = first.by_order(), second.by_order()
    for oid, a in before.items():
        if a.start_h is not None and a.start_h < 8:
            assert (after[oid].technician_id, after[oid].start_h) == (a.technician_id, a.start_h)
            assert after[oid].frozen
    moves = diff(first, second)
    assert any(m.order_id == "URGENT" and m.change == "added" for m in moves)
    assert all(m.why for m in moves)
    unchanged = sum(1 for oid in before if before[oid].start_h == after[oid].start_h)
    assert unchanged >= len(before) // 2  # a neighbourhood moves, not the whole plan


def test_replan_of_the_same_problem_keeps_the_plan_and_full_replan_works():
    problem = instance(20)
    first = solve(problem, SolverParams(time_limit_s=1.0))
    again = replan(first, problem, SolverParams(time_limit_s=1.0))
    assert validate(problem, again) == []
    assert again.stats.objective <= first.stats.objective
    whole = replan(first, problem, SolverParams(time_limit_s=1.0), neighbourhood_h=None)
    assert validate(problem, whole) == []
    assert whole.stats.objective <= first.stats.objective


def test_replan_from_the_greedy_plan_releases_slots_that_no_longer_fit():
    problem = instance(20)
    first = schedule_edf(problem)
    # a technician goes home: their slots no longer fit and are planned again
    gone = first.scheduled[0].technician_id
    techs = tuple(
        dataclasses.replace(t, shifts=((0, 1),)) if t.id == gone else t for t in problem.technicians
    )
    changed = dataclasses.replace(problem, technicians=techs)
    second = replan(first, changed, SolverParams(time_limit_s=1.0))
    assert validate(changed, second) == []
    assert all(a.technician_id != gone or a.end_h <= 1 for a in second.scheduled)


def test_an_urgent_order_goes_right_after_frozen_work_not_to_the_next_shift():
    from pdm_scheduling.precheck import prepare
    from pdm_scheduling.timeline import Timeline, edf_key, insert_displacing

    mech = Technician("T0", frozenset({"mech"}), ((2, 10), (26, 34)), 50.0)
    frozen = Order("F", "A1", "mech", 4, frozen_start=2, frozen_technician="T0")
    later = Order("L", "A2", "mech", 4, due_h=60, failure_cost=1_000.0)
    urgent = Order("U", "A3", "mech", 3, due_h=5, failure_cost=100_000.0, priority=3)
    problem = Problem(horizon_h=48, technicians=(mech,), orders=(frozen, later, urgent))
    prep = prepare(problem)
    timeline = Timeline(prep)  # holds the frozen order at 2-6
    timeline.place(later, "T0", 6)  # the rest of the shift is taken by movable work
    placed = insert_displacing(
        timeline,
        urgent,
        edf_key,
        movable=lambda oid: oid != "F",
        cost=lambda o, slot: 0 if slot is None else prep.costs[o.id].at(slot[1]),
    ).placed
    # every start before 6 overlaps the frozen job; 6 (pushing L to the next shift) is the
    # option to take, not the next day's first free hour
    assert placed["U"] == ("T0", 6) and placed["F"] == ("T0", 2)
    assert placed["L"][1] >= 26
