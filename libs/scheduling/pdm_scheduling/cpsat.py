"""The optimiser's entry point, `solve`: pre-check, warm start, CP-SAT search (`cpmodel`) on the
whole problem or window by window, repair, explanation. Kept apart from the data, the baseline
and the validator so each of those can check it.

Warm start: list scheduling by each `timeline.priority_rules` ordering (and the caller's hint,
if any); the best of them is given to CP-SAT as a complete hint (`add_hint`), so the result is
never worse than the best rule, and is returned as it is if CP-SAT finds nothing in time.

Strategy (measured, see docs/benchmarks.md): the model (`cpmodel`) is exact and CP-SAT
proves optimality on small instances, but its search scales poorly: with 1,000 orders (about
18,000 optional intervals) presolve alone outlasts a 10 s budget on 2 cores, and without
presolve the search does not improve the hint. Above `full_model_max_pairs` order-technician
pairs the plan is therefore improved by a window decomposition (`lns`): the same model over
the orders of one time window plus the later ones that could move into it, all others held,
window after window (those where later orders would gain most first), each with a short
CP-SAT limit and no presolve. The bound reported is then `cpmodel.relaxed_bound` (capacity
and budgets ignored); for the full model, the better of that and CP-SAT's.

Determinism: one worker and a fixed seed; a search that ends on its own (optimal, or a fixed
number of `lns_rounds` with `deterministic_time`) is reproducible, one cut by the wall-clock
limit may differ between runs on a loaded machine. Afterwards any order still left out that
has a free slot is inserted (earliest slot), so every order the plan leaves out has a reason.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

from pdm_scheduling import slots
from pdm_scheduling.costs import labour, objective
from pdm_scheduling.cpmodel import relaxed_bound, solve_model
from pdm_scheduling.explain import build_plan
from pdm_scheduling.model import Order, Problem
from pdm_scheduling.params import SolverParams
from pdm_scheduling.plan import Plan
from pdm_scheduling.precheck import Prepared, prepare
from pdm_scheduling.timeline import (
    Timeline,
    edf_key,
    insert_all,
    insert_displacing,
    priority_rules,
)

__all__ = ["SolverParams", "solve"]


def _warm_start(
    prep: Prepared, base: Timeline, hint: Mapping[str, tuple[str, int] | None]
) -> tuple[Timeline, str]:
    """A complete, feasible warm start, and how it was made.

    Without a hint: the best (lowest objective) of list scheduling by each `priority_rules`
    ordering. With a hint (a previous plan), stability comes first: the hinted slots that still
    fit are kept (the others re-inserted), then the new orders go in, either at free slots or
    pushing others aside (`timeline.insert_displacing`: an urgent order takes the slot it
    needs, the orders it displaces, or those it needs budget room from, go back in at their
    earliest free slots); the better of the two."""
    problem = prep.problem
    todo = [o for o in problem.orders if o.id in prep.candidates and o.id not in base.placed]
    rules = priority_rules(prep)
    best: tuple[int, Timeline, str] | None = None

    def consider(timeline: Timeline, name: str) -> None:
        nonlocal best
        value = objective(problem, prep.costs, timeline.placed, prep.unschedulable)
        if best is None or value < best[0]:
            best = (value, timeline, name)

    if not hint:
        for name, key in rules.items():
            timeline = base.copy()
            insert_all(timeline, sorted(todo, key=key))
            consider(timeline, name)
    else:
        key = rules["deadline-risk"]
        hinted = [o for o in todo if hint.get(o.id) is not None]
        new = sorted((o for o in todo if hint.get(o.id) is None), key=key)
        kept = base.copy()
        displaced = []
        for order in hinted:
            wanted = hint[order.id]
            assert wanted is not None
            if kept.starts(order, wanted[0]) >> wanted[1] & 1:
                kept.place(order, *wanted)
            else:
                displaced.append(order)
        insert_all(kept, sorted(displaced, key=key))
        last = kept.copy()
        insert_all(last, new)
        consider(last, "hint, new orders at free slots")
        pushing = kept
        for order in new:
            pushing = insert_displacing(
                pushing,
                order,
                key,
                movable=lambda oid: oid not in base.placed,
                cost=lambda o, slot: _cost(prep, o, slot),
            )
        consider(pushing, "hint, new orders pushing others aside")
    assert best is not None
    return best[1], best[2]


def _cost(prep: Prepared, order: Order, slot: tuple[str, int] | None) -> int:
    """One order's share of the objective (`costs.objective`)."""
    oc = prep.costs[order.id]
    if slot is None:
        return oc.penalty
    tech = prep.problem.technician(slot[0])
    assert tech is not None
    return oc.at(slot[1]) + labour(order, tech)


