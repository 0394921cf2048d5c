"""An independent check of a plan against every hard constraint, written from the problem
statement alone: it imports only the data model, none of the pre-check, timeline or solver
code, and uses floats where those use integers, so an error in them shows up here instead of
being repeated. Tests run it on every plan; the service can run it before publishing one.

Checked: every order appears exactly once; a scheduled order has a known technician with the
skill, `end = start + duration`, lies inside one working block of the technician (touching
shifts joined), inside one window of its asset (if it has windows), within `[0, horizon_h]`
and, unless frozen, from `frozen_until_h` on; no technician does two orders at once; kept
frozen orders are exactly where they were frozen, and a frozen order is released only when
its assignment is infeasible on its own or overlaps an earlier kept frozen order; an order
pinned to a technician is elsewhere only when that technician cannot take it; per budget
period, labour + parts of the orders starting in it stay within the limit (frozen spend is
committed: when it alone exceeds the limit, nothing else may start in the period); an
unschedulable order has a reason, and no free slot where it would fit (technician on shift
and free, window, budget) is left in the plan; lateness is reported correctly.
"""

from __future__ import annotations

import math

from pdm_scheduling.model import Order, Problem, Technician
from pdm_scheduling.plan import Assignment, Plan

_CENT = 0.01


def _union(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _inside(start: int, end: int, spans: list[tuple[int, int]]) -> bool:
    return any(s <= start and end <= e for s, e in spans)


def _spend(order: Order, tech: Technician) -> float:
    return order.parts_cost + tech.hourly_cost * order.duration_h


class _Checker:
    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.blocks = {t.id: _union(list(t.shifts)) for t in problem.technicians}
        self.windows: dict[str, list[tuple[int, int]]] = {}
        for w in problem.windows:
            self.windows.setdefault(w.asset_id, []).extend(w.spans)
        self.windows = {a: _union(s) for a, s in self.windows.items()}
        self._starts: dict[tuple[str, str | None, int], list[int]] = {}

    def fits_alone(self, order: Order, tech: Technician | None, start: int) -> str | None:
        """Why `order` cannot run on `tech` from `start` by itself (None: it can)."""
        end = start + order.duration_h
        if tech is None:
            return "unknown technician"
        if order.skill not in tech.skills:
            return f"{tech.id} lacks skill {order.skill}"
        if start < 0 or end > self.problem.horizon_h:
            return f"[{start}, {end}) is outside [0, {self.problem.horizon_h}]"
        if not _inside(start, end, self.blocks[tech.id]):
            return f"[{start}, {end}) is not inside one shift of {tech.id}"
        windows = self.windows.get(order.asset_id)
        if windows is not None and not _inside(start, end, windows):
            return f"[{start}, {end}) is not inside a window of asset {order.asset_id}"
        return None

    def kept_frozen(self) -> dict[str, tuple[str, int]]:
        kept: dict[str, tuple[str, int]] = {}
        frozen = [o for o in self.problem.orders if o.frozen_start is not None]
        for order in sorted(frozen, key=lambda o: (o.frozen_start, o.id)):
            assert order.frozen_start is not None and order.frozen_technician is not None
            tech = self.problem.technician(order.frozen_technician)
            start = order.frozen_start
            if self.fits_alone(order, tech, start) is not None:
                continue
            end = start + order.duration_h
            clash = any(
                tid == order.frozen_technician
                and s < end
                and start < s + self._order(oid).duration_h
                for oid, (tid, s) in kept.items()
            )
            if not clash:
                kept[order.id] = (order.frozen_technician, start)
        return kept

    def starts(self, order: Order, tech: Technician) -> list[int]:
        """Starts from `frozen_until_h` at which `order` fits on `tech` by itself."""
        if order.skill not in tech.skills:
            return []
        windows = self.windows.get(order.asset_id)
        key = (tech.id, order.asset_id if windows is not None else None, order.duration_h)
        if key not in self._starts:
            lo, d = self.problem.frozen_until_h, order.duration_h
            self._starts[key] = [
                start
                for s, e in self.blocks[tech.id]
                for start in range(max(s, lo), min(e, self.problem.horizon_h) - d + 1)
                if windows is None or _inside(start, start + d, windows)
            ]
        return self._starts[key]

    def _order(self, oid: str) -> Order:
        return next(o for o in self.problem.orders if o.id == oid)


def validate(problem: Problem, plan: Plan) -> list[str]:
    """Every hard-constraint violation of `plan` for `problem` (empty: the plan is valid)."""
    errors: list[str] = []
    check = _Checker(problem)
    orders = {o.id: o for o in problem.orders}
    seen: dict[str, Assignment] = {}
    for a in plan.assignments:
        if a.order_id not in orders:
            errors.append(f"{a.order_id}: not an order of the problem")
        elif a.order_id in seen:
            errors.append(f"{a.order_id}: appears twice")
        else:
            seen[a.order_id] = a
    errors += [f"{oid}: missing from the plan" for oid in orders if oid not in seen]

    kept = check.kept_frozen()
    lo = problem.frozen_until_h
    busy: dict[str, list[tuple[int, int, str]]] = {}
    for oid, a in seen.items():
        order = orders[oid]
        if a.status == "unschedulable":
            if a.technician_id is not None or a.start_h is not None:
                errors.append(f"{oid}: unschedulable but has a technician or start")
            if not a.reason:
                errors.append(f"{oid}: unschedulable without a reason")
            if oid in kept:
                errors.append(f"{oid}: feasible frozen order left out")
            continue
        if a.status != "scheduled":
            errors.append(f"{oid}: unknown status {a.status!r}")
            continue
        if a.technician_id is None or a.start_h is None or a.end_h is None:
            errors.append(f"{oid}: scheduled without technician, start or end")
            continue
        start, end = a.start_h, a.end_h
        if end != start + order.duration_h:
            errors.append(f"{oid}: end {end} != start {start} + duration {order.duration_h}")
        tech = problem.technician(a.technician_id)
        why = check.fits_alone(order, tech, start)
        if why is not None:
            errors.append(f"{oid}: {why}")
        if oid in kept:
            if (a.technician_id, start) != kept[oid]:
                where = f"{a.technician_id}, {start}"
                errors.append(f"{oid}: frozen at {kept[oid]} but planned at {where}")
        elif start < lo:
            errors.append(f"{oid}: starts at {start}, inside the frozen horizon ({lo} h)")
        pin = order.frozen_technician
        if (
            oid not in kept
            and pin is not None
            and a.technician_id != pin
            and _could_take(check, problem, order, problem.technician(pin), kept, orders)
        ):
            errors.append(f"{oid}: pinned to {pin}, who could take it, but on {a.technician_id}")
        expected_late = 0 if order.due_h is None else max(0, end - order.due_h)
        if a.lateness_h != expected_late:
            errors.append(f"{oid}: lateness {a.lateness_h} h, should be {expected_late} h")
        busy.setdefault(a.technician_id, []).append((start, end, oid))

    for tid, jobs in busy.items():
        jobs.sort()
        reach, last = -1, ""
        for s, e, oid in jobs:
            if s < reach:
                errors.append(f"{tid}: {oid} from {s} h overlaps {last} (busy until {reach} h)")
            if e > reach:
                reach, last = e, oid

    spent, frozen_spent, count = _spending(problem, seen, orders, kept)
    for (bid, q), amount in spent.items():
        budget = problem.budget(bid)
        assert budget is not None
        limit = budget.limit_for(q)
        committed = frozen_spent.get((bid, q), 0.0)
        tolerance = 1e-6 * max(1.0, limit if math.isfinite(limit) else 1.0)
        if amount > max(0.0, limit - committed) + tolerance:
            errors.append(
                f"budget {bid} period {q}: {amount + committed:.2f} spent "
                f"({committed:.2f} frozen), limit {limit:.2f}"
            )

    busy_hours = {tid: {h for s, e, _ in jobs for h in range(s, e)} for tid, jobs in busy.items()}
    for oid, a in seen.items():
        if a.status == "unschedulable":
            slot = _free_slot(check, problem, orders[oid], busy_hours, spent, frozen_spent, count)
            if slot is not None:
                errors.append(f"{oid}: left out although {slot[0]} is free at {slot[1]} h")
    return errors


def _spending(
    problem: Problem,
    seen: dict[str, Assignment],
    orders: dict[str, Order],
    kept: dict[str, tuple[str, int]],
) -> tuple[dict[tuple[str, int], float], dict[tuple[str, int], float], dict[tuple[str, int], int]]:
    spent: dict[tuple[str, int], float] = {}
    frozen: dict[tuple[str, int], float] = {}
    count: dict[tuple[str, int], int] = {}
    for oid, a in seen.items():
        order = orders[oid]
        budget = problem.budget(order.budget)
        tech = problem.technician(a.technician_id) if a.technician_id is not None else None
        if a.status != "scheduled" or budget is None or tech is None or a.start_h is None:
            continue
        key = (budget.id, a.start_h // budget.period_length_h)
        target = frozen if oid in kept and kept[oid] == (a.technician_id, a.start_h) else spent
        target[key] = target.get(key, 0.0) + _spend(order, tech)
        count[key] = count.get(key, 0) + 1
        spent.setdefault(key, 0.0)
    return spent, frozen, count


def _room(
    problem: Problem,
    order: Order,
    start: int,
    spent: dict[tuple[str, int], float],
    frozen: dict[tuple[str, int], float],
    count: dict[tuple[str, int], int],
) -> float:
    budget = problem.budget(order.budget)
    if budget is None:
        return math.inf
    key = (budget.id, start // budget.period_length_h)
    limit = budget.limit_for(key[1])
    if math.isinf(limit):
        return math.inf
    # integer cents upstream round spend up and limits down: allow one cent per order
    margin = _CENT * (count.get(key, 0) + 2)
    return max(0.0, limit - frozen.get(key, 0.0)) - spent.get(key, 0.0) - margin


def _could_take(
    check: _Checker,
    problem: Problem,
    order: Order,
    tech: Technician | None,
    kept: dict[str, tuple[str, int]],
    orders: dict[str, Order],
) -> bool:
    """Could `tech` take `order` at some start, on its own (frozen spend counted)?"""
    if tech is None:
        return False
    frozen: dict[tuple[str, int], float] = {}
    for oid, (tid, s) in kept.items():
        b = problem.budget(orders[oid].budget)
        t = problem.technician(tid)
        if b is not None and t is not None:
            key = (b.id, s // b.period_length_h)
            frozen[key] = frozen.get(key, 0.0) + _spend(orders[oid], t)
    return any(
        _spend(order, tech) <= _room(problem, order, start, {}, frozen, {})
        for start in check.starts(order, tech)
    )


def _free_slot(
    check: _Checker,
    problem: Problem,
    order: Order,
    busy_hours: dict[str, set[int]],
    spent: dict[tuple[str, int], float],
    frozen: dict[tuple[str, int], float],
    count: dict[tuple[str, int], int],
) -> tuple[str, int] | None:
    techs = problem.technicians
    if order.frozen_technician is not None:
        pinned = [t for t in techs if t.id == order.frozen_technician]
        if pinned and _could_take(check, problem, order, pinned[0], {}, {}):
            techs = tuple(pinned)
    for tech in techs:
        hours = busy_hours.get(tech.id, set())
        for start in check.starts(order, tech):
            if any(h in hours for h in range(start, start + order.duration_h)):
                continue
            if _spend(order, tech) <= _room(problem, order, start, spent, frozen, count):
                return tech.id, start
    return None
