"""2-parameter Weibull life analysis from right-censored lifetimes, per (asset type, failure mode).

Why: preventive-maintenance intervals, spares and risk all start from a life distribution, and
when we look at a fleet most units have *not* failed yet. Dropping the survivors, or counting
their running time as if they had failed, makes lives look shorter than they are (the
characteristic life comes out low) and the scheduler then over-maintains. Maximum likelihood
with right censoring uses a survivor's running time for what it is: "lived at least this long".

Model: reliability `R(t) = exp(-(t / eta) ** beta)`, with shape `beta` (< 1 infant mortality,
1 random failures, > 1 wear-out) and scale `eta`, the characteristic life by which 63.2 % of
units have failed. The fit is lifelines' `WeibullFitter`, which names the scale `lambda_` and the
shape `rho_`; lifelines' `percentile(p)` is the time at which *survival* is `p`, so B10 is
`percentile(0.9)` there (here: `bx_life(10)`).

Confidence bounds are Fisher-matrix bounds on the log scale (`eta * exp(+-z * se / eta)`), the
usual choice in reliability engineering: unlike lifelines' Wald bounds on the natural scale
(`summary`), they cannot go below zero for small samples, and they agree with them as the
sample grows. The covariance comes from lifelines' `variance_matrix_`.

Durations are rescaled to order one before fitting (lifelines advises it) and the results
scaled back, so hours, seconds or cycles all fit equally well.

`lifetimes_from_history` turns an event history (install or first-seen time, confirmed failure
timestamps, "now") into these censored lifetimes.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

#: Default two-sided confidence level of the parameter bounds.
DEFAULT_CONFIDENCE = 0.95


class WeibullDataError(ValueError):
    """The lifetimes cannot be fitted as given (too few failures, bad durations, ...)."""


class WeibullFitError(RuntimeError):
    """The likelihood maximisation did not converge or its information matrix is unusable."""


def _check_positive(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be positive and finite, got {value!r}")
    return value


def _check_percent(x: float) -> float:
    x = float(x)
    if not 0 < x < 100:
        raise ValueError(f"x is a percentage of units failed, strictly between 0 and 100: {x!r}")
    return x


@dataclass(frozen=True, slots=True)
class Weibull:
    """A 2-parameter Weibull life distribution: shape `beta`, scale (characteristic life) `eta`.

    Times are in whatever unit `eta` is in (the platform uses hours)."""

    beta: float
    eta: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "beta", _check_positive("beta", self.beta))
        object.__setattr__(self, "eta", _check_positive("eta", self.eta))

    def cumulative_hazard(self, t: float) -> float:
        """`H(t) = (t / eta) ** beta`; `R = exp(-H)`."""
        return 0.0 if t <= 0 else float((t / self.eta) ** self.beta)

    def reliability(self, t: float) -> float:
        """Probability of surviving past `t`."""
        return math.exp(-self.cumulative_hazard(t))

    def cdf(self, t: float) -> float:
        """Probability of failing by `t` (`1 - R(t)`, computed without cancellation)."""
        return -math.expm1(-self.cumulative_hazard(t))

    def hazard(self, t: float) -> float:
        """Instantaneous failure rate at age `t`; increasing in `t` exactly when `beta > 1`."""
        if t <= 0:
            return math.inf if self.beta < 1 else (1 / self.eta if self.beta == 1 else 0.0)
        return float(self.beta / self.eta * (t / self.eta) ** (self.beta - 1))

    def bx_life(self, x: float) -> float:
        """B-x life: the age by which `x` percent of units have failed (`bx_life(10)` is B10)."""
        k = -math.log1p(-_check_percent(x) / 100)
        return float(self.eta * k ** (1 / self.beta))

    @property
    def b10(self) -> float:
        return self.bx_life(10)

    @property
    def mean(self) -> float:
        """Mean life `eta * Gamma(1 + 1/beta)`: the MTBF when a repair renews the item."""
        return self.eta * math.gamma(1 + 1 / self.beta)

    @property
    def mtbf(self) -> float:
        return self.mean

    def conditional_failure_probability(self, age: float, horizon: float) -> float:
        """Probability that a unit that has survived to `age` fails within the next `horizon`:
        `1 - R(age + horizon) / R(age)`. This, not the unconditional CDF, is the probability
        a risk matrix needs for an asset already in service."""
        if age < 0 or horizon < 0:
            raise ValueError("age and horizon must not be negative")
        delta = self.cumulative_hazard(age + horizon) - self.cumulative_hazard(age)
        return -math.expm1(-delta)

    def to_dict(self) -> dict[str, Any]:
        return {"beta": self.beta, "eta": self.eta, "b10": self.b10, "mtbf": self.mean}


@dataclass(frozen=True, slots=True)
class WeibullFit:
    """A maximum-likelihood Weibull fit with its uncertainty.

    `beta_lower/upper` and `eta_lower/upper` are two-sided bounds at `confidence`;
    `var_eta`, `var_beta`, `cov_eta_beta` the asymptotic covariance of the estimates (inverse
    observed information), kept so that derived quantities (B-x life) get bounds too."""

    beta: float
    eta: float
    beta_lower: float
    beta_upper: float
    eta_lower: float
    eta_upper: float
    confidence: float
    n_failures: int
    n_censored: int
    log_likelihood: float
    var_eta: float
    var_beta: float
    cov_eta_beta: float

    @property
    def distribution(self) -> Weibull:
        return Weibull(self.beta, self.eta)

    @property
    def _z(self) -> float:
        return float(stats.norm.ppf(0.5 + self.confidence / 2))

    def bx_life(self, x: float) -> float:
        """B-x life of the fitted distribution (see `Weibull.bx_life`)."""
        return self.distribution.bx_life(x)

    def bx_life_bounds(self, x: float) -> tuple[float, float]:
        """Bounds on the B-x life at `confidence`, by the delta method on `log Bx`
        (`log eta + log(-log(1 - x/100)) / beta`). The lower bound is the conservative life
        to plan with."""
        bx = self.bx_life(x)
        log_k = math.log(-math.log1p(-_check_percent(x) / 100))
        g_eta, g_beta = 1 / self.eta, -log_k / self.beta**2
        var = (
            g_eta**2 * self.var_eta
            + g_beta**2 * self.var_beta
            + 2 * g_eta * g_beta * self.cov_eta_beta
        )
        half = self._z * math.sqrt(max(var, 0.0))
        return bx * math.exp(-half), bx * math.exp(half)

    @property
    def b10(self) -> float:
        return self.bx_life(10)

    @property
    def mtbf(self) -> float:
        """`eta * Gamma(1 + 1/beta)`."""
        return self.distribution.mean

    def to_dict(self) -> dict[str, Any]:
        b10_lower, b10_upper = self.bx_life_bounds(10)
        return {
            "beta": self.beta,
            "eta": self.eta,
            "beta_lower": self.beta_lower,
            "beta_upper": self.beta_upper,
            "eta_lower": self.eta_lower,
            "eta_upper": self.eta_upper,
            "confidence": self.confidence,
            "b10": self.b10,
            "b10_lower": b10_lower,
            "b10_upper": b10_upper,
            "mtbf": self.mtbf,
            "n_failures": self.n_failures,
            "n_censored": self.n_censored,
            "log_likelihood": self.log_likelihood,
            "var_eta": self.var_eta,
            "var_beta": self.var_beta,
            "cov_eta_beta": self.cov_eta_beta,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WeibullFit:
        """Inverse of `to_dict` (derived fields such as `b10` and `mtbf` are recomputed)."""
        floats = [
            "beta",
            "eta",
            "beta_lower",
            "beta_upper",
            "eta_lower",
            "eta_upper",
            "confidence",
            "log_likelihood",
            "var_eta",
            "var_beta",
            "cov_eta_beta",
        ]
        return cls(
            **{name: float(data[name]) for name in floats},
            n_failures=int(data["n_failures"]),
            n_censored=int(data["n_censored"]),
        )


def _as_inputs(durations: ArrayLike, observed: ArrayLike | None) -> tuple[np.ndarray, np.ndarray]:
    try:
        t = np.asarray(durations, dtype=float)
    except (TypeError, ValueError) as exc:
        raise WeibullDataError(f"durations must be numbers: {exc}") from None
    if t.ndim != 1:
        raise WeibullDataError(f"durations must be one-dimensional, got shape {t.shape}")
    bad = np.flatnonzero(~np.isfinite(t) | (t <= 0))
    if bad.size:
        i = int(bad[0])
        raise WeibullDataError(
            f"durations must be positive and finite: {bad.size} are not"
            f" (first at index {i}: {t[i]!r})"
        )
    if observed is None:
        e = np.ones(t.shape, dtype=bool)
    else:
        raw = np.asarray(observed)
        if raw.ndim != 1 or raw.shape != t.shape:
            raise WeibullDataError(
                f"durations and event flags have mismatched lengths: {t.size} and {raw.size}"
            )
        if raw.dtype != bool:
            try:
                ok = bool(np.isin(raw, (0, 1)).all())
            except TypeError:
                ok = False
            if not ok:
                raise WeibullDataError("event flags must be booleans (or 0/1)")
        e = raw.astype(bool)
    n_failures = int(e.sum())
    if n_failures < 2:
        raise WeibullDataError(
            f"at least 2 failures are needed to fit a 2-parameter Weibull, got {n_failures}"
            f" (and {int((~e).sum())} censored)"
        )
    return t, e


def fit_weibull(
    durations: ArrayLike,
    observed: ArrayLike | None = None,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
) -> WeibullFit:
    """Fit a 2-parameter Weibull by maximum likelihood.

    `durations`: lifetimes (> 0), failures and survivors alike. `observed`: per duration, True
    when it ended in a failure, False when the unit was still running (right-censored); None
    means all failed. Raises `WeibullDataError` for unusable input (mismatched lengths, zero,
    negative or non-finite durations, fewer than 2 failures, all failures at one time with no
    survivors) and `WeibullFitError` when the optimiser fails or the information matrix is
    unusable (e.g. tied failures with only shorter survivors: the shape has no finite MLE)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence!r}")
    t, e = _as_inputs(durations, observed)
    if np.unique(t[e]).size < 2 and not (~e).any():
        raise WeibullDataError("all failures at one identical time: the shape is unbounded")

    # lifelines is heavy to import (pandas, autograd); only fits pay for it.
    from lifelines import WeibullFitter
    from lifelines.exceptions import ConvergenceError

    scale = float(np.median(t))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its warnings are checked below, by value
            fitter = WeibullFitter(alpha=1 - confidence).fit(t / scale, e)
    except ConvergenceError:
        raise WeibullFitError(
            "Weibull maximum likelihood did not converge; typical causes are failures all at"
            " one time or durations spanning many orders of magnitude"
        ) from None

    lam, rho = float(fitter.lambda_), float(fitter.rho_)
    cov = np.asarray(fitter.variance_matrix_.loc[["lambda_", "rho_"], ["lambda_", "rho_"]])
    if not (np.isfinite(cov).all() and cov[0, 0] > 0 and cov[1, 1] > 0):
        raise WeibullFitError("the information matrix is singular: no confidence bounds")
    eta, beta = lam * scale, rho
    var_eta, var_beta, cov_eb = cov[0, 0] * scale**2, cov[1, 1], cov[0, 1] * scale
    n_failures = int(e.sum())
    # Each failure's density picks up 1/scale under the rescaling; survival terms do not.
    log_likelihood = float(fitter.log_likelihood_) - n_failures * math.log(scale)

    z = float(stats.norm.ppf(0.5 + confidence / 2))
    se_eta, se_beta = math.sqrt(var_eta), math.sqrt(var_beta)
    return WeibullFit(
        beta=beta,
        eta=eta,
        beta_lower=beta * math.exp(-z * se_beta / beta),
        beta_upper=beta * math.exp(z * se_beta / beta),
        eta_lower=eta * math.exp(-z * se_eta / eta),
        eta_upper=eta * math.exp(z * se_eta / eta),
        confidence=confidence,
        n_failures=n_failures,
        n_censored=int(t.size - n_failures),
        log_likelihood=log_likelihood,
        var_eta=float(var_eta),
        var_beta=float(var_beta),
        cov_eta_beta=float(cov_eb),
    )


