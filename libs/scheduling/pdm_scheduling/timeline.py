"""A plan under construction: which hours each technician is busy and what each budget period
has left. The greedy baseline builds plans with it, the solver's result is repaired with it
(an order the search left out although a slot is free goes in), and the explanations ask it
what an order could do if it were moved.
"""

from __future__ import annotations

from collections.abc import Callable

from pdm_scheduling import slots
from pdm_scheduling.model import Order
from pdm_scheduling.precheck import Prepared


class Timeline:
    def __init__(self, prep: Prepared) -> None:
        self.prep = prep
        self.busy: dict[str, int] = {t.id: 0 for t in prep.problem.technicians}
        self.room: dict[str, list[int | None]] = {
            bid: list(state.room) for bid, state in prep.budgets.items()
        }
        self.placed: dict[str, tuple[str, int]] = {}
        for oid, (tid, start) in prep.frozen.items():  # frozen spend is already deducted
            self.busy[tid] |= slots.span_bits(start, start + prep.orders[oid].duration_h)
            self.placed[oid] = (tid, start)

    def copy(self) -> Timeline:
        other = Timeline.__new__(Timeline)
        other.prep = self.prep
        other.busy = dict(self.busy)
        other.room = {bid: list(room) for bid, room in self.room.items()}
        other.placed = dict(self.placed)
        return other

    def budget_mask(self, order: Order, tech_id: str) -> int:
        if order.budget is None or order.budget not in self.prep.budgets:
            return -1
        state = self.prep.budgets[order.budget]
        spend = self.prep.spend(order, tech_id)
        mask = 0
        for room, pmask in zip(self.room[order.budget], state.period_masks, strict=True):
            if room is None or spend <= room:
                mask |= pmask
        return mask

    def starts(self, order: Order, tech_id: str) -> int:
        """Candidate starts of `order` on `tech_id` that are still free and within budget."""
        mask = self.prep.candidates.get(order.id, {}).get(tech_id, 0)
        if not mask:
            return 0
        mask &= slots.starts_clear_of(
            self.busy[tech_id], order.duration_h, self.prep.problem.horizon_h
        )
        if mask:
            mask &= self.budget_mask(order, tech_id)
        return mask

    def _charge(self, order: Order, tech_id: str, start: int, sign: int) -> None:
        if order.id in self.prep.frozen or order.budget not in self.room:
            return
        assert order.budget is not None
        state = self.prep.budgets[order.budget]
        q = state.period(start)
        room = self.room[order.budget][q]
        if room is not None:
            self.room[order.budget][q] = room - sign * self.prep.spend(order, tech_id)

    def place(self, order: Order, tech_id: str, start: int) -> None:
        assert order.id not in self.placed
        self.busy[tech_id] |= slots.span_bits(start, start + order.duration_h)
        self._charge(order, tech_id, start, +1)
        self.placed[order.id] = (tech_id, start)

    def remove(self, order: Order) -> tuple[str, int]:
        tech_id, start = self.placed.pop(order.id)
        self.busy[tech_id] &= ~slots.span_bits(start, start + order.duration_h)
        self._charge(order, tech_id, start, -1)
        return tech_id, start

    def best_slot(self, order: Order) -> tuple[str, int] | None:
        """The earliest free start over the order's technicians; ties: lower labour, then id."""
        best: tuple[int, float, str] | None = None
        for tech_id in self.prep.candidates.get(order.id, {}):
            mask = self.starts(order, tech_id)
            if mask:
                tech = self.prep.problem.technician(tech_id)
                assert tech is not None
                key = (slots.lowest(mask), tech.hourly_cost, tech_id)
                if best is None or key < best:
                    best = key
        return None if best is None else (best[2], best[0])


def edf_key(order: Order) -> tuple[float, int, str]:
    """Earliest deadline first: `due_h`, else the hour the RUL reaches its first quantile
    (10 % for the usual p10/p50/p90), else never; then higher priority, then id."""
    quantiles = order.quantiles
    if order.due_h is not None:
        deadline = float(order.due_h)
    elif quantiles:
        deadline = quantiles[0][1]
    else:
        deadline = float("inf")
    return (deadline, -order.priority, order.id)


