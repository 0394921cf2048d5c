"""Optimal preventive-maintenance (PM) interval by age replacement, for a Weibull life.

Why: replacing too early wastes remaining life, too late pays for failures. Under an
age-replacement policy (replace at failure, or preventively at age `T`, whichever comes first;
both renew the item) the long-run cost per unit time is the renewal-reward ratio

    C(T) = (Cp * R(T) + Cf * (1 - R(T))) / integral_0^T R(t) dt

(expected cost per cycle over expected cycle length). The scheduler wants the `T` that
minimises it, and the saving against running to failure, whose cost rate is `Cf / MTBF`
(`C(T)` as `T -> infinity`).

A finite optimum exists only with wear-out (`beta > 1`, increasing hazard) and `Cp < Cf`: with
a constant or decreasing hazard a new part is no better than the old one, so PM only adds cost.
Those cases return no interval and the reason. For `beta` barely above 1 the optimum can lie
where reliability is already ~0; that is reported as run-to-failure too, since the two cost
the same to many digits.

`integral_0^T R = MTBF * P(1/beta, (T/eta)**beta)` with `P` the regularised lower incomplete
gamma function, so `C(T)` is evaluated in closed form. The minimum is found by a scan on a log
grid of `T / eta` that brackets it, refined by Brent's method on `log T` (scipy.optimize).

Reference example (reliability package, `optimal_replacement_time` docs, after ReliaSoft):
eta = 1000, beta = 2.5, Cp = 1, Cf = 5 prints "optimal replacement time 493.19, minimum cost
per unit time 0.0035". The exact minimiser of `C(T)` is 493.05 (cost rate 0.0034620): the
published 493.19 is the best point of that package's 10 000-point grid over [1, 3000] (step
0.30), not the continuous optimum. The tests check both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, special

NO_WEAROUT = "wear-out absent: run to failure"
PM_NOT_CHEAPER = "preventive cost not below corrective cost: run to failure"
OPTIMUM_BEYOND_LIFE = "optimum lies where reliability is ~0: run to failure"

# Search range in T / eta: below, PM at a tiny age; above, reliability is below ~1e-12.
_U_MIN = 1e-8
_RELIABILITY_FLOOR = 1e-12
_GRID_POINTS = 800


def _check_positive(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be positive and finite, got {value!r}")
    return value


def _mtbf(beta: float, eta: float) -> float:
    return eta * math.gamma(1 + 1 / beta)


def _cost_rate_u(
    u: np.ndarray, beta: float, eta: float, cost_preventive: float, cost_corrective: float
) -> np.ndarray:
    """C(T) at T = u * eta, vectorised."""
    z = u**beta
    failed = -np.expm1(-z)  # 1 - R(T)
    expected_cycle = _mtbf(beta, eta) * special.gammainc(1 / beta, z)
    rate = (cost_preventive + (cost_corrective - cost_preventive) * failed) / expected_cycle
    return np.asarray(rate, dtype=float)


def age_replacement_cost_rate(
    interval: float, beta: float, eta: float, cost_preventive: float, cost_corrective: float
) -> float:
    """Long-run cost per unit time of replacing at failure or at age `interval`:
    `(Cp R(T) + Cf (1 - R(T))) / integral_0^T R(t) dt`. `interval = inf` gives run to
    failure, `Cf / MTBF`."""
    beta, eta = _check_positive("beta", beta), _check_positive("eta", eta)
    _check_positive("cost_preventive", cost_preventive)
    _check_positive("cost_corrective", cost_corrective)
    if math.isinf(interval):
        return cost_corrective / _mtbf(beta, eta)
    interval = _check_positive("interval", interval)
    u = np.asarray([interval / eta])
    return float(_cost_rate_u(u, beta, eta, cost_preventive, cost_corrective)[0])


@dataclass(frozen=True, slots=True)
class PMInterval:
    """The optimal age-replacement interval, or why there is none.

    `interval` is None (and `reason` says why) when running to failure is the best policy.
    `cost_rate` is the cost per unit time at the interval; `run_to_failure_cost_rate` the
    `Cf / MTBF` to compare with; `reliability_at_interval` the share of items expected to
    reach their PM without failing."""

    beta: float
    eta: float
    cost_preventive: float
    cost_corrective: float
    interval: float | None
    cost_rate: float | None
    reliability_at_interval: float | None
    run_to_failure_cost_rate: float
    reason: str | None = None

    @property
    def saving(self) -> float | None:
        """Fraction of the run-to-failure cost rate saved by PM at the interval."""
        if self.cost_rate is None:
            return None
        return 1 - self.cost_rate / self.run_to_failure_cost_rate

    def to_dict(self) -> dict[str, Any]:
        return {
            "beta": self.beta,
            "eta": self.eta,
            "cost_preventive": self.cost_preventive,
            "cost_corrective": self.cost_corrective,
            "interval": self.interval,
            "cost_rate": self.cost_rate,
            "reliability_at_interval": self.reliability_at_interval,
            "run_to_failure_cost_rate": self.run_to_failure_cost_rate,
            "saving": self.saving,
            "reason": self.reason,
        }


def optimal_pm_interval(
    beta: float, eta: float, cost_preventive: float, cost_corrective: float
) -> PMInterval:
    """The age `T*` minimising `age_replacement_cost_rate`, for a Weibull(`beta`, `eta`) life
    and costs `Cp` (planned replacement) and `Cf` (failure: repair plus its consequences).
    `T*` is in the unit of `eta`."""
    beta, eta = _check_positive("beta", beta), _check_positive("eta", eta)
    cp = _check_positive("cost_preventive", cost_preventive)
    cf = _check_positive("cost_corrective", cost_corrective)
    run_to_failure = cf / _mtbf(beta, eta)

    def none(reason: str) -> PMInterval:
        return PMInterval(beta, eta, cp, cf, None, None, None, run_to_failure, reason)

    if beta <= 1:
        return none(NO_WEAROUT)
    if cp >= cf:
        return none(PM_NOT_CHEAPER)

    u_max = (-math.log(_RELIABILITY_FLOOR)) ** (1 / beta)
    x = np.linspace(math.log(_U_MIN), math.log(u_max), _GRID_POINTS)
    costs = _cost_rate_u(np.exp(x), beta, eta, cp, cf)
    i = int(np.argmin(costs))
    if i == len(x) - 1:
        return none(OPTIMUM_BEYOND_LIFE)
    if i == 0:  # Cf / Cp beyond any practical ratio; not reachable for sane inputs
        raise ValueError("optimum below the search range: check the costs")

    def objective(log_u: float) -> float:
        return float(_cost_rate_u(np.asarray([math.exp(log_u)]), beta, eta, cp, cf)[0])

    bracket = (float(x[i - 1]), float(x[i]), float(x[i + 1]))
    try:
        res = optimize.minimize_scalar(
            objective, bracket=bracket, method="brent", options={"xtol": 1e-12}
        )
    except ValueError:  # flat to machine precision: ties in the bracket
        res = optimize.minimize_scalar(
            objective,
            bounds=(bracket[0], bracket[2]),
            method="bounded",
            options={"xatol": 1e-12},
        )
    log_u = float(res.x) if res.fun <= costs[i] else float(x[i])
    interval = math.exp(log_u) * eta
    return PMInterval(
        beta=beta,
        eta=eta,
        cost_preventive=cp,
        cost_corrective=cf,
        interval=interval,
        cost_rate=age_replacement_cost_rate(interval, beta, eta, cp, cf),
        reliability_at_interval=math.exp(-((interval / eta) ** beta)),
        run_to_failure_cost_rate=run_to_failure,
    )