def weibull_log_likelihood(
    durations: ArrayLike, observed: ArrayLike | None, beta: float, eta: float
) -> float:
    """The right-censored Weibull log-likelihood: `sum log f(t)` over failures plus
    `sum log R(t)` over survivors. Independent of lifelines (used to check fits)."""
    t = np.asarray(durations, dtype=float)
    e = np.ones(t.shape, dtype=bool) if observed is None else np.asarray(observed, dtype=bool)
    z = (t / eta) ** beta
    log_f = np.log(beta / eta) + (beta - 1) * np.log(t / eta) - z
    return float(np.sum(np.where(e, log_f, -z)))


# --- lifetimes from an event history -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Failure:
    """One confirmed failure of an asset, in one failure mode."""

    ts: datetime
    mode: str


@dataclass(frozen=True, slots=True)
class AssetHistory:
    """What is known about one asset's life: since when it is in service, and its confirmed
    failures (any order; exact duplicates are counted once).

    `in_service_known`: True when `in_service` is the install (or last overhaul) time. False
    when it is only the first time the platform saw the asset: the life already spent before
    is unknown, so the first interval of every failure mode (from `in_service`) is left out;
    later intervals start at a known failure and are used in full."""

    asset_id: str
    asset_type: str
    in_service: datetime
    failures: Sequence[Failure] = ()
    in_service_known: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "failures", tuple(self.failures))


