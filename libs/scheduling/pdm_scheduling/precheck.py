"""What each order could do on its own, before any optimisation: which technicians and start
hours are open to it, which frozen assignments stand, and, for an order with no option at all,
the reason. The solver, the greedy baseline and the explanations share this, so "unschedulable"
always comes with a cause found here, not with whatever a solver happened to leave out.

Per order, the candidate starts on technician `k` are the hours `t` with `[t, t + d)` inside
one working block of `k` (merged shifts), inside the asset's windows (merged), within
`[frozen_until_h, horizon_h]`, and in a budget period whose limit (less frozen spend) covers
the order's spend with `k`. The first test that leaves nothing names the reason (`Reason`).

Frozen orders are taken in order of (`frozen_start`, id); one is kept when its technician
exists and has the skill, and the job lies inside that technician's shifts, the asset's
windows and the horizon, and does not overlap a frozen order kept before it. Budgets do not
release a frozen order (its spend is committed); they lower what is left for the others. A
released frozen order, like an order with only `frozen_technician`, stays with its technician
when that technician has a candidate start for it, and may go to anyone otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from pdm_scheduling import slots
from pdm_scheduling.costs import OrderCosts, limit_cents, order_costs, spend_cents
from pdm_scheduling.model import Order, Problem, Span, Technician


class Reason(StrEnum):
    """Why an order is in the plan as unschedulable."""

    NO_SKILL = "no_skill"  # no technician has the skill
    LONGER_THAN_SHIFTS = "longer_than_shifts"  # longer than every shift of the skilled ones
    NO_WINDOW = "no_window"  # the asset's windows are all empty
    LONGER_THAN_WINDOWS = "longer_than_windows"  # longer than every window of the asset
    NO_SHIFT_IN_WINDOW = "no_shift_in_window"  # no skilled shift overlaps a window long enough
    NO_SLOT_IN_HORIZON = "no_slot_in_horizon"  # such slots exist, none in [frozen_until, horizon]
    OVER_BUDGET = "over_budget"  # spend exceeds what every reachable period has left
    NO_CAPACITY = "no_capacity"  # fits alone, but every slot is taken by other orders / budget


@dataclass
class BudgetState:
    """One budget over the horizon: period length and what non-frozen orders may still spend
    per period, in cents (None: unlimited)."""

    period_length_h: int
    room: list[int | None]
    period_masks: list[int]

    def period(self, start_h: int) -> int:
        return start_h // self.period_length_h


@dataclass
class Prepared:
    problem: Problem
    costs: dict[str, OrderCosts]
    orders: dict[str, Order]
    blocks: dict[str, list[Span]]  # technician -> merged shifts (not clipped)
    windows: dict[str, list[Span]]  # asset -> merged windows (only assets that have windows)
    frozen: dict[str, tuple[str, int]]  # kept frozen assignments: order -> (technician, start)
    released: dict[str, str]  # frozen or pinned orders whose pin was dropped: why
    candidates: dict[str, dict[str, int]]  # order -> technician -> start mask (non-empty)
    unschedulable: dict[str, tuple[Reason, str]]
    budgets: dict[str, BudgetState]
    _shift_masks: dict[tuple[str, int], int] = field(default_factory=dict)
    _window_masks: dict[tuple[str, int], int] = field(default_factory=dict)
    _spends: dict[tuple[str, str], int] = field(default_factory=dict)

    def shift_starts(self, tech_id: str, duration: int) -> int:
        key = (tech_id, duration)
        if key not in self._shift_masks:
            horizon = self.problem.horizon_h
            self._shift_masks[key] = slots.starts_inside(self.blocks[tech_id], duration, horizon)
        return self._shift_masks[key]

    def window_starts(self, asset_id: str, duration: int) -> int:
        """Starts allowed by the asset's windows (every start if it has none)."""
        horizon = self.problem.horizon_h
        if asset_id not in self.windows:
            return slots.span_bits(0, horizon - duration + 1)
        key = (asset_id, duration)
        if key not in self._window_masks:
            blocks = self.windows[asset_id]
            self._window_masks[key] = slots.starts_inside(blocks, duration, horizon)
        return self._window_masks[key]

    def budget_starts(self, order: Order, tech: Technician, exclude: int = 0) -> int:
        """Starts in periods whose room (plus `exclude` cents given back) covers the spend."""
        state = self.budgets.get(order.budget) if order.budget is not None else None
        if state is None:
            return -1  # all bits
        spend = spend_cents(order, tech)
        mask = 0
        for room, pmask in zip(state.room, state.period_masks, strict=True):
            if room is None or spend <= room + exclude:
                mask |= pmask
        return mask

    def spend(self, order: Order, tech_id: str) -> int:
        key = (order.id, tech_id)
        if key not in self._spends:
            tech = self.problem.technician(tech_id)
            assert tech is not None
            self._spends[key] = spend_cents(order, tech)
        return self._spends[key]


def _frozen_problem(order: Order, tech: Technician | None, prep: Prepared) -> str | None:
    """Why the frozen assignment of `order` cannot stand on its own (None when it can)."""
    start = order.frozen_start
    assert start is not None
    end = start + order.duration_h
    if tech is None:
        return f"technician {order.frozen_technician} is unknown"
    if order.skill not in tech.skills:
        return f"technician {tech.id} lacks skill {order.skill}"
    if end > prep.problem.horizon_h:
        return f"it would end at {end} h, after the horizon"
    if not any(s <= start and end <= e for s, e in prep.blocks[tech.id]):
        return f"[{start}, {end}) is outside the shifts of {tech.id}"
    windows = prep.windows.get(order.asset_id)
    if windows is not None and not any(s <= start and end <= e for s, e in windows):
        return f"[{start}, {end}) is outside the windows of asset {order.asset_id}"
    return None


