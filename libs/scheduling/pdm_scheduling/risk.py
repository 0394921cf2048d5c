"""How likely an asset is to fail before its maintenance starts, from the failure-prediction
model's remaining-useful-life (RUL) quantiles. This is what makes an early start worth paying
for, so it is defined exactly here and nowhere else.

`F(t)` is the probability that the asset fails before hour `t` (the maintenance start), i.e. the
CDF of the remaining useful life:

- **With RUL quantiles** `{p1: h1, ..., pn: hn}` (probability -> hours from now, sorted): `F` is
  piecewise linear through `(0, 0), (h1, p1), ..., (hn, pn)`; beyond the last quantile it has
  an exponential tail `F(t) = 1 - (1 - pn) * exp(-(t - hn) / tau)` whose density at `hn`
  equals the slope of the last linear piece, `tau = (1 - pn) / slope`, so the tail continues
  the last piece smoothly and approaches 1. If the last piece is vertical (two quantiles at
  the same hour) the slope is the mean slope `pn / hn`; if every quantile is at hour 0 the
  tail uses `tau = 1 h`. Quantiles at the same hour make `F` jump there (right-continuous).
- **Without quantiles, with a deadline** `due_h`: a step at the deadline, `F(t) = 0` for
  `t < due_h` and 1 from `due_h` on (a job that has not started by its deadline is taken not to
  prevent the failure the deadline stands for).
- **With neither**: a small constant hazard, `F(t) = 1 - exp(-t / Problem.background_mtbf_h)`
  (one year by default), so such work still prefers earlier to later, weakly.

Expected failure cost of starting at `t`: `failure_cost * F(t)`. Expected risk removed by
starting at `t`: `failure_cost * (1 - F(t))`, the failure cost the maintenance is expected to
prevent. An order left unscheduled carries `failure_cost * F(horizon_h)` and removes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import pairwise

from pdm_scheduling.model import Order, Problem, Quantiles


def tail_tau(quantiles: Quantiles) -> float:
    """The time constant of the exponential tail beyond the last quantile, in hours."""
    points = [(0.0, 0.0)] + [(h, p) for p, h in quantiles]
    last_h, last_p = points[-1]
    prev_h, prev_p = points[-2]
    if last_h > prev_h:
        slope = (last_p - prev_p) / (last_h - prev_h)
    elif last_h > 0:
        slope = last_p / last_h
    else:
        return 1.0
    return max((1.0 - last_p) / slope, 1e-6)


def rul_cdf(quantiles: Quantiles) -> Callable[[float], float]:
    """The RUL distribution function through `quantiles` (see the module docstring)."""
    points = [(0.0, 0.0)] + [(h, p) for p, h in quantiles]
    last_h, last_p = points[-1]
    tau = tail_tau(quantiles)

    def cdf(t: float) -> float:
        if t < 0:
            return 0.0
        if t >= last_h:
            return 1.0 - (1.0 - last_p) * math.exp(-(t - last_h) / tau)
        value = 0.0
        for (h0, p0), (h1, p1) in pairwise(points):
            if t >= h1:
                value = p1  # right-continuous at a jump
                continue
            if h1 > h0 and t >= h0:
                value = p0 + (p1 - p0) * (t - h0) / (h1 - h0)
            break
        return value

    return cdf


def failure_cdf(order: Order, problem: Problem) -> Callable[[float], float]:
    """`F(t)` for `order`: P(the asset fails before hour t)."""
    quantiles = order.quantiles
    if quantiles is not None:
        return rul_cdf(quantiles)
    due = order.due_h
    if due is not None:
        return lambda t: 1.0 if t >= due else 0.0
    mtbf = problem.background_mtbf_h
    return lambda t: 1.0 - math.exp(-max(t, 0.0) / mtbf)


def expected_failure_cost(order: Order, problem: Problem, start_h: int | None) -> float:
    """`failure_cost * F(start)`; for an unscheduled order (`None`), `F(horizon_h)`."""
    t = problem.horizon_h if start_h is None else start_h
    return order.failure_cost * failure_cdf(order, problem)(t)


def risk_removed(order: Order, problem: Problem, start_h: int | None) -> float:
    """`failure_cost * (1 - F(start))`; 0 for an unscheduled order."""
    if start_h is None:
        return 0.0
    return order.failure_cost * (1.0 - failure_cdf(order, problem)(start_h))