@dataclass(frozen=True, slots=True)
class Lifetimes:
    """Censored lifetimes of one (asset type, failure mode): `durations[i]` in the unit asked
    for, `observed[i]` True for a failure and False for a censored (still running) interval,
    `asset_ids[i]` the asset it came from."""

    asset_type: str
    failure_mode: str
    durations: tuple[float, ...]
    observed: tuple[bool, ...]
    asset_ids: tuple[str, ...] = field(default=())

    @property
    def n_failures(self) -> int:
        return sum(self.observed)

    @property
    def n_censored(self) -> int:
        return len(self.observed) - self.n_failures

    def fit(self, confidence: float = DEFAULT_CONFIDENCE) -> WeibullFit:
        """`fit_weibull` on these lifetimes."""
        return fit_weibull(self.durations, self.observed, confidence=confidence)

    def to_dict(self) -> dict[str, Any]:
        return {
            "asset_type": self.asset_type,
            "failure_mode": self.failure_mode,
            "durations": list(self.durations),
            "observed": list(self.observed),
            "asset_ids": list(self.asset_ids),
            "n_failures": self.n_failures,
            "n_censored": self.n_censored,
        }


def lifetimes_from_history(
    histories: Iterable[AssetHistory],
    now: datetime,
    *,
    unit: timedelta = timedelta(hours=1),
    renew_on_any_failure: bool = False,
) -> dict[tuple[str, str], Lifetimes]:
    """Times between failures per (asset type, failure mode), the running interval of every
    asset censored at `now`.

    For each asset and each failure mode seen on its asset type: the intervals in service ->
    1st failure of that mode -> 2nd -> ... are failures; the interval from the last one (or
    from in service, if the asset never failed that way) to `now` is censored. An asset that
    never failed in a mode still counts, as a survivor: leaving survivors out is what biases
    lives short.

    `renew_on_any_failure=False` (default): a repair restores only the failed mode (a new seal
    does not renew a bearing), so other modes' failures do not interrupt an interval. True: any
    failure renews the whole asset (replacement or overhaul), so the interval of every other
    mode ends there too, censored (competing risks).

    Durations are in `unit` (hours by default). Zero-length intervals (a failure logged at the
    in-service instant, the running interval when a failure is at `now`) carry no life and are
    left out. Raises ValueError for failures before `in_service` or after `now`, and for a mix
    of naive and timezone-aware datetimes. Returns entries sorted by key."""
    if unit <= timedelta(0):
        raise ValueError("unit must be a positive timedelta")
    histories = list(histories)
    aware = now.tzinfo is not None
    for h in histories:
        stamps = [h.in_service, *(f.ts for f in h.failures)]
        if any((ts.tzinfo is not None) != aware for ts in stamps):
            raise ValueError(f"asset {h.asset_id}: mix of naive and timezone-aware datetimes")
        if h.in_service > now:
            raise ValueError(f"asset {h.asset_id}: in service at {h.in_service}, after now")
        for f in h.failures:
            if not h.in_service <= f.ts <= now:
                raise ValueError(
                    f"asset {h.asset_id}: failure at {f.ts} outside [{h.in_service}, {now}]"
                )

    modes_by_type: dict[str, set[str]] = defaultdict(set)
    for h in histories:
        modes_by_type[h.asset_type].update(f.mode for f in h.failures)

    out: dict[tuple[str, str], tuple[list[float], list[bool], list[str]]] = {}
    for h in histories:
        by_time: dict[datetime, set[str]] = defaultdict(set)
        for f in h.failures:
            by_time[f.ts].add(f.mode)
        times = sorted(by_time)
        for mode in modes_by_type[h.asset_type]:
            # (end of interval, failed in this mode?) for each renewal that ends an interval
            if renew_on_any_failure:
                ends = [(ts, mode in by_time[ts]) for ts in times]
            else:
                ends = [(ts, True) for ts in times if mode in by_time[ts]]
            ends.append((now, False))
            durations, observed, ids = out.setdefault((h.asset_type, mode), ([], [], []))
            start, first = h.in_service, True
            for end, failed in ends:
                if (not first or h.in_service_known) and end > start:
                    durations.append((end - start) / unit)
                    observed.append(failed)
                    ids.append(h.asset_id)
                start, first = end, False
    return {
        key: Lifetimes(key[0], key[1], tuple(d), tuple(o), tuple(i))
        for key, (d, o, i) in sorted(out.items())
        if d
    }


def conditional_failure_probability(age: float, horizon: float, beta: float, eta: float) -> float:
    """`Weibull(beta, eta).conditional_failure_probability(age, horizon)`."""
    return Weibull(beta, eta).conditional_failure_probability(age, horizon)
