"""The age-replacement PM interval: the published example, the optimality condition, the
run-to-failure guards, and properties of the optimum."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate

from pdm_reliability.pm_interval import (
    NO_WEAROUT,
    OPTIMUM_BEYOND_LIFE,
    PM_NOT_CHEAPER,
    age_replacement_cost_rate,
    optimal_pm_interval,
)


def test_published_example() -> None:
    """reliability's `optimal_replacement_time(cost_PM=1, cost_CM=5, weibull_alpha=1000,
    weibull_beta=2.5)` prints 493.19 and 0.0035. That package takes the best of 10 000 grid
    points on [1, 3000]; on the same grid our cost rate picks the same point, and the
    continuous optimum is 0.14 (half a grid step) away, at 493.05."""
    result = optimal_pm_interval(beta=2.5, eta=1000, cost_preventive=1, cost_corrective=5)
    assert result.interval is not None and result.cost_rate is not None
    grid = np.linspace(1, 3000, 10_000)
    rates = [age_replacement_cost_rate(t, 2.5, 1000, 1, 5) for t in grid]
    assert round(float(grid[int(np.argmin(rates))]), 2) == 493.19
    assert abs(result.interval - 493.19) < (grid[1] - grid[0]) / 2
    assert result.interval == pytest.approx(493.05, abs=0.01)
    assert round(result.cost_rate, 4) == 0.0035
    assert result.cost_rate == pytest.approx(0.0034620, abs=1e-7)
    # run to failure: Cf / MTBF = 5 / (1000 * Gamma(1.4))
    assert result.run_to_failure_cost_rate == pytest.approx(5 / (1000 * math.gamma(1.4)))
    assert result.run_to_failure_cost_rate == pytest.approx(0.0056353, abs=1e-7)
    assert result.saving == pytest.approx(1 - 0.0034620 / 0.0056353, abs=1e-4)
    assert result.reliability_at_interval == pytest.approx(math.exp(-(0.49305**2.5)), rel=1e-4)
    assert result.reason is None


def test_cost_rate_matches_numerical_integration() -> None:
    beta, eta, cp, cf = 3.0, 200.0, 2.0, 30.0
    for t in (5.0, 80.0, 200.0, 650.0):
        r = math.exp(-((t / eta) ** beta))
        cycle, _ = integrate.quad(lambda x: math.exp(-((x / eta) ** beta)), 0, t)
        expected = (cp * r + cf * (1 - r)) / cycle
        assert age_replacement_cost_rate(t, beta, eta, cp, cf) == pytest.approx(expected)
    assert age_replacement_cost_rate(math.inf, beta, eta, cp, cf) == pytest.approx(
        cf / (eta * math.gamma(1 + 1 / beta))
    )


@pytest.mark.parametrize("beta", [1.0, 0.7, 0.3])
def test_without_wearout_there_is_no_finite_optimum(beta: float) -> None:
    result = optimal_pm_interval(beta, 1000, 1, 5)
    assert result.interval is None and result.cost_rate is None and result.saving is None
    assert result.reason == NO_WEAROUT == "wear-out absent: run to failure"
    assert result.run_to_failure_cost_rate == pytest.approx(5 / (1000 * math.gamma(1 + 1 / beta)))
    assert json.loads(json.dumps(result.to_dict()))["interval"] is None


def test_pm_dearer_than_a_failure_is_run_to_failure() -> None:
    assert optimal_pm_interval(3.0, 1000, 5, 5).reason == PM_NOT_CHEAPER
    assert optimal_pm_interval(3.0, 1000, 8, 5).interval is None


def test_barely_wearing_out_with_a_cheap_failure_is_run_to_failure() -> None:
    result = optimal_pm_interval(1.2, 1000, 1, 1.5)
    assert result.interval is None
    assert result.reason == OPTIMUM_BEYOND_LIFE


@pytest.mark.parametrize(
    ("interval", "beta", "eta", "cp", "cf"),
    [(0, 2, 1, 1, 5), (-1, 2, 1, 1, 5), (1, 0, 1, 1, 5), (1, 2, -1, 1, 5), (1, 2, 1, 0, 5)],
)
def test_bad_input_raises(interval: float, beta: float, eta: float, cp: float, cf: float) -> None:
    with pytest.raises(ValueError):
        age_replacement_cost_rate(interval, beta, eta, cp, cf)
    if interval > 0:
        with pytest.raises(ValueError):
            optimal_pm_interval(beta, eta, cp, cf)


wearout = st.floats(1.5, 6.0)
ratios = st.floats(3.0, 200.0)  # Cf / Cp


@settings(max_examples=60, deadline=None)
@given(wearout, st.floats(1.0, 1e5), ratios)
def test_the_optimum_beats_its_neighbours_and_running_to_failure(
    beta: float, eta: float, ratio: float
) -> None:
    result = optimal_pm_interval(beta, eta, 1.0, ratio)
    assert result.interval is not None and result.cost_rate is not None
    t = result.interval
    for neighbour in (t * 0.98, t * 0.999, t * 1.001, t * 1.02):
        assert result.cost_rate <= age_replacement_cost_rate(neighbour, beta, eta, 1.0, ratio) * (
            1 + 1e-12
        )
    assert result.cost_rate < result.run_to_failure_cost_rate
    # First-order condition of the renewal-reward ratio: h(T) * int_0^T R - F(T) = Cp/(Cf-Cp)
    z = (t / eta) ** beta
    hazard = beta / eta * (t / eta) ** (beta - 1)
    failed = -math.expm1(-z)
    cycle, _ = integrate.quad(lambda x: math.exp(-((x / eta) ** beta)), 0, t, epsrel=1e-12)
    assert hazard * cycle - failed == pytest.approx(1 / (ratio - 1), rel=1e-5)


@settings(max_examples=40, deadline=None)
@given(wearout, ratios, st.floats(1e-3, 1e4))
def test_the_interval_scales_with_eta(beta: float, ratio: float, k: float) -> None:
    base = optimal_pm_interval(beta, 100.0, 1.0, ratio).interval
    scaled = optimal_pm_interval(beta, 100.0 * k, 1.0, ratio).interval
    assert base is not None and scaled is not None
    assert scaled == pytest.approx(base * k, rel=1e-6)


@settings(max_examples=40, deadline=None)
@given(wearout, ratios, st.floats(1.1, 5.0))
def test_dearer_failures_mean_earlier_maintenance(beta: float, ratio: float, more: float) -> None:
    cheap = optimal_pm_interval(beta, 1000.0, 1.0, ratio).interval
    dear = optimal_pm_interval(beta, 1000.0, 1.0, ratio * more).interval
    assert cheap is not None and dear is not None
    assert dear < cheap