def _lns(
    prep: Prepared, base: Timeline, current: Timeline, params: SolverParams, deadline: float
) -> tuple[Timeline, int, int, float]:
    """Re-optimise one time window after another with every other order held; returns the
    plan, rounds, improving rounds and CP-SAT seconds.

    A window's neighbourhood: the orders starting in it, then the orders starting later (or
    left out) that could start in it, those that would gain most first, up to
    `lns_max_orders`. Freed orders may go anywhere still free, not only into the window."""
    problem = prep.problem
    costs, skip = prep.costs, prep.unschedulable
    movable = [o for o in problem.orders if o.id in prep.candidates and o.id not in base.placed]
    width = params.lns_window_h
    lo = problem.frozen_until_h
    windows = [(a, a + width) for a in range(lo, problem.horizon_h, max(1, width // 2))]
    value = objective(problem, costs, current.placed, skip)
    rounds = improved = 0
    seconds = 0.0

    def neighbourhood(a: int, b: int) -> tuple[int, list[Order], list[tuple[int, str, Order]]]:
        window = slots.span_bits(a, b)
        inside: list[Order] = []
        later: list[tuple[int, str, Order]] = []
        for order in movable:
            slot = current.placed.get(order.id)
            if slot is not None and a <= slot[1] < b:
                inside.append(order)
            elif slot is None or slot[1] >= b:
                oc = costs[order.id]
                now = oc.penalty if slot is None else oc.at(slot[1])
                gain = max(
                    (
                        now - oc.at(slots.lowest(mask & window))
                        for mask in prep.candidates[order.id].values()
                        if mask & window
                    ),
                    default=0,
                )
                if gain > 0:
                    later.append((-gain, order.id, order))
        return -sum(g for g, _, _ in later), inside, later

    limit = params.lns_rounds
    while time.perf_counter() < deadline and (limit is None or rounds < limit):
        improved_in_sweep = False
        # windows where later orders would gain most first (ties: earlier first)
        ranked = sorted(windows, key=lambda w: (-neighbourhood(*w)[0], w))
        for a, b in ranked:
            left = deadline - time.perf_counter()
            if left <= 0.05 or (limit is not None and rounds >= limit):
                break
            _, inside, later = neighbourhood(a, b)
            room = max(0, params.lns_max_orders - len(inside))
            chosen = inside + [o for _, _, o in sorted(later)[:room]]
            if not chosen:
                continue
            ids = {o.id for o in chosen}
            sub_base = Timeline(prep)
            for oid, (tid, start) in current.placed.items():
                if oid not in ids and oid not in sub_base.placed:
                    sub_base.place(prep.orders[oid], tid, start)
            step = min(params.lns_step_s, left)
            sub = solve_model(
                prep, sub_base, current, params, time.perf_counter() + step, presolve=False
            )
            rounds += 1
            seconds += sub.seconds
            if sub.timeline is not None:
                new_value = objective(problem, costs, sub.timeline.placed, skip)
                if new_value < value:
                    current, value = sub.timeline, new_value
                    improved += 1
                    improved_in_sweep = True
        if not improved_in_sweep:
            break
    return current, rounds, improved, seconds


def solve(
    problem: Problem,
    params: SolverParams | None = None,
    *,
    hint: Mapping[str, tuple[str, int] | None] | None = None,
    fixed: Mapping[str, tuple[str, int]] | None = None,
    prep: Prepared | None = None,
) -> Plan:
    """The optimised plan for `problem` (see the module docstring).

    `hint`: order id -> (technician, start) to warm-start from (a previous plan; by default
    the best priority rule); `fixed`: orders held at the given slot as constants, outside the
    model (`replan` re-optimises a neighbourhood so); a fixed slot that no longer fits is
    planned again; `prep`: the pre-check of `problem`, if the caller has it already.
    """
    params = params or SolverParams()
    started = time.perf_counter()
    deadline = started + params.time_limit_s
    prep = prep or prepare(problem)
    phases: list[tuple[str, float]] = []
    mark = started

    def phase(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        phases.append((name, round(now - mark, 3)))
        mark = now

    phase("prepare")
    base = Timeline(prep)
    for oid, (tid, start) in sorted((fixed or {}).items()):
        order = prep.orders.get(oid)
        if order is not None and oid not in base.placed and base.starts(order, tid) >> start & 1:
            base.place(order, tid, start)
    warm, warm_rule = _warm_start(prep, base, hint or {})
    notes: list[str] = [f"warm start: {warm_rule}"]
    phase("warm start")

    pairs = sum(
        len(prep.candidates[o.id])
        for o in problem.orders
        if o.id in prep.candidates and o.id not in base.placed
    )
    strategy = params.strategy
    if strategy == "auto":
        strategy = "full" if pairs <= params.full_model_max_pairs else "lns"
    bound: float | None
    relaxed = relaxed_bound(prep, base)
    if strategy == "full":
        presolve = pairs <= params.presolve_max_pairs and params.time_limit_s >= 2.0
        sub = solve_model(prep, base, warm, params, deadline, presolve)
        status, solver_s = sub.status, sub.seconds
        # the objective is an integer: CP-SAT's float bound rounds up
        bound = relaxed if sub.bound is None else max(relaxed, math.ceil(sub.bound - 1e-6))
        if sub.timeline is None:
            notes.append(f"CP-SAT returned {status}: the warm-start plan is returned")
            result = warm
        else:
            result = sub.timeline
    else:
        result, rounds, improved, solver_s = _lns(prep, base, warm, params, deadline)
        bound = relaxed
        status = "FEASIBLE"
        notes.append(
            f"window decomposition ({pairs} order-technician pairs > {params.full_model_max_pairs})"
            f": {rounds} windows of {params.lns_window_h} h re-optimised, {improved} improved "
            "the plan; bound: capacity and budgets relaxed"
        )
    phase("search")

    leftover = sorted(
        (o for o in problem.orders if o.id in prep.candidates and o.id not in result.placed),
        key=edf_key,
    )
    repaired = insert_all(result, leftover)
    if repaired:
        notes.append(f"repair inserted {len(repaired)} order(s) the search had left out")
    if fixed:
        notes.append(f"{len(base.placed)} orders held fixed: the bound holds for the rest only")
    phase("repair")
    return build_plan(
        prep,
        result,
        method=f"cp-sat/{strategy}",
        status=status,
        best_bound=bound,
        wall_time_s=time.perf_counter() - started,
        solver_time_s=solver_s,
        num_workers=params.num_workers,
        random_seed=params.random_seed,
        repaired=len(repaired),
        notes=tuple(notes),
        phases_s=tuple(phases),
    )
