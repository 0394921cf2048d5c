"""What the optimiser hands back: one line per order (who, when, why there, what it buys), how
the solve went, and what changed between two plans. The scheduler service stores and publishes
these as they are, so they are plain frozen data with no reference to the solver.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["scheduled", "unschedulable"]


@dataclass(frozen=True)
class Assignment:
    """One order in a plan.

    - `bound_by`: why the order does not start earlier, as constraint families (see
      `explain`): `skill`, `pinned`, `shift`, `window`, `crew`, `budget` (the families whose
      relaxation alone, or in the smallest such sets, would open an earlier start, given the
      rest of the plan), `now` / `frozen_horizon` (it starts at the earliest hour allowed),
      `objective` (an earlier start was open: a cheaper option, room for another order, or a
      time-limited search chose this one), `frozen` (kept as frozen); plus `deadline` when it
      ends exactly at its due hour (it could not move later without being late).
    - `cost`: the order's share of the objective (`costs`; the left-out penalty if
      unschedulable for lack of capacity);
    - `expected_failure_cost`: `failure_cost * F(start)` (`F(horizon)` if unschedulable);
    - `risk_removed`: `failure_cost * (1 - F(start))`, 0 if unschedulable;
    - `reason` / `detail`: for an unschedulable order, the `precheck.Reason` and a sentence;
    - `note`: e.g. a frozen assignment that had to be released, and why.
    """

    order_id: str
    status: Status
    technician_id: str | None = None
    start_h: int | None = None
    end_h: int | None = None
    lateness_h: int = 0
    cost: int = 0
    expected_failure_cost: float = 0.0
    risk_removed: float = 0.0
    bound_by: tuple[str, ...] = ()
    frozen: bool = False
    reason: str | None = None
    detail: str = ""
    note: str = ""


@dataclass(frozen=True)
class SolveStats:
    """How the plan was found. `objective` is the integer objective of the plan returned (see
    `costs`); `best_bound` the solver's proven lower bound (None for the greedy, which proves
    none); `gap` = (objective - bound) / max(1, |objective|), 0 for a proven optimum."""

    method: str
    status: str
    objective: int
    best_bound: float | None
    gap: float | None
    wall_time_s: float  # the whole call: pre-check, model, search, repair, explanations
    solver_time_s: float = 0.0  # CP-SAT's own wall time (0 for the greedy)
    num_workers: int = 0
    random_seed: int = 0
    repaired: int = 0  # orders the post-solve repair added or moved back into the plan
    notes: tuple[str, ...] = ()
    phases_s: tuple[tuple[str, float], ...] = ()  # where the wall time went


@dataclass(frozen=True)
class Plan:
    assignments: tuple[Assignment, ...]
    stats: SolveStats

    def by_order(self) -> dict[str, Assignment]:
        return {a.order_id: a for a in self.assignments}

    @property
    def scheduled(self) -> tuple[Assignment, ...]:
        return tuple(a for a in self.assignments if a.status == "scheduled")

    @property
    def unschedulable(self) -> tuple[Assignment, ...]:
        return tuple(a for a in self.assignments if a.status == "unschedulable")

    @property
    def expected_failure_cost(self) -> float:
        return sum(a.expected_failure_cost for a in self.assignments)

    @property
    def risk_removed(self) -> float:
        return sum(a.risk_removed for a in self.assignments)

    @property
    def lateness_h(self) -> int:
        return sum(a.lateness_h for a in self.assignments)

    @property
    def late_orders(self) -> int:
        return sum(1 for a in self.assignments if a.lateness_h > 0)

    def slots(self) -> dict[str, tuple[str, int] | None]:
        """Order id -> (technician, start), or None when unschedulable."""
        return {
            a.order_id: (a.technician_id, a.start_h)
            if a.technician_id is not None and a.start_h is not None
            else None
            for a in self.assignments
        }


@dataclass(frozen=True)
class Move:
    """One order whose place differs between two plans, and why (as far as the plans tell)."""

    order_id: str
    change: str  # moved | reassigned | moved+reassigned | added | removed | now scheduled | ...
    old_technician: str | None
    old_start: int | None
    new_technician: str | None
    new_start: int | None
    why: str


def diff(old: Plan, new: Plan) -> list[Move]:
    """What moved between `old` and `new`, and why.

    The reason names the orders that now use the old slot (on the same technician), then the
    constraint families that bind the new position (`bound_by`) or the unschedulable reason.
    """
    before, after = old.by_order(), new.by_order()
    moves: list[Move] = []
    by_tech: dict[str, list[Assignment]] = {}
    for x in new.assignments:
        if x.technician_id is not None:
            by_tech.setdefault(x.technician_id, []).append(x)
    for oid in sorted(before.keys() | after.keys()):
        a = before.get(oid)
        b = after.get(oid)
        same = a is not None and b is not None and a.technician_id == b.technician_id
        if same and a is not None and b is not None and a.start_h == b.start_h:
            continue
        if b is None:
            if a is None:
                continue
            moves.append(
                Move(oid, "removed", a.technician_id, a.start_h, None, None, "not in new plan")
            )
            continue
        if a is None:
            change = "added"
        elif a.status != b.status:
            change = "now scheduled" if b.status == "scheduled" else "now unschedulable"
        elif a.technician_id != b.technician_id and a.start_h != b.start_h:
            change = "moved+reassigned"
        elif a.technician_id != b.technician_id:
            change = "reassigned"
        else:
            change = "moved"
        reasons: list[str] = []
        if a is not None and a.technician_id is not None and a.start_h is not None:
            a_end = a.end_h if a.end_h is not None else a.start_h
            takers = [
                x.order_id
                for x in by_tech.get(a.technician_id, [])
                if x.order_id != oid
                and x.start_h is not None
                and x.end_h is not None
                and x.start_h < a_end
                and a.start_h < x.end_h
            ]
            if takers:
                reasons.append("old slot now used by " + ", ".join(sorted(takers)))
        if b.status == "unschedulable":
            reasons.append(f"unschedulable: {b.reason} ({b.detail})")
        elif b.bound_by:
            reasons.append("bound by " + ", ".join(b.bound_by))
        if b.note:
            reasons.append(b.note)
        moves.append(
            Move(
                oid,
                change,
                a.technician_id if a else None,
                a.start_h if a else None,
                b.technician_id,
                b.start_h,
                "; ".join(reasons),
            )
        )
    return moves
