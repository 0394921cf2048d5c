"""Re-planning when something changes (an urgent order arrives, a technician calls in sick):
fast, and without reshuffling work that is already under way or promised. Re-solving 1,000
orders from scratch takes seconds; an urgent insertion should take well under one.

`replan(previous, problem)`:

1. orders the previous plan starts before `problem.frozen_until_h` (under way or inside the
   frozen horizon) are frozen where they are (unless the problem already freezes them):
   `freeze_started(previous, problem)` is the problem solved, and the one to validate against;
2. the previous plan is the warm start (`add_hint`), completed greedily for new orders;
3. with `neighbourhood_h` set (default 12 h), only a neighbourhood is re-optimised: orders new
   to the plan or left out before, orders whose previous slot no longer fits, orders on a
   technician who could do a new order, starting before that order's due hour (or earliest
   possible end) plus `neighbourhood_h`, and, when the new orders are under a budget, the
   `budget_movers` orders of the periods they could start in that lose least by waiting a
   period (they can make room in a spent budget); every other order is held at its previous
   slot. With `neighbourhood_h=None` the whole plan is re-optimised (warm-started).
"""

from __future__ import annotations

import dataclasses

from pdm_scheduling import slots
from pdm_scheduling.cpsat import solve
from pdm_scheduling.model import Order, Problem
from pdm_scheduling.params import SolverParams
from pdm_scheduling.plan import Plan
from pdm_scheduling.precheck import Prepared, prepare


def freeze_started(previous: Plan, problem: Problem) -> Problem:
    """`problem` with every order the previous plan starts before `problem.frozen_until_h`
    frozen at that slot (unless the problem already freezes it): the problem `replan` solves,
    and the one to validate its plan against."""
    before = previous.slots()
    orders = []
    for order in problem.orders:
        slot = before.get(order.id)
        if slot is not None and order.frozen_start is None and slot[1] < problem.frozen_until_h:
            order = dataclasses.replace(order, frozen_start=slot[1], frozen_technician=slot[0])
        orders.append(order)
    return dataclasses.replace(problem, orders=tuple(orders))


def replan(
    previous: Plan,
    problem: Problem,
    params: SolverParams | None = None,
    *,
    neighbourhood_h: int | None = 12,
    budget_movers: int = 20,
) -> Plan:
    """A new plan for `problem` that keeps `previous` where it can (see the module docstring)."""
    before = previous.slots()
    problem = freeze_started(previous, problem)
    prep = prepare(problem)
    hint = {oid: slot for oid, slot in before.items() if slot is not None}
    if neighbourhood_h is None:
        return solve(problem, params, hint=hint, prep=prep)

    new = [o for o in problem.orders if before.get(o.id) is None and o.id in prep.candidates]
    reach: dict[str, int] = {}  # technician -> re-plan its orders starting before this hour
    for order in new:
        for tid, mask in prep.candidates[order.id].items():
            earliest_end = slots.lowest(mask) + order.duration_h
            until = max(order.due_h or 0, earliest_end) + neighbourhood_h
            reach[tid] = max(reach.get(tid, 0), until)
    free = {
        oid for oid, slot in hint.items() if oid in prep.orders and slot[1] < reach.get(slot[0], 0)
    }
    free |= _budget_movers(prep, hint, new, max(reach.values(), default=0), budget_movers)
    fixed = {oid: slot for oid, slot in hint.items() if oid in prep.orders and oid not in free}
    return solve(problem, params, hint=hint, fixed=fixed, prep=prep)


def _budget_movers(
    prep: Prepared,
    hint: dict[str, tuple[str, int]],
    new: list[Order],
    until: int,
    count: int,
) -> set[str]:
    """Orders that could make budget room for the new ones: in the budget periods a new order
    could start in (before `until`), those whose cost grows least per cent of spend when they
    wait one period, `count` per budget."""
    movers: set[str] = set()
    horizon = prep.problem.horizon_h
    for budget_id in {o.budget for o in new if o.budget in prep.budgets}:
        assert budget_id is not None
        state = prep.budgets[budget_id]
        periods = {
            state.period(t)
            for o in new
            if o.budget == budget_id
            for mask in prep.candidates[o.id].values()
            for t in slots.bits(mask & slots.span_bits(0, until))
        }
        pool = []
        for oid, (tid, start) in hint.items():
            order = prep.orders.get(oid)
            if (
                order is None
                or order.budget != budget_id
                or oid in prep.frozen
                or state.period(start) not in periods
            ):
                continue
            oc = prep.costs[oid]
            later = min(horizon, start + state.period_length_h)
            growth = (oc.at(later) - oc.at(start)) / max(1, prep.spend(order, tid))
            pool.append((growth, oid))
        movers.update(oid for _, oid in sorted(pool)[:count])
    return movers
