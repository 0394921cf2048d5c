"""The objective, in integers, defined once: CP-SAT needs integer coefficients, and the greedy
baseline, the brute-force checks in the tests and the plan report must price a schedule
exactly as the solver does.

Cost of order `o` done by technician `k` starting at hour `t`, in whole currency units:

    failure   fail_o(t)                                       (below)
  + labour    round(hourly_cost(k) * duration_h)
  + downtime  round(downtime_cost_per_h * duration_h)         (production lost while worked on)
  + lateness  round(late_rate) * max(0, t + duration_h - due_h)  (see `Problem.late_rate`)

`fail_o(t)` is `failure_cost * F(t)` (`risk`) made piecewise linear between integer
breakpoints `b_0 = 0 < b_1 < ... < b_m = horizon_h` with integer values
`v_i = round(failure_cost * F(b_i))`, rounded up in between:
`fail_o(t) = v_i + ceil((v_{i+1} - v_i) * (t - b_i) / (b_{i+1} - b_i))`. The breakpoints are
the hours on either side of every RUL quantile (`F` is linear between quantiles, so there
this only rounds to whole units), then 12 points on the exponential tail, every `tau / 3` h up
to `4 tau` past the last quantile (within 1.5 % of the failure cost still at risk there,
`failure_cost * (1 - p_last)`);
for a deadline step `due_h - 1` and `due_h`; for the constant hazard every `horizon_h / 8` h.
The solver models each piece exactly (`cpsat`), so its objective is this one.

An order left out costs `(1 + priority) * M + fail_o(H) + lateness_o(H)` instead (H: the horizon
end; the risk and lateness it carries past the plan), with `M = 1 + sum over all orders of the
largest cost it can have`: leaving out any order then costs more than every possible saving
on all the others, so the optimum schedules as many orders (weighted by `1 + priority`) as can
be placed, and among equals leaves out the one whose risk grows least. Orders the pre-check
finds unschedulable on their own (`precheck.Reason`) are left out of every plan; their
penalty is a constant and the planner's objective does not count it.

Budgets are checked in cents: an order's spend is `labour + parts_cost` rounded *up* to a cent
and a limit is rounded *down*, so a schedule within the integer limits is within the real ones.
"""

from __future__ import annotations

import dataclasses
import math
from bisect import bisect_right
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from pdm_scheduling.model import Order, Problem, Technician
from pdm_scheduling.risk import failure_cdf, tail_tau

CENTS = 100


@dataclass(frozen=True)
class OrderCosts:
    """The time-dependent cost of one order.

    - `points`: the failure term's breakpoints `((b_0, v_0), ..., (b_m, v_m))`;
    - `late_rate`: integer penalty per late hour; `due_h` as in the order;
    - `at(t)` (t = 0 .. horizon_h): failure + downtime + lateness of starting at t.
    """

    points: tuple[tuple[int, int], ...]
    late_rate: int
    due_h: int | None
    duration_h: int
    downtime: int
    penalty: int

    def failure(self, start_h: int) -> int:
        points = self.points
        i = bisect_right(points, (start_h, math.inf)) - 1
        b0, v0 = points[i]
        if b0 == start_h or i + 1 == len(points):
            return v0
        b1, v1 = points[i + 1]
        return v0 - (-(v1 - v0) * (start_h - b0) // (b1 - b0))  # v0 + ceil(...)

    def lateness(self, start_h: int) -> int:
        if self.due_h is None:
            return 0
        return self.late_rate * max(0, start_h + self.duration_h - self.due_h)

    def at(self, start_h: int) -> int:
        return self.failure(start_h) + self.downtime + self.lateness(start_h)


def labour(order: Order, tech: Technician) -> int:
    return round(tech.hourly_cost * order.duration_h)


def spend_cents(order: Order, tech: Technician) -> int:
    """What the order charges its budget with this technician, in cents (rounded up)."""
    amount = (order.parts_cost + tech.hourly_cost * order.duration_h) * CENTS
    return math.ceil(amount - 1e-6)


def limit_cents(limit: float) -> int | None:
    """A budget limit in cents (rounded down); None when unlimited."""
    return None if math.isinf(limit) else math.floor(limit * CENTS + 1e-6)


def _breakpoints(order: Order, problem: Problem) -> list[int]:
    horizon = problem.horizon_h
    hours = {0, horizon}
    quantiles = order.quantiles
    if quantiles is not None:
        for _, h in quantiles:
            hours.update((math.floor(h), math.ceil(h)))
        last_h = quantiles[-1][1]
        tau = tail_tau(quantiles)
        hours.update(round(last_h + k * tau / 3) for k in range(1, 13))
    elif order.due_h is not None:
        hours.update((order.due_h - 1, order.due_h))
    else:
        hours.update(round(horizon * i / 8) for i in range(1, 8))
    return sorted(h for h in hours if 0 <= h <= horizon)


def failure_points(order: Order, problem: Problem) -> tuple[tuple[int, int], ...]:
    """The failure term's integer breakpoints and values (see the module docstring)."""
    cdf = failure_cdf(order, problem)
    return tuple((b, round(order.failure_cost * cdf(b))) for b in _breakpoints(order, problem))


def _costs_of(order: Order, problem: Problem) -> OrderCosts:
    return OrderCosts(
        points=failure_points(order, problem),
        late_rate=round(problem.late_rate(order)),
        due_h=order.due_h,
        duration_h=order.duration_h,
        downtime=round(order.downtime_cost_per_h * order.duration_h),
        penalty=0,
    )


def order_costs(problem: Problem) -> dict[str, OrderCosts]:
    """Per order: cost of each start hour and the penalty for leaving it out."""
    costs = {o.id: _costs_of(o, problem) for o in problem.orders}
    max_labour = max((t.hourly_cost for t in problem.technicians), default=0.0)
    horizon = problem.horizon_h  # costs do not decrease with the start
    m = 1 + sum(costs[o.id].at(horizon) + round(max_labour * o.duration_h) for o in problem.orders)
    return {
        o.id: dataclasses.replace(
            costs[o.id],
            penalty=(1 + o.priority) * m
            + costs[o.id].failure(horizon)
            + costs[o.id].lateness(horizon),
        )
        for o in problem.orders
    }


def lateness_h(order: Order, start_h: int) -> int:
    return 0 if order.due_h is None else max(0, start_h + order.duration_h - order.due_h)


def objective(
    problem: Problem,
    costs: Mapping[str, OrderCosts],
    assignment: Mapping[str, tuple[str, int] | None],
    skip: Collection[str] = (),
) -> int:
    """The integer objective of `assignment` (order id -> (technician id, start) or None;
    an order missing from it counts as left out). Orders in `skip` are not counted: the
    planner passes those the pre-check found unschedulable, whose penalty is a constant."""
    total = 0
    for order in problem.orders:
        if order.id in skip:
            continue
        slot = assignment.get(order.id)
        oc = costs[order.id]
        if slot is None:
            total += oc.penalty
            continue
        tech = problem.technician(slot[0])
        if tech is None:
            raise ValueError(f"order {order.id}: unknown technician {slot[0]}")
        total += oc.at(slot[1]) + labour(order, tech)
    return total
