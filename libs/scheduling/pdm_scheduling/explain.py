"""Turns raw (technician, start) choices into the reported plan, with an honest account of what
holds each order where it is. Planners act on `bound_by` (hire, move a window, raise a budget),
so it is derived from the plan itself, not from the solver's internals.

`bound_by` of a scheduled order that is not frozen: every order's cost is non-decreasing in
its start (`risk`, `costs`), so the question is why it does not start earlier. With the rest
of the plan fixed, each earlier start `t` (from `frozen_until_h`) on each technician `k` either
satisfies every constraint family or breaks some of them:

- `skill` (k lacks the skill), `pinned` (the order is pinned to another technician),
- `shift` (`[t, t + d)` is not inside one of k's working blocks),
- `window` (not inside the asset's windows), `crew` (k is busy with another order then),
- `budget` (the period of t has too little left for the order's spend with k).

If some earlier (k, t) breaks nothing, `bound_by` is `objective` (the search chose a later
start: a cheaper technician, room for another order, or a time-limited search). Otherwise it
lists the families whose relaxation alone would allow an earlier start (the smallest such sets,
united). With no earlier hour at all it is `now` or `frozen_horizon`. `deadline` is added when
the order ends exactly at its due hour.
"""

from __future__ import annotations

import time
from itertools import combinations

from pdm_scheduling import slots
from pdm_scheduling.costs import labour, lateness_h, objective, spend_cents
from pdm_scheduling.model import Order, Technician
from pdm_scheduling.plan import Assignment, Plan, SolveStats
from pdm_scheduling.precheck import Prepared, Reason
from pdm_scheduling.risk import expected_failure_cost, risk_removed
from pdm_scheduling.timeline import Timeline

FAMILIES = ("skill", "shift", "window", "crew", "budget")


class _Explainer:
    """`bound_by` for every order of one finished plan.

    The masks of all technicians are packed side by side into one integer (technician i at
    bit offset `i * width`, the width leaving room for the longest job so that shifting one
    technician's hours never reaches another's valid starts): each family test is then one
    big-integer operation for all technicians at once."""

    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline
        self.prep = prep = timeline.prep
        problem = prep.problem
        self.horizon = problem.horizon_h
        self.width = self.horizon + max((o.duration_h for o in problem.orders), default=1) + 1
        self.techs = problem.technicians
        self.index = {t.id: i for i, t in enumerate(self.techs)}
        self.rep = sum(1 << (i * self.width) for i in range(len(self.techs)))
        self.segment = slots.span_bits(0, self.width)
        self._shift: dict[int, int] = {}
        self._crew: dict[int, int] = {}
        self._skill: dict[str, int] = {}
        self._periods: dict[tuple[str, tuple[bool, ...]], int] = {}
        self._by_cost: dict[float, tuple[int, Technician]] = {}
        for i, tech in enumerate(self.techs):
            seg = self.segment << (i * self.width)
            selector, first = self._by_cost.get(tech.hourly_cost, (0, tech))
            self._by_cost[tech.hourly_cost] = (selector | seg, first)
        busy = 0
        for i, tech in enumerate(self.techs):
            busy |= timeline.busy[tech.id] << (i * self.width)
        self.busy = busy

    def seg(self, tech_id: str) -> int:
        return self.segment << (self.index[tech_id] * self.width)

    def shift(self, d: int) -> int:
        if d not in self._shift:
            width, prep = self.width, self.prep
            self._shift[d] = sum(
                prep.shift_starts(t.id, d) << (i * width) for i, t in enumerate(self.techs)
            )
        return self._shift[d]

    def crew(self, d: int) -> int:
        if d not in self._crew:
            blocked = 0
            for j in range(d):
                blocked |= self.busy >> j
            self._crew[d] = ~blocked & (slots.span_bits(0, self.horizon - d + 1) * self.rep)
        return self._crew[d]

    def skill(self, skill: str) -> int:
        if skill not in self._skill:
            self._skill[skill] = sum(
                self.segment << (i * self.width)
                for i, t in enumerate(self.techs)
                if skill in t.skills
            )
        return self._skill[skill]

    def budget(self, order: Order, own_tech: str, own_start: int) -> int:
        """Starts whose period has room for the order's spend with each technician (its own
        spend given back); every start when it is not under a limited budget."""
        prep = self.prep
        everything = self.segment * self.rep
        if order.budget is None or order.budget not in prep.budgets:
            return everything
        state = prep.budgets[order.budget]
        room = list(self.timeline.room[order.budget])
        if all(r is None for r in room):
            return everything
        own_q = state.period(own_start)
        own_room = room[own_q]
        if own_room is not None and order.id not in prep.frozen:
            room[own_q] = own_room + prep.spend(order, own_tech)
        groups: dict[tuple[bool, ...], int] = {}  # periods with room -> technicians (packed)
        for selector, tech in self._by_cost.values():
            spend = spend_cents(order, tech)  # the same for every technician at this rate
            fits = tuple(r is None or spend <= r for r in room)
            groups[fits] = groups.get(fits, 0) | selector
        packed = 0
        for fits, selector in groups.items():
            key = (order.budget, fits)
            if key not in self._periods:
                mask = sum(pm for ok, pm in zip(fits, state.period_masks, strict=True) if ok)
                self._periods[key] = mask * self.rep
            packed |= self._periods[key] & selector
        return packed

    def bound_by(self, order: Order) -> tuple[str, ...]:
        prep = self.prep
        problem = prep.problem
        if order.id in prep.frozen:
            return ("frozen",)
        tech_id, start = self.timeline.placed[order.id]
        d = order.duration_h
        lo = problem.frozen_until_h
        earlier = slots.span_bits(lo, start)
        tight = order.due_h is not None and start + d == order.due_h
        tail = ("deadline",) if tight else ()
        if not earlier:
            return ("frozen_horizon" if lo > 0 else "now", *tail)
        pinned = order.frozen_technician
        if pinned is not None and set(prep.candidates.get(order.id, {})) != {pinned}:
            pinned = None  # the pin was released
        offset = self.index[tech_id] * self.width
        own_seg = self.segment << offset
        own_busy = (self.busy >> offset) & self.segment & ~slots.span_bits(start, start + d)
        own_crew = slots.starts_clear_of(own_busy, d, self.horizon) << offset
        families = {
            "pinned" if pinned is not None else "skill": self.seg(pinned)
            if pinned is not None
            else self.skill(order.skill),
            "shift": self.shift(d),
            "window": prep.window_starts(order.asset_id, d) * self.rep,
            "crew": (self.crew(d) & ~own_seg) | own_crew,
            "budget": self.budget(order, tech_id, start),
        }
        base = earlier * self.rep
        names = list(families)
        for size in range(len(names) + 1):
            found: set[str] = set()
            for relaxed in combinations(names, size):
                mask = base
                for name, family_mask in families.items():
                    if name not in relaxed:
                        mask &= family_mask
                if mask:
                    found.update(relaxed)
                    if size == 0:
                        return ("objective", *tail)
            if found:
                return (*sorted(found), *tail)
        return tail  # not reached: with every family relaxed, `base` is open


