"""The scheduling problem as plain, frozen data: who can work when, what must be done, and what
it costs. Every other module reads these types and nothing else, so the scheduler service can
build a `Problem` from its database rows and hand it over without the optimiser knowing where
the data came from.

Time is in whole hours from "now" (hour 0 is the slot starting now); intervals are half-open
`(start_h, end_h)`. Money is in one currency, as floats; the optimiser converts to integers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

Span = tuple[int, int]
"""A half-open interval of hours, `(start_h, end_h)`."""


def _check_spans(spans: tuple[Span, ...], what: str) -> None:
    for span in spans:
        if len(span) != 2 or span[0] >= span[1]:
            raise ValueError(f"{what}: {span!r} is not a non-empty (start_h, end_h) interval")


@dataclass(frozen=True)
class Technician:
    """One technician: skills, working shifts (hours from now) and cost per hour of work.

    Shifts of one technician that touch or overlap form one working block: a job may run
    through the hand-over from one to the next (a double shift), never across a gap.
    """

    id: str
    skills: frozenset[str]
    shifts: tuple[Span, ...]
    hourly_cost: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "skills", frozenset(self.skills))
        object.__setattr__(self, "shifts", tuple(tuple(s) for s in self.shifts))
        _check_spans(self.shifts, f"technician {self.id} shift")
        if self.hourly_cost < 0:
            raise ValueError(f"technician {self.id}: hourly_cost must be >= 0")


@dataclass(frozen=True)
class Window:
    """When maintenance may happen on one asset (planned stops, changeovers).

    An asset with no `Window` may be worked on at any time; several windows of one asset are
    united; an asset whose only windows are empty may never be worked on.
    """

    asset_id: str
    spans: tuple[Span, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "spans", tuple(tuple(s) for s in self.spans))
        _check_spans(self.spans, f"window of asset {self.asset_id}")


@dataclass(frozen=True)
class Budget:
    """A spending limit per period: periods are `[i * period_length_h, (i + 1) *
    period_length_h)`; an order is charged (labour + parts) to the period its start falls in.

    `limit` is either the same limit for every period or one per period (the last one repeats).
    """

    id: str = "default"
    period_length_h: int = 168
    limit: float | tuple[float, ...] = math.inf

    def __post_init__(self) -> None:
        if self.period_length_h < 1:
            raise ValueError(f"budget {self.id}: period_length_h must be >= 1")
        limits = self.limit if isinstance(self.limit, tuple) else (self.limit,)
        if not limits or any(x < 0 for x in limits):
            raise ValueError(f"budget {self.id}: limits must be >= 0")

    def limit_for(self, period: int) -> float:
        if isinstance(self.limit, tuple):
            return self.limit[min(period, len(self.limit) - 1)]
        return self.limit


Quantiles = tuple[tuple[float, float], ...]
"""Remaining-useful-life quantiles, `((probability, hours_from_now), ...)` sorted by
probability."""


@dataclass(frozen=True)
class Order:
    """One maintenance work order.

    - `due_h`: the hour by which the work should be finished (soft: lateness is penalised);
    - `failure_cost`: what a failure before the work starts would cost (repair, scrap, damage);
    - `rul_quantiles`: quantiles of the asset's remaining useful life, e.g.
      `{0.1: 30, 0.5: 60, 0.9: 120}` (probability -> hours from now); see `risk`;
    - `downtime_cost_per_h`: production lost per hour while the asset is worked on;
    - `priority`: >= 0; weighs lateness and the penalty for leaving the order out
      (`1 + priority` times);
    - `budget`: the `Budget.id` it is charged to (labour + `parts_cost`), None for none;
    - `frozen_start` + `frozen_technician`: an order in progress (start 0, duration = the hours
      still to go) or inside the frozen horizon: kept as is unless that is infeasible.
      `frozen_technician` alone pins the technician and leaves the start free.
    - `lateness_cost_per_h`: overrides `Problem.lateness_cost_per_h` for this order.
    """

    id: str
    asset_id: str
    skill: str
    duration_h: int
    due_h: int | None = None
    parts_cost: float = 0.0
    failure_cost: float = 0.0
    rul_quantiles: Mapping[float, float] | Quantiles | None = None
    priority: int = 0
    downtime_cost_per_h: float = 0.0
    frozen_start: int | None = None
    frozen_technician: str | None = None
    budget: str | None = "default"
    lateness_cost_per_h: float | None = None

    def __post_init__(self) -> None:
        if self.duration_h < 1:
            raise ValueError(f"order {self.id}: duration_h must be >= 1")
        if self.priority < 0:
            raise ValueError(f"order {self.id}: priority must be >= 0")
        for name in ("parts_cost", "failure_cost", "downtime_cost_per_h"):
            if getattr(self, name) < 0:
                raise ValueError(f"order {self.id}: {name} must be >= 0")
        if self.lateness_cost_per_h is not None and self.lateness_cost_per_h < 0:
            raise ValueError(f"order {self.id}: lateness_cost_per_h must be >= 0")
        if self.frozen_start is not None:
            if self.frozen_technician is None:
                raise ValueError(f"order {self.id}: frozen_start needs frozen_technician")
            if self.frozen_start < 0:
                raise ValueError(
                    f"order {self.id}: frozen_start < 0; give an order in progress as "
                    "frozen_start=0 with the remaining duration"
                )
        if self.rul_quantiles is not None:
            items = (
                self.rul_quantiles.items()
                if isinstance(self.rul_quantiles, Mapping)
                else self.rul_quantiles
            )
            quantiles = tuple(sorted((float(p), float(h)) for p, h in items))
            _check_quantiles(self.id, quantiles)
            object.__setattr__(self, "rul_quantiles", quantiles)

    @property
    def quantiles(self) -> Quantiles | None:
        """The RUL quantiles, normalised: sorted `(probability, hours)` pairs."""
        q = self.rul_quantiles
        assert q is None or isinstance(q, tuple)
        return q


def _check_quantiles(order_id: str, quantiles: Quantiles) -> None:
    if not quantiles:
        raise ValueError(f"order {order_id}: rul_quantiles is empty (use None)")
    previous_h = 0.0
    previous_p = 0.0
    for p, h in quantiles:
        if not 0.0 < p < 1.0:
            raise ValueError(f"order {order_id}: quantile probability {p} not in (0, 1)")
        if p == previous_p:
            raise ValueError(f"order {order_id}: quantile {p} given twice")
        if h < previous_h or not math.isfinite(h):
            raise ValueError(f"order {order_id}: RUL quantiles must not decrease ({p}: {h})")
        previous_h, previous_p = h, p


@dataclass(frozen=True)
class Problem:
    """Everything the optimiser needs for one planning run.

    - `horizon_h`: every scheduled order ends by this hour;
    - `frozen_until_h`: orders that are not frozen start at or after this hour;
    - `lateness_cost_per_h`: penalty per hour an order ends after `due_h`, times
      `1 + priority`; None = the largest `failure_cost` of the problem (at least 1), so one
      hour late weighs as much as the worst failure: deadlines are kept wherever possible;
    - `background_mtbf_h`: the constant-hazard mean life used for orders with neither RUL
      quantiles nor a deadline (see `risk`);
    - `granularity_h`: the time step; only 1 (hourly) is supported.
    """

    horizon_h: int
    technicians: tuple[Technician, ...]
    orders: tuple[Order, ...]
    windows: tuple[Window, ...] = ()
    budgets: tuple[Budget, ...] = ()
    frozen_until_h: int = 0
    lateness_cost_per_h: float | None = None
    background_mtbf_h: float = 8760.0
    granularity_h: int = 1
    _tech_index: dict[str, Technician] = field(init=False, repr=False, compare=False)
    _window_index: dict[str, tuple[Span, ...]] = field(init=False, repr=False, compare=False)
    _budget_index: dict[str, Budget] = field(init=False, repr=False, compare=False)
    _default_late_rate: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "technicians", tuple(self.technicians))
        object.__setattr__(self, "orders", tuple(self.orders))
        object.__setattr__(self, "windows", tuple(self.windows))
        object.__setattr__(self, "budgets", tuple(self.budgets))
        if self.granularity_h != 1:
            raise ValueError("only an hourly granularity (granularity_h=1) is supported")
        if self.horizon_h < 1:
            raise ValueError("horizon_h must be >= 1")
        if not 0 <= self.frozen_until_h <= self.horizon_h:
            raise ValueError("frozen_until_h must lie in [0, horizon_h]")
        if self.background_mtbf_h <= 0:
            raise ValueError("background_mtbf_h must be > 0")
        for kind, ids in (
            ("technician", [t.id for t in self.technicians]),
            ("order", [o.id for o in self.orders]),
            ("budget", [b.id for b in self.budgets]),
        ):
            if len(set(ids)) != len(ids):
                raise ValueError(f"{kind} ids are not unique")
        object.__setattr__(self, "_tech_index", {t.id: t for t in self.technicians})
        windows: dict[str, tuple[Span, ...]] = {}
        for w in self.windows:
            windows[w.asset_id] = windows.get(w.asset_id, ()) + w.spans
        object.__setattr__(self, "_window_index", windows)
        object.__setattr__(self, "_budget_index", {b.id: b for b in self.budgets})
        rate = self.lateness_cost_per_h
        if rate is None:
            rate = max([1.0, *(o.failure_cost for o in self.orders)])
        object.__setattr__(self, "_default_late_rate", rate)

    def technician(self, tech_id: str) -> Technician | None:
        return self._tech_index.get(tech_id)

    def window_spans(self, asset_id: str) -> tuple[Span, ...] | None:
        """The asset's windows (all of them, unsorted), or None when it may be worked any time."""
        return self._window_index.get(asset_id)

    def budget(self, budget_id: str | None) -> Budget | None:
        return None if budget_id is None else self._budget_index.get(budget_id)

    def late_rate(self, order: Order) -> float:
        """The lateness penalty per hour for `order` (including its priority weight)."""
        rate = order.lateness_cost_per_h
        if rate is None:
            rate = self._default_late_rate
        return rate * (1 + order.priority)
