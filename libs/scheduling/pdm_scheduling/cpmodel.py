"""The schedule as a CP-SAT model (OR-Tools) over the orders a caller leaves free, everything
else held: the one exact formulation, used on the whole problem when it is small and on one
window at a time when it is not (`cpsat`). Kept apart so that the brute-force tests check
exactly this.

Model, for every order that is neither frozen nor fixed and has a free candidate start:

- per candidate technician k: a literal `p[o,k]`, a start `s[o,k]` whose domain is exactly the
  order's candidate starts on k (`precheck`: skill, shift, window, horizon, frozen horizon,
  free of frozen/fixed work) and an optional fixed-size interval `[s[o,k], s[o,k] + d)`
  present iff `p[o,k]`; `add_no_overlap` per technician over its intervals;
- `absent[o] + sum_k p[o,k] = 1` (at most one technician, or left out);
- the order's start `S[o]` equals `s[o,k]` when `p[o,k]` (its domain: the union);
- failure term (`costs.failure_points`, pieces `(b_i, v_i) -> (b_{i+1}, v_{i+1})` of length
  `L_i`, rise `D_i`): a variable `f[o]` with `L_i * f[o] >= L_i * v_i + D_i * (S[o] - b_i)`;
  consecutive pieces with non-decreasing slope form a convex run, which needs no literal (the
  maximum of its lines is the function); between runs a literal `r[o,j]` selects the run
  holding `S[o]` (`sum_j r[o,j] + absent[o] = 1`). Minimising makes `f[o]` exactly the
  rounded-up piecewise-linear value `costs` defines;
- lateness: `late[o] >= rate * (S[o] + d - due)`, `late[o] >= 0`, when present;
- budgets: when the order can start in several periods of a limited budget, a literal `z[o,q]`
  per period (`sum_q z[o,q] = not absent`, `z[o,q] => S[o] in q`); its spend in q is
  `spend * z[o,q]` when all its technicians cost the same, else a variable
  `w[o,q] = sum_k spend[o,k] p[o,k]` when `z[o,q]` and 0 otherwise; per period
  `sum_o spend <= room[q]` (the limit less frozen and fixed spend, in cents);
- objective: `sum_o (f[o] + late[o] + downtime[o] * present + penalty[o] * absent[o]) +
  sum_{o,k} labour[o,k] p[o,k]`, plus a constant for frozen and fixed orders and for orders
  with no candidate, so objective and bound are those of the whole plan (`costs.objective`).

Every technician's no_overlap also holds its time off and fixed work as fixed intervals.

`solve_model` gives the warm-start plan as a complete hint (`add_hint`): CP-SAT's first
solution is at least as good. `relaxed_bound` is the bound used when the model is not solved
whole.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise

from ortools.sat.python import cp_model

from pdm_scheduling import slots
from pdm_scheduling.costs import labour, lateness_h
from pdm_scheduling.model import Order, Problem, Technician
from pdm_scheduling.params import SolverParams
from pdm_scheduling.precheck import Prepared
from pdm_scheduling.timeline import Timeline


def _domain(mask: int, cache: dict[int, cp_model.Domain]) -> cp_model.Domain:
    domain = cache.get(mask)
    if domain is None:
        domain = cp_model.Domain.from_intervals([[s, e - 1] for s, e in slots.runs(mask)])
        cache[mask] = domain
    return domain


@dataclass
class _OrderVars:
    order: Order
    present: dict[str, cp_model.IntVar]
    starts: dict[str, cp_model.IntVar]
    masks: dict[str, int]
    start: cp_model.IntVar
    absent: cp_model.IntVar
    failure: cp_model.IntVar
    runs: list[tuple[int, int, cp_model.IntVar | None]]  # [lo, hi] of S and its literal
    late: cp_model.IntVar | None
    budget: list[_PeriodVars] = field(default_factory=list)
    periods: list[tuple[int, int, cp_model.IntVar]] = field(default_factory=list)


@dataclass
class _PeriodVars:
    """The spend variable of an order in one limited budget period `[lo, hi]` (only when its
    spend depends on the technician)."""

    lo: int
    hi: int
    spend: cp_model.IntVar
    spends: dict[str, int]


@dataclass
class ModelResult:
    """The plan CP-SAT found (None if none in time), its status, bound and objective."""

    timeline: Timeline | None
    status: str
    bound: float | None
    seconds: float
    objective: int | None


def solve_model(
    prep: Prepared,
    base: Timeline,
    warm: Timeline,
    params: SolverParams,
    deadline: float,
    presolve: bool = True,
) -> ModelResult:
    """Optimise every order not placed in `base` (which stays as it is), warm-started from
    `warm` (a complete plan that agrees with `base`), until `deadline` (`time.perf_counter()`
    time; building the model counts)."""
    problem = prep.problem
    model = cp_model.CpModel()
    orders: list[_OrderVars] = []
    by_tech: dict[str, list[cp_model.IntervalVar]] = {}
    constant = sum(
        prep.costs[oid].at(start) + labour(prep.orders[oid], _tech(problem, tid))
        for oid, (tid, start) in base.placed.items()
    )
    objective_terms: list[cp_model.LinearExprT] = []
    domains: dict[int, cp_model.Domain] = {}
    for order in problem.orders:
        if order.id in base.placed or order.id not in prep.candidates:
            continue
        masks = {
            tid: mask for tid in prep.candidates[order.id] if (mask := base.starts(order, tid))
        }
        if not masks:
            constant += prep.costs[order.id].penalty
            continue
        orders.append(_order_vars(model, order, masks, prep, by_tech, objective_terms, domains))
        constant += prep.costs[order.id].downtime

    horizon = problem.horizon_h
    everything = slots.span_bits(0, horizon)
    for tid, intervals in by_tech.items():
        if len(intervals) > 1:
            # the technician's time off and fixed work as fixed intervals: the start domains
            # already exclude them, but no_overlap reasons on interval bounds, and these make
            # its propagation (and the LP) see the gaps between shifts
            blocked = (everything & ~slots.hours_mask(prep.blocks[tid], horizon)) | base.busy[tid]
            fixed = [
                model.new_fixed_size_interval_var(s, e - s, "") for s, e in slots.runs(blocked)
            ]
            model.add_no_overlap(intervals + fixed)
    _budgets(model, prep, base, orders)
    model.minimize(cp_model.LinearExpr.sum(objective_terms) + constant)
    _add_hint(model, orders, warm, prep)

    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(deadline - time.perf_counter(), 0.001)
    solver.parameters.num_workers = params.num_workers
    solver.parameters.random_seed = params.random_seed
    if params.deterministic_time is not None:
        solver.parameters.max_deterministic_time = params.deterministic_time
    solver.parameters.log_search_progress = params.log
    solver.parameters.cp_model_presolve = presolve
    for name, value in params.extra:
        setattr(solver.parameters, name, value)
    status = solver.solve(model)
    name = solver.status_name(status)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return ModelResult(None, name, None, solver.wall_time, None)
    result = Timeline(prep)
    for oid, (tid, start) in base.placed.items():
        if oid not in result.placed:
            result.place(prep.orders[oid], tid, start)
    for ov in orders:
        for tid, lit in ov.present.items():
            if solver.boolean_value(lit):
                result.place(ov.order, tid, solver.value(ov.starts[tid]))
    return ModelResult(
        result, name, solver.best_objective_bound, solver.wall_time, round(solver.objective_value)
    )


def relaxed_bound(prep: Prepared, base: Timeline) -> int:
    """A lower bound on the objective with `base` fixed: every other order at its earliest
    candidate start with its cheapest technician, ignoring every other order and the budgets
    (costs never decrease with the start, and leaving an order out costs more than any
    placement)."""
    problem = prep.problem
    total = 0
    for order in problem.orders:
        slot = base.placed.get(order.id)
        oc = prep.costs[order.id]
        if slot is not None:
            total += oc.at(slot[1]) + labour(order, _tech(problem, slot[0]))
        elif order.id in prep.candidates:
            total += min(
                oc.at(slots.lowest(mask)) + labour(order, _tech(problem, tid))
                for tid, mask in prep.candidates[order.id].items()
            )
    return total


def _tech(problem: Problem, tech_id: str) -> Technician:
    tech = problem.technician(tech_id)
    assert tech is not None
    return tech


def _convex_runs(
    points: tuple[tuple[int, int], ...], lo: int, hi: int
) -> list[list[tuple[int, int, int, int]]]:
    """The pieces `(b0, v0, b1, v1)` meeting `[lo, hi]`, grouped into convex runs."""
    runs: list[list[tuple[int, int, int, int]]] = []
    for (b0, v0), (b1, v1) in pairwise(points):
        if b1 < lo or b0 > hi:
            continue
        piece = (b0, v0, b1, v1)
        if runs:
            p0, q0, p1, q1 = runs[-1][-1]
            if (v1 - v0) * (p1 - p0) >= (q1 - q0) * (b1 - b0):  # slope does not decrease
                runs[-1].append(piece)
                continue
        runs.append([piece])
    return runs


def _order_vars(
    model: cp_model.CpModel,
    order: Order,
    masks: dict[str, int],
    prep: Prepared,
    by_tech: dict[str, list[cp_model.IntervalVar]],
    objective_terms: list[cp_model.LinearExprT],
    domains: dict[int, cp_model.Domain],
) -> _OrderVars:
    problem = prep.problem
    oc = prep.costs[order.id]
    d = order.duration_h
    union = 0
    present: dict[str, cp_model.IntVar] = {}
    starts: dict[str, cp_model.IntVar] = {}
    for tid, mask in masks.items():
        union |= mask
        lit = model.new_bool_var("")
        var = model.new_int_var_from_domain(_domain(mask, domains), "")
        by_tech.setdefault(tid, []).append(
            model.new_optional_fixed_size_interval_var(var, d, lit, "")
        )
        present[tid], starts[tid] = lit, var
        objective_terms.append(labour(order, _tech(problem, tid)) * lit)
    absent = model.new_bool_var("")
    model.add_exactly_one([*present.values(), absent])
    objective_terms.append((oc.penalty - oc.downtime) * absent)
    if len(masks) == 1:
        start = next(iter(starts.values()))
    else:
        start = model.new_int_var_from_domain(_domain(union, domains), "")
        for tid, lit in present.items():
            model.add(start == starts[tid]).only_enforce_if(lit)
    lo, hi = slots.lowest(union), union.bit_length() - 1

    groups = _convex_runs(oc.points, lo, hi)
    top = max(v1 for group in groups for *_, v1 in group)
    failure = model.new_int_var(0, top, "")
    objective_terms.append(failure)
    runs: list[tuple[int, int, cp_model.IntVar | None]] = []
    for group in groups:
        literal = model.new_bool_var("") if len(groups) > 1 else None
        enforce = literal if literal is not None else absent.Not()
        for b0, v0, b1, v1 in group:
            length, rise = b1 - b0, v1 - v0
            model.add(length * failure - rise * start >= length * v0 - rise * b0).only_enforce_if(
                enforce
            )
        if literal is not None:
            run_lo, run_hi = max(lo, group[0][0]), min(hi, group[-1][2])
            model.add_linear_constraint(start, run_lo, run_hi).only_enforce_if(literal)
        runs.append((group[0][0], group[-1][2], literal))
    if len(groups) > 1:
        model.add_exactly_one([lit for *_, lit in runs if lit is not None] + [absent])

    late: cp_model.IntVar | None = None
    if order.due_h is not None and hi + d > order.due_h and oc.late_rate > 0:
        late = model.new_int_var(0, oc.late_rate * (hi + d - order.due_h), "")
        model.add(late >= oc.late_rate * (start + d - order.due_h)).only_enforce_if(absent.Not())
        objective_terms.append(late)
    return _OrderVars(order, present, starts, masks, start, absent, failure, runs, late)


def _budgets(
    model: cp_model.CpModel, prep: Prepared, base: Timeline, orders: Iterable[_OrderVars]
) -> None:
    problem = prep.problem
    usage: dict[tuple[str, int], list[cp_model.LinearExprT]] = {}
    for ov in orders:
        order = ov.order
        if order.budget is None or order.budget not in prep.budgets:
            continue
        state = prep.budgets[order.budget]
        room = base.room[order.budget]
        union = 0
        for mask in ov.masks.values():
            union |= mask
        reach = [q for q, pm in enumerate(state.period_masks) if pm & union]
        limited = [q for q in reach if room[q] is not None]
        if not limited:
            continue
        spends = {tid: prep.spend(order, tid) for tid in ov.masks}
        same = len(set(spends.values())) == 1
        period_literals: dict[int, cp_model.IntVar] = {}
        if len(reach) > 1:
            for q in reach:
                lit = model.new_bool_var("")
                lo = q * state.period_length_h
                hi = min(lo + state.period_length_h, problem.horizon_h) - 1
                model.add_linear_constraint(ov.start, lo, hi).only_enforce_if(lit)
                period_literals[q] = lit
                ov.periods.append((lo, hi, lit))
            model.add_exactly_one([*period_literals.values(), ov.absent])
        for q in limited:
            lo = q * state.period_length_h
            hi = min(lo + state.period_length_h, problem.horizon_h) - 1
            in_q = ov.absent.Not() if len(reach) == 1 else period_literals[q]
            w: cp_model.IntVar | None = None
            if same:
                term: cp_model.LinearExprT = next(iter(spends.values())) * in_q
            else:
                w = model.new_int_var(0, max(spends.values()), "")
                expr = sum(spends[tid] * lit for tid, lit in ov.present.items())
                model.add(w == expr).only_enforce_if(in_q)
                model.add(w == 0).only_enforce_if(in_q.Not())
                term = w
            if w is not None:
                ov.budget.append(_PeriodVars(lo, hi, w, spends))
            usage.setdefault((order.budget, q), []).append(term)
    for (bid, q), terms in usage.items():
        left = base.room[bid][q]
        assert left is not None
        model.add(sum(terms) <= left)


def _add_hint(
    model: cp_model.CpModel, orders: Iterable[_OrderVars], warm: Timeline, prep: Prepared
) -> None:
    """Hint every variable from the warm-start plan (a complete, feasible assignment)."""
    indices: list[int] = []
    values: list[int] = []

    def hint(var: cp_model.IntVar, value: int | bool) -> None:
        indices.append(var.index)
        values.append(int(value))

    for ov in orders:
        oc = prep.costs[ov.order.id]
        slot = warm.placed.get(ov.order.id)
        chosen: str | None = None
        union = 0
        for mask in ov.masks.values():
            union |= mask
        start = slots.lowest(union)
        if slot is not None and slot[0] in ov.masks and ov.masks[slot[0]] >> slot[1] & 1:
            chosen, start = slot
        for tid, lit in ov.present.items():
            hint(lit, tid == chosen)
            hint(ov.starts[tid], start if tid == chosen else slots.lowest(ov.masks[tid]))
        hint(ov.absent, chosen is None)
        if len(ov.masks) > 1:
            hint(ov.start, start)
        late = 0 if chosen is None else oc.late_rate * lateness_h(ov.order, start)
        failure = 0 if chosen is None else oc.at(start) - oc.downtime - late
        hint(ov.failure, failure)
        found = False
        for run_lo, run_hi, run_lit in ov.runs:
            if run_lit is not None:
                hit = chosen is not None and not found and run_lo <= start <= run_hi
                found = found or hit
                hint(run_lit, hit)
        if ov.late is not None:
            hint(ov.late, late)
        for lo, hi, lit in ov.periods:
            hint(lit, chosen is not None and lo <= start <= hi)
        for pv in ov.budget:
            in_q = chosen is not None and pv.lo <= start <= pv.hi
            hint(pv.spend, pv.spends[chosen] if in_q and chosen is not None else 0)
    model.model_proto.solution_hint.vars.extend(indices)
    model.model_proto.solution_hint.values.extend(values)
