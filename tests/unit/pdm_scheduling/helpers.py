"""Small random instances (hypothesis) and a brute-force optimum, written from the problem
statement: it enumerates every assignment with its own feasibility checks and prices it with
`pdm_scheduling.costs` (the objective's definition), so the solver's model is checked against
an exhaustive search of the same objective."""

from __future__ import annotations

import math

from hypothesis import strategies as st

from pdm_scheduling import Budget, Order, Problem, Technician, Window
from pdm_scheduling.costs import labour, limit_cents, order_costs, spend_cents

SKILLS = ("mech", "elec")


@st.composite
def shifts(draw: st.DrawFn, horizon: int) -> tuple[tuple[int, int], ...]:
    out = []
    for _ in range(draw(st.integers(1, 2))):
        start = draw(st.integers(0, horizon - 2))
        out.append((start, min(horizon + 2, start + draw(st.integers(3, 10)))))
    return tuple(out)


@st.composite
def small_problems(draw: st.DrawFn, max_orders: int = 5, frozen: bool = True) -> Problem:
    """<= 5 orders, 2 technicians, horizon <= 24 h: windows, budgets, RUL, deadlines, a
    frozen order, a skill nobody has, all sometimes."""
    horizon = draw(st.integers(6, 24))
    techs = tuple(
        Technician(
            id=f"T{i}",
            skills=frozenset(draw(st.lists(st.sampled_from(SKILLS), min_size=1, max_size=2))),
            shifts=draw(shifts(horizon)),
            hourly_cost=float(draw(st.sampled_from((10, 25, 40)))),
        )
        for i in range(2)
    )
    orders = []
    for i in range(draw(st.integers(1, max_orders))):
        rul = None
        if draw(st.booleans()):
            p10 = draw(st.integers(0, 30))
            p50 = p10 + draw(st.integers(0, 30))
            rul = {0.1: p10, 0.5: p50, 0.9: p50 + draw(st.integers(1, 60))}
        orders.append(
            Order(
                id=f"O{i}",
                asset_id=draw(st.sampled_from(("A", "B", "C"))),
                skill=draw(st.sampled_from((*SKILLS, *SKILLS, "weld"))),
                duration_h=draw(st.integers(1, 4)),
                due_h=draw(st.one_of(st.none(), st.integers(1, horizon + 4))),
                parts_cost=float(draw(st.integers(0, 200))),
                failure_cost=float(draw(st.sampled_from((0, 100, 1000, 5000)))),
                rul_quantiles=rul,
                priority=draw(st.integers(0, 2)),
                downtime_cost_per_h=float(draw(st.integers(0, 50))),
            )
        )
    if frozen and orders and draw(st.booleans()):
        o = orders[0]
        orders[0] = Order(
            **{
                **o.__dict__,
                "frozen_start": draw(st.integers(0, 6)),
                "frozen_technician": draw(st.sampled_from(("T0", "T1"))),
            }
        )
    windows = ()
    if draw(st.booleans()):
        start = draw(st.integers(0, horizon - 1))
        windows = (Window("A", ((start, start + draw(st.integers(1, 10))),)),)
    budgets = ()
    if draw(st.booleans()):
        limit = float(draw(st.sampled_from((50, 200, 400, 1000))))
        budgets = (Budget("default", draw(st.integers(4, 24)), limit),)
    return Problem(
        horizon_h=horizon,
        technicians=techs,
        orders=tuple(orders),
        windows=windows,
        budgets=budgets,
        frozen_until_h=draw(st.integers(0, 3)),
    )


def _inside(start: int, end: int, spans: list[tuple[int, int]]) -> bool:
    return any(s <= start and end <= e for s, e in spans)