def build_plan(
    prep: Prepared,
    timeline: Timeline,
    *,
    method: str,
    status: str,
    best_bound: float | None,
    wall_time_s: float,
    solver_time_s: float = 0.0,
    num_workers: int = 0,
    random_seed: int = 0,
    repaired: int = 0,
    notes: tuple[str, ...] = (),
    phases_s: tuple[tuple[str, float], ...] = (),
) -> Plan:
    """The plan for `timeline.placed`; `best_bound` None when the method proves no bound;
    `wall_time_s` is the time before this call, the time spent here is added."""
    started = time.perf_counter()
    problem = prep.problem
    explainer = _Explainer(timeline)
    assignments = []
    for order in problem.orders:
        oc = prep.costs[order.id]
        note = prep.released.get(order.id, "")
        slot = timeline.placed.get(order.id)
        if slot is None:
            reason, detail = prep.unschedulable.get(
                order.id,
                (
                    Reason.NO_CAPACITY,
                    "it fits on its own, but every open slot is taken by other orders or the "
                    "budget left in its periods is too small",
                ),
            )
            assignments.append(
                Assignment(
                    order_id=order.id,
                    status="unschedulable",
                    cost=0 if order.id in prep.unschedulable else oc.penalty,
                    expected_failure_cost=expected_failure_cost(order, problem, None),
                    reason=str(reason),
                    detail=detail,
                    note=note,
                )
            )
            continue
        tech_id, start = slot
        tech = problem.technician(tech_id)
        assert tech is not None
        assignments.append(
            Assignment(
                order_id=order.id,
                status="scheduled",
                technician_id=tech_id,
                start_h=start,
                end_h=start + order.duration_h,
                lateness_h=lateness_h(order, start),
                cost=oc.at(start) + labour(order, tech),
                expected_failure_cost=expected_failure_cost(order, problem, start),
                risk_removed=risk_removed(order, problem, start),
                bound_by=explainer.bound_by(order),
                frozen=order.id in prep.frozen,
                note=note,
            )
        )
    value = objective(problem, prep.costs, timeline.placed, prep.unschedulable)
    bound = None if best_bound is None else min(best_bound, float(value))
    stats = SolveStats(
        method=method,
        status=status,
        objective=value,
        best_bound=bound,
        gap=None if bound is None else (value - bound) / max(1.0, abs(value)),
        wall_time_s=wall_time_s + time.perf_counter() - started,
        solver_time_s=solver_time_s,
        num_workers=num_workers,
        random_seed=random_seed,
        repaired=repaired,
        notes=notes,
        phases_s=(*phases_s, ("explain", round(time.perf_counter() - started, 3))),
    )
    return Plan(tuple(assignments), stats)
