"""F(t) from RUL quantiles and the integer objective built on it."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdm_scheduling import Order, Problem, Technician, failure_cdf, rul_cdf
from pdm_scheduling.costs import failure_points, objective, order_costs, spend_cents
from pdm_scheduling.risk import expected_failure_cost, risk_removed, tail_tau

TECH = Technician("T", frozenset({"m"}), ((0, 100),), 50.0)


def problem(*orders: Order, horizon: int = 100) -> Problem:
    return Problem(horizon_h=horizon, technicians=(TECH,), orders=orders)


def test_cdf_passes_through_the_quantiles_and_is_linear_between():
    cdf = rul_cdf(((0.1, 30.0), (0.5, 60.0), (0.9, 120.0)))
    assert cdf(0) == 0.0
    assert cdf(30) == pytest.approx(0.1)
    assert cdf(60) == pytest.approx(0.5)
    assert cdf(120) == pytest.approx(0.9)
    assert cdf(15) == pytest.approx(0.05)
    assert cdf(45) == pytest.approx(0.3)
    assert cdf(90) == pytest.approx(0.7)


def test_tail_is_exponential_and_continues_the_last_slope():
    quantiles = ((0.1, 30.0), (0.5, 60.0), (0.9, 120.0))
    cdf = rul_cdf(quantiles)
    tau = tail_tau(quantiles)
    assert tau == pytest.approx(0.1 / (0.4 / 60))  # (1 - p90) / slope of the last piece
    assert cdf(120 + tau) == pytest.approx(1 - 0.1 * math.exp(-1))
    eps = 1e-4  # the density is continuous at the last quantile
    left = (cdf(120) - cdf(120 - eps)) / eps
    right = (cdf(120 + eps) - cdf(120)) / eps
    assert right == pytest.approx(left, rel=1e-3)
    assert cdf(10_000) == pytest.approx(1.0)


def test_quantiles_at_one_hour_jump_and_at_zero_start_high():
    cdf = rul_cdf(((0.1, 0.0), (0.5, 10.0), (0.9, 10.0)))
    assert cdf(0) == pytest.approx(0.1)
    assert cdf(9.999) < 0.5
    assert cdf(10) == pytest.approx(0.9)  # right-continuous at the jump
    assert cdf(11) > 0.9


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0, 500), min_size=1, max_size=4),
    st.lists(st.floats(0.01, 0.99), min_size=1, max_size=4, unique=True),
)
def test_cdf_is_a_distribution_function(hours, probabilities):
    quantiles = tuple(zip(sorted(probabilities), sorted(hours), strict=False))
    cdf = rul_cdf(quantiles)
    values = [cdf(t) for t in range(0, 2000, 7)]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert values == sorted(values)
    for p, h in quantiles:
        if sum(1 for _, h2 in quantiles if h2 == h) == 1:
            assert cdf(h) == pytest.approx(p)


def test_without_rul_a_deadline_is_a_step_and_nothing_is_a_small_constant_hazard():
    due = Order("o", "A", "m", 2, due_h=10, failure_cost=100.0)
    none = Order("p", "A", "m", 2, failure_cost=100.0)
    p = problem(due, none)
    step = failure_cdf(due, p)
    assert (step(9), step(10), step(50)) == (0.0, 1.0, 1.0)
    hazard = failure_cdf(none, p)
    assert hazard(0) == 0.0
    assert hazard(100) == pytest.approx(1 - math.exp(-100 / 8760))


def test_expected_cost_and_risk_removed():
    o = Order("o", "A", "m", 2, failure_cost=1000.0, rul_quantiles={0.1: 30, 0.5: 60, 0.9: 120})
    p = problem(o)
    assert expected_failure_cost(o, p, 30) == pytest.approx(100.0)
    assert risk_removed(o, p, 30) == pytest.approx(900.0)
    assert risk_removed(o, p, None) == 0.0
    assert expected_failure_cost(o, p, None) == pytest.approx(1000.0 * failure_cdf(o, p)(100))


def test_invalid_quantiles_are_rejected():
    with pytest.raises(ValueError, match="must not decrease"):
        Order("o", "A", "m", 1, rul_quantiles={0.1: 50, 0.5: 20})
    with pytest.raises(ValueError, match="not in"):
        Order("o", "A", "m", 1, rul_quantiles={1.0: 50})


def test_integer_failure_term_follows_failure_cost_times_cdf():
    o = Order("o", "A", "m", 2, failure_cost=10_000.0, rul_quantiles={0.1: 30, 0.5: 60, 0.9: 90})
    p = problem(o, horizon=200)
    oc = order_costs(p)["o"]
    cdf = failure_cdf(o, p)
    for t in range(0, 201):
        exact = 10_000 * cdf(t)
        tolerance = 1.5 if t <= 90 else 1 + 0.015 * 10_000 * (1 - cdf(90))  # tail: sampled
        assert abs(oc.failure(t) - exact) <= tolerance
    values = [oc.at(t) for t in range(201)]
    assert values == sorted(values)  # costs never decrease with the start
    assert {b for b, _ in failure_points(o, p)} >= {0, 30, 60, 90, 200}


def test_lateness_downtime_labour_and_objective():
    o = Order("o", "A", "m", 3, due_h=10, downtime_cost_per_h=20.0, lateness_cost_per_h=7.0)
    p = problem(o)
    oc = order_costs(p)["o"]
    assert oc.at(7) == 60  # on time: downtime only (no failure cost)
    assert oc.at(9) == 60 + 2 * 7
    assert objective(p, {"o": oc}, {"o": ("T", 9)}) == 60 + 14 + 150  # + labour 3 h x 50
    assert objective(p, {"o": oc}, {"o": None}) == oc.penalty
    assert oc.penalty > oc.at(100) + 150


def test_penalty_outweighs_everything_else_and_scales_with_priority():
    a = Order("a", "A", "m", 2, due_h=5, failure_cost=1000.0)
    b = Order("b", "A", "m", 2, failure_cost=50.0, priority=2)
    costs = order_costs(problem(a, b))
    worst = sum(costs[x].at(100) + 100 for x in ("a", "b"))
    assert costs["a"].penalty > worst
    carry = {x: costs[x].failure(100) + costs[x].lateness(100) for x in ("a", "b")}
    assert carry["a"] == 1000 + 1000 * 97  # failure risk + 97 h late at the horizon end
    assert costs["b"].penalty - carry["b"] == 3 * (costs["a"].penalty - carry["a"])


def test_spend_rounds_up_to_the_cent_but_not_float_noise():
    tech = Technician("T", frozenset(), ((0, 1),), 0.2)
    assert spend_cents(Order("o", "A", "m", 1, parts_cost=0.1), tech) == 30  # 0.1 + 0.2
    assert spend_cents(Order("o", "A", "m", 1, parts_cost=0.101), tech) == 31