def priority_rules(prep: Prepared) -> dict[str, Callable[[Order], tuple[object, ...]]]:
    """Orderings for list scheduling (each order to its earliest free slot in turn):

    - `edf`: earliest deadline first (`edf_key`), the baseline;
    - `deadline-risk`: orders with a due hour first, by due hour; then by how fast their cost
      grows per hour of work over the next 48 h (failure risk, lateness), fastest first;
    - `risk`: by cost growth per hour of work over the whole horizon, fastest first.
    """
    problem = prep.problem
    lo, horizon = problem.frozen_until_h, problem.horizon_h

    def growth(order: Order, span: int) -> float:
        oc = prep.costs[order.id]
        return (oc.at(min(horizon, lo + span)) - oc.at(lo)) / order.duration_h

    return {
        "edf": edf_key,
        "deadline-risk": lambda o: (o.due_h is None, o.due_h or 0, -growth(o, 48), o.id),
        "risk": lambda o: (-growth(o, horizon), o.id),
    }


def insert_all(timeline: Timeline, orders: list[Order]) -> list[str]:
    """Place each order (in the given sequence) at its best free slot; returns the ids placed."""
    placed = []
    for order in orders:
        slot = timeline.best_slot(order)
        if slot is not None:
            timeline.place(order, *slot)
            placed.append(order.id)
    return placed


def insert_displacing(
    timeline: Timeline,
    order: Order,
    key: Callable[[Order], tuple[object, ...]],
    movable: Callable[[str], bool],
    cost: Callable[[Order, tuple[str, int] | None], int],
    options_per_tech: int = 3,
) -> Timeline:
    """`order` placed where the plan costs least (`value`), allowing it to push others aside:
    for each of its technicians, its earliest free start and its `options_per_tech` earliest
    candidate starts that overlap only `movable` orders (frozen work, e.g. the frozen horizon's
    first jobs of a shift, must not hide the hours right after it); the orders it overlaps are
    taken out, and, if its budget period lacks room for it and for those, the movable orders of
    that period that lose least by waiting one period; the orders taken out go back in by
    `key` at their earliest free slots.
    `cost(order, slot)` prices one order (slot None: left out); options are compared by the
    change in the summed cost of the orders that moved. Returns a new timeline (the given one
    if nothing fits)."""
    prep = timeline.prep
    horizon = prep.problem.horizon_h
    d = order.duration_h
    best: tuple[int, Timeline] | None = None
    plain = timeline.best_slot(order)
    if plain is not None:
        first = timeline.copy()
        first.place(order, *plain)
        best = (cost(order, plain), first)
    state = prep.budgets.get(order.budget) if order.budget is not None else None
    for tid, mask in prep.candidates.get(order.id, {}).items():
        tried = 0
        for start in slots.bits(mask):
            if tried == options_per_tech:
                break
            end = start + d
            overlapping = [
                prep.orders[oid]
                for oid, (t2, s2) in timeline.placed.items()
                if t2 == tid and s2 < end and start < s2 + prep.orders[oid].duration_h
            ]
            if not all(movable(o.id) for o in overlapping):
                continue  # a frozen order is in the way: not an option, try a later start
            tried += 1
            trial = timeline.copy()
            for other in overlapping:
                trial.remove(other)
            taken = list(overlapping)
            if state is not None and order.budget is not None:
                q = state.period(start)
                # room for the order and for the ones it displaced from this period
                need = prep.spend(order, tid) + sum(
                    prep.spend(o, timeline.placed[o.id][0])
                    for o in overlapping
                    if o.budget == order.budget and state.period(timeline.placed[o.id][1]) == q
                )
                room = trial.room[order.budget][q]
                if room is not None and room < need:
                    movers = []
                    for oid, (t2, s2) in trial.placed.items():
                        other = prep.orders[oid]
                        if other.budget == order.budget and state.period(s2) == q and movable(oid):
                            oc = prep.costs[oid]
                            later = min(horizon, s2 + state.period_length_h)
                            growth = (oc.at(later) - oc.at(s2)) / max(1, prep.spend(other, t2))
                            movers.append((growth, oid))
                    for _, oid in sorted(movers):
                        room = trial.room[order.budget][q]
                        if room is None or room >= need:
                            break
                        taken.append(prep.orders[oid])
                        trial.remove(prep.orders[oid])
                    room = trial.room[order.budget][q]
                    if room is not None and room < need:
                        continue
            if not trial.starts(order, tid) >> start & 1:
                continue
            trial.place(order, tid, start)
            insert_all(trial, sorted(taken, key=key))
            score = cost(order, (tid, start)) + sum(
                cost(o, trial.placed.get(o.id)) - cost(o, timeline.placed[o.id]) for o in taken
            )
            if best is None or score < best[0]:
                best = (score, trial)
    return timeline if best is None else best[1]