def _reason(order: Order, skilled: list[Technician], prep: Prepared) -> tuple[Reason, str]:
    """The first pre-check an order with no candidate start fails."""
    d = order.duration_h
    problem = prep.problem
    if not skilled:
        return Reason.NO_SKILL, f"no technician has skill {order.skill!r}"
    longest = max((e - s for t in skilled for s, e in prep.blocks[t.id]), default=0)
    if longest < d:
        return (
            Reason.LONGER_THAN_SHIFTS,
            f"{d} h is longer than every shift of the {order.skill} technicians ({longest} h)",
        )
    windows = prep.windows.get(order.asset_id)
    if windows is not None:
        if not windows:
            return Reason.NO_WINDOW, f"asset {order.asset_id} has no maintenance window"
        widest = max(e - s for s, e in windows)
        if widest < d:
            return (
                Reason.LONGER_THAN_WINDOWS,
                f"{d} h is longer than every window of asset {order.asset_id} ({widest} h)",
            )
    both = [
        block
        for t in skilled
        for block in (slots.intersect(prep.blocks[t.id], windows) if windows else prep.blocks[t.id])
    ]
    if not any(e - s >= d for s, e in both):
        return (
            Reason.NO_SHIFT_IN_WINDOW,
            f"no {order.skill} shift overlaps a window of asset {order.asset_id} for {d} h",
        )
    lo = problem.frozen_until_h
    if not any(e - s >= d for s, e in slots.clip(both, lo, problem.horizon_h)):
        return (
            Reason.NO_SLOT_IN_HORIZON,
            f"no {d} h shift/window slot between hour {lo} and the horizon end "
            f"({problem.horizon_h} h)",
        )
    return (
        Reason.OVER_BUDGET,
        f"its spend exceeds what budget {order.budget!r} has left in every period it could start",
    )


def prepare(problem: Problem) -> Prepared:
    horizon = problem.horizon_h
    prep = Prepared(
        problem=problem,
        costs=order_costs(problem),
        orders={o.id: o for o in problem.orders},
        blocks={t.id: slots.merge(t.shifts) for t in problem.technicians},
        windows={},
        frozen={},
        released={},
        candidates={},
        unschedulable={},
        budgets={},
    )
    for asset in {w.asset_id for w in problem.windows}:
        spans = problem.window_spans(asset) or ()
        prep.windows[asset] = slots.merge(spans)

    # frozen assignments, in order of start
    frozen_orders = sorted(
        (o for o in problem.orders if o.frozen_start is not None),
        key=lambda o: (o.frozen_start, o.id),
    )
    for order in frozen_orders:
        assert order.frozen_start is not None and order.frozen_technician is not None
        tech = problem.technician(order.frozen_technician)
        why = _frozen_problem(order, tech, prep)
        start, end = order.frozen_start, order.frozen_start + order.duration_h
        if why is None:
            clash = next(
                (
                    other
                    for other, (tid, s) in prep.frozen.items()
                    if tid == order.frozen_technician
                    and s < end
                    and start < s + prep.orders[other].duration_h
                ),
                None,
            )
            if clash is not None:
                why = f"it overlaps frozen order {clash} on {order.frozen_technician}"
        if why is None:
            prep.frozen[order.id] = (order.frozen_technician, start)
        else:
            prep.released[order.id] = f"frozen assignment released: {why}"

    # budgets: room per period after frozen spend
    for budget in problem.budgets:
        length = budget.period_length_h
        n = -(-horizon // length)
        room: list[int | None] = [limit_cents(budget.limit_for(q)) for q in range(n)]
        for oid, (tid, start) in prep.frozen.items():
            order = prep.orders[oid]
            q = start // length
            r = room[q]
            if order.budget == budget.id and r is not None:
                room[q] = r - prep.spend(order, tid)
        room = [None if r is None else max(r, 0) for r in room]
        masks = [slots.span_bits(q * length, min((q + 1) * length, horizon)) for q in range(n)]
        prep.budgets[budget.id] = BudgetState(length, room, masks)

    # candidate starts of every order that is not frozen
    lo = problem.frozen_until_h
    for order in problem.orders:
        if order.id in prep.frozen:
            tid, start = prep.frozen[order.id]
            prep.candidates[order.id] = {tid: 1 << start}
            continue
        d = order.duration_h
        in_range = slots.span_bits(lo, horizon - d + 1)
        skilled = [t for t in problem.technicians if order.skill in t.skills]
        window = prep.window_starts(order.asset_id, d) & in_range
        options: dict[str, int] = {}
        for tech in skilled:
            mask = prep.shift_starts(tech.id, d) & window
            if mask:
                mask &= prep.budget_starts(order, tech)
            if mask:
                options[tech.id] = mask
        pin = order.frozen_technician  # a released frozen order keeps its technician if it can
        if pin is not None:
            if pin in options:
                options = {pin: options[pin]}
            elif options:
                why = f"technician {pin} released: cannot take it (skill, shifts, windows, budget)"
                earlier = prep.released.get(order.id)
                prep.released[order.id] = why if earlier is None else f"{earlier}; {why}"
        if options:
            prep.candidates[order.id] = options
        else:
            prep.unschedulable[order.id] = _reason(order, skilled, prep)
    return prep