def _union(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def brute_force(problem: Problem) -> tuple[int, set[str]]:
    """The optimum of the planner's objective by exhaustive search (branch and bound), and the
    orders that have no feasible option on their own (the planner leaves those out and does
    not count them)."""
    costs = order_costs(problem)
    horizon, lo = problem.horizon_h, problem.frozen_until_h
    blocks = {t.id: _union(list(t.shifts)) for t in problem.technicians}
    windows: dict[str, list[tuple[int, int]]] = {}
    for w in problem.windows:
        windows.setdefault(w.asset_id, []).extend(w.spans)
    windows = {a: _union(s) for a, s in windows.items()}

    def alone(order: Order, tech: Technician, start: int) -> bool:
        end = start + order.duration_h
        return (
            order.skill in tech.skills
            and start >= 0
            and end <= horizon
            and _inside(start, end, blocks[tech.id])
            and (order.asset_id not in windows or _inside(start, end, windows[order.asset_id]))
        )

    # frozen orders: kept in order of start when feasible alone and clear of kept ones
    kept: dict[str, tuple[str, int]] = {}
    for order in sorted(
        (o for o in problem.orders if o.frozen_start is not None),
        key=lambda o: (o.frozen_start, o.id),
    ):
        tech = problem.technician(order.frozen_technician or "")
        start = order.frozen_start
        assert start is not None
        if tech is None or not alone(order, tech, start):
            continue
        end = start + order.duration_h
        by_id = {o.id: o for o in problem.orders}
        if any(
            tid == tech.id and s < end and start < s + by_id[oid].duration_h
            for oid, (tid, s) in kept.items()
        ):
            continue
        kept[order.id] = (tech.id, start)

    budget_of = {b.id: b for b in problem.budgets}
    committed: dict[int, int] = {}
    for oid, (tid, start) in kept.items():
        order = next(o for o in problem.orders if o.id == oid)
        b = budget_of.get(order.budget or "")
        tech = problem.technician(tid)
        assert tech is not None
        if b is not None:
            q = start // b.period_length_h
            committed[q] = committed.get(q, 0) + spend_cents(order, tech)

    def room(q: int) -> int | None:
        b = problem.budgets[0] if problem.budgets else None
        if b is None:
            return None
        limit = limit_cents(b.limit_for(q))
        return None if limit is None else max(0, limit - committed.get(q, 0))

    options: dict[str, list[tuple[int, str, int]]] = {}
    for order in problem.orders:
        oc = costs[order.id]
        if order.id in kept:
            tid, start = kept[order.id]
            tech = problem.technician(tid)
            assert tech is not None
            options[order.id] = [(oc.at(start) + labour(order, tech), tid, start)]
            continue
        opts = []
        for tech in problem.technicians:
            for start in range(lo, horizon):
                if not alone(order, tech, start):
                    continue
                b = budget_of.get(order.budget or "")
                if b is not None:
                    r = room(start // b.period_length_h)
                    if r is not None and spend_cents(order, tech) > r:
                        continue
                opts.append((oc.at(start) + labour(order, tech), tech.id, start))
        pinned = [x for x in opts if x[1] == order.frozen_technician]
        options[order.id] = sorted(pinned or opts)  # a pin holds when its technician can
    skip = {oid for oid, opts in options.items() if not opts}
    todo = [o for o in problem.orders if o.id not in skip]
    todo.sort(key=lambda o: (o.id not in kept, len(options[o.id])))
    floor = [0] * (len(todo) + 1)
    for i in range(len(todo) - 1, -1, -1):
        floor[i] = floor[i + 1] + options[todo[i].id][0][0]

    best = math.inf
    busy: dict[str, list[tuple[int, int]]] = {t.id: [] for t in problem.technicians}
    spent: dict[int, int] = {}

    def search(i: int, total: int) -> None:
        nonlocal best
        if total + floor[i] >= best:
            return
        if i == len(todo):
            best = total
            return
        order = todo[i]
        for cost, tid, start in options[order.id]:
            end = start + order.duration_h
            if any(s < end and start < e for s, e in busy[tid]):
                continue
            b = budget_of.get(order.budget or "")
            q = None
            if b is not None and order.id not in kept:
                q = start // b.period_length_h
                r = room(q)
                tech = problem.technician(tid)
                assert tech is not None
                spend = spend_cents(order, tech)
                if r is not None and spent.get(q, 0) + spend > r:
                    continue
                spent[q] = spent.get(q, 0) + spend
            busy[tid].append((start, end))
            search(i + 1, total + cost)
            busy[tid].pop()
            if q is not None:
                tech = problem.technician(tid)
                assert tech is not None
                spent[q] -= spend_cents(order, tech)
        if order.id not in kept:
            search(i + 1, total + costs[order.id].penalty)

    search(0, 0)
    assert best < math.inf
    return int(best), skip
