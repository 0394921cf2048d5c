"""Weibull fits of right-censored lifetimes: parameters recovered from simulated fleets, a
published complete-data example, an independent censored MLE (scipy), the bias that ignoring
censoring causes, bounds, input errors; the closed-form life metrics; and lifetimes built from
an event history."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from pdm_reliability.weibull import (
    AssetHistory,
    Failure,
    Lifetimes,
    Weibull,
    WeibullDataError,
    WeibullFit,
    WeibullFitError,
    conditional_failure_probability,
    fit_weibull,
    lifetimes_from_history,
    weibull_log_likelihood,
)

BETA, ETA = 2.2, 1500.0  # hours


def censored_sample(
    n: int, seed: int, beta: float = BETA, eta: float = ETA, censor_max: float = 3 * ETA
) -> tuple[np.ndarray, np.ndarray]:
    """Weibull lifetimes, each censored by an independent uniform observation time."""
    rng = np.random.default_rng(seed)
    life = eta * rng.weibull(beta, n)
    censor = rng.uniform(0, censor_max, n)
    return np.minimum(life, censor), life <= censor


@pytest.fixture(scope="module")
def large() -> tuple[np.ndarray, np.ndarray, WeibullFit]:
    t, e = censored_sample(2000, seed=7)
    return t, e, fit_weibull(t, e)


# --- recovering known parameters ----------------------------------------------------------


def test_recovers_known_parameters_from_a_large_censored_sample(large) -> None:
    t, e, fit = large
    assert 0.2 < fit.n_censored / len(t) < 0.6  # the censoring really matters here
    assert fit.beta == pytest.approx(BETA, rel=0.05)
    assert fit.eta == pytest.approx(ETA, rel=0.05)
    assert fit.beta_lower < BETA < fit.beta_upper
    assert fit.eta_lower < ETA < fit.eta_upper
    assert (fit.n_failures, fit.n_censored) == (int(e.sum()), int((~e).sum()))
    truth = Weibull(BETA, ETA)
    assert fit.b10 == pytest.approx(truth.b10, rel=0.08)
    assert fit.mtbf == pytest.approx(truth.mean, rel=0.05)


def test_recovers_known_parameters_from_a_complete_sample() -> None:
    life = 40.0 * np.random.default_rng(3).weibull(0.8, 3000)  # infant mortality, cycles
    fit = fit_weibull(life)
    assert fit.n_censored == 0
    assert fit.beta == pytest.approx(0.8, rel=0.04)
    assert fit.eta == pytest.approx(40.0, rel=0.05)


def test_published_complete_data_example() -> None:
    """ReliaWiki's MLE example (6 failures): beta = 1.933, eta = 73.526."""
    fit = fit_weibull([16, 34, 53, 75, 93, 120])
    assert fit.beta == pytest.approx(1.933, abs=1e-3)
    assert fit.eta == pytest.approx(73.526, abs=1e-2)


def test_censored_fit_matches_an_independent_mle_and_its_own_likelihood() -> None:
    failures, suspensions = [90, 96, 30, 49, 82], [100, 45, 10]
    fit = fit_weibull(failures + suspensions, [True] * 5 + [False] * 3)
    data = stats.CensoredData(uncensored=failures, right=suspensions)
    shape, _, scale = stats.weibull_min.fit(data, floc=0)
    assert fit.beta == pytest.approx(shape, rel=1e-4)
    assert fit.eta == pytest.approx(scale, rel=1e-4)
    t, e = failures + suspensions, [True] * 5 + [False] * 3
    assert fit.log_likelihood == pytest.approx(
        weibull_log_likelihood(t, e, fit.beta, fit.eta), abs=1e-6
    )
    scipy_ll = float(
        stats.weibull_min.logpdf(failures, shape, 0, scale).sum()
        + stats.weibull_min.logsf(suspensions, shape, 0, scale).sum()
    )
    assert fit.log_likelihood == pytest.approx(scipy_ll, abs=1e-6)
    assert (fit.n_failures, fit.n_censored) == (5, 3)


def test_ignoring_censoring_biases_eta_down_while_the_censored_fit_does_not() -> None:
    t, e = censored_sample(400, seed=11, censor_max=1.5 * ETA)  # ~60 % still running
    assert (~e).mean() > 0.5
    honest = fit_weibull(t, e)
    as_failures = fit_weibull(t)  # survivors' running time counted as failures
    dropped = fit_weibull(t[e])  # survivors left out
    assert honest.eta == pytest.approx(ETA, rel=0.1)
    assert honest.eta_lower < ETA < honest.eta_upper
    # both shortcuts land about a third low, far outside the honest fit's 95 % bounds
    for biased in (as_failures, dropped):
        assert biased.eta < 0.7 * ETA
        assert biased.eta_upper < honest.eta_lower


def test_units_do_not_matter() -> None:
    t, e = censored_sample(60, seed=5)
    hours, seconds = fit_weibull(t, e), fit_weibull(t * 3600, e)
    assert seconds.beta == pytest.approx(hours.beta, rel=1e-5)
    assert seconds.eta == pytest.approx(hours.eta * 3600, rel=1e-5)
    assert seconds.eta_lower == pytest.approx(hours.eta_lower * 3600, rel=1e-4)
    # each failure's density picks up 1/3600
    shift = hours.n_failures * math.log(3600)
    assert seconds.log_likelihood == pytest.approx(hours.log_likelihood - shift, abs=1e-5)


# --- bounds and derived lives -------------------------------------------------------------


def test_bounds_agree_with_lifelines_and_b10_with_its_percentile(large) -> None:
    from lifelines import WeibullFitter

    t, e, fit = large
    direct = WeibullFitter().fit(t, e)
    summary = direct.summary
    assert fit.eta == pytest.approx(direct.lambda_, rel=1e-4)
    assert fit.beta == pytest.approx(direct.rho_, rel=1e-4)
    # Log-scale Fisher bounds vs lifelines' natural-scale Wald bounds: close for large n.
    assert fit.eta_lower == pytest.approx(summary.loc["lambda_", "coef lower 95%"], rel=0.01)
    assert fit.eta_upper == pytest.approx(summary.loc["lambda_", "coef upper 95%"], rel=0.01)
    assert fit.beta_lower == pytest.approx(summary.loc["rho_", "coef lower 95%"], rel=0.01)
    assert fit.beta_upper == pytest.approx(summary.loc["rho_", "coef upper 95%"], rel=0.01)
    # lifelines' percentile(p) is where survival is p: B10 is percentile(0.9).
    assert fit.b10 == pytest.approx(direct.percentile(0.9), rel=1e-4)
    lo, hi = fit.bx_life_bounds(10)
    assert 0 < lo < fit.b10 < hi
    assert lo < Weibull(BETA, ETA).b10 < hi


def test_small_samples_keep_positive_bounds_and_narrow_with_more_data() -> None:
    small = fit_weibull([120.0, 340.0, 90.0, 800.0], [True, True, False, False])
    assert 0 < small.eta_lower < small.eta < small.eta_upper
    assert 0 < small.beta_lower < small.beta < small.beta_upper
    assert small.confidence == 0.95
    t, e = censored_sample(200, seed=2)
    fit90, fit99 = fit_weibull(t, e, confidence=0.90), fit_weibull(t, e, confidence=0.99)
    assert fit99.eta_lower < fit90.eta_lower < fit90.eta < fit90.eta_upper < fit99.eta_upper


def test_fit_is_json_ready_and_round_trips(large) -> None:
    fit = large[2]
    data = json.loads(json.dumps(fit.to_dict()))
    assert data["b10"] == pytest.approx(fit.b10)
    assert data["mtbf"] == pytest.approx(fit.eta * math.gamma(1 + 1 / fit.beta))
    assert data["b10_lower"] < data["b10"] < data["b10_upper"]
    assert WeibullFit.from_dict(data) == fit


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("durations", "observed", "message"),
    [
        ([10.0, 20.0, 30.0], [True, False, False], "at least 2 failures"),
        ([10.0], None, "at least 2 failures"),
        ([], None, "at least 2 failures"),
        ([10.0, 0.0, 30.0], None, "positive and finite"),
        ([10.0, -5.0, 30.0], None, "positive and finite"),
        ([10.0, math.nan, 30.0], None, "positive and finite"),
        ([10.0, math.inf, 30.0], None, "positive and finite"),
        ([10.0, 20.0, 30.0], [True, True], "mismatched lengths"),
        ([10.0, 20.0], [1, 2], "booleans"),
        ([10.0, 20.0], ["yes", "no"], "booleans"),
        (["a", "b"], None, "must be numbers"),
        ([[1.0, 2.0], [3.0, 4.0]], None, "one-dimensional"),
        ([50.0, 50.0, 50.0], None, "identical time"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(durations, observed, message) -> None:
    with pytest.raises(WeibullDataError, match=message):
        fit_weibull(durations, observed)


def test_a_fit_that_does_not_converge_says_so() -> None:
    # two failures at the same time, survivors only earlier: the shape runs off to infinity
    with pytest.raises(WeibullFitError, match="did not converge"):
        fit_weibull([5.0, 5.0, 1.0, 2.0], [True, True, False, False])


def test_bad_confidence_is_refused() -> None:
    with pytest.raises(ValueError, match="confidence"):
        fit_weibull([1.0, 2.0, 3.0], confidence=95)


# --- the distribution's closed forms ------------------------------------------------------

betas = st.floats(0.3, 8.0)
etas = st.floats(1e-2, 1e6)
percents = st.floats(0.5, 99.5)


def test_closed_forms_at_known_points() -> None:
    assert Weibull(1.0, 100.0).mean == pytest.approx(100.0)
    assert Weibull(2.0, 100.0).mean == pytest.approx(100.0 * math.sqrt(math.pi) / 2)
    assert Weibull(1.0, 100.0).b10 == pytest.approx(-100.0 * math.log(0.9))
    assert Weibull(3.0, 100.0).reliability(100.0) == pytest.approx(math.exp(-1))
    assert Weibull(2.5, 1000.0).to_dict()["mtbf"] == pytest.approx(887.2638, rel=1e-6)
    with pytest.raises(ValueError, match="beta"):
        Weibull(0.0, 1.0)
    with pytest.raises(ValueError, match="percentage"):
        Weibull(2.0, 1.0).bx_life(100)


@given(betas, etas)
def test_b10_is_below_eta(beta: float, eta: float) -> None:
    w = Weibull(beta, eta)
    assert 0 < w.b10 < eta
    assert w.bx_life(63.2120558828558) == pytest.approx(eta, rel=1e-9)  # eta: 63.2 % failed


@given(betas, etas, percents, percents)
def test_bx_inverts_the_cdf_and_grows_with_x(beta: float, eta: float, x: float, y: float) -> None:
    w = Weibull(beta, eta)
    assert w.cdf(w.bx_life(x)) == pytest.approx(x / 100, rel=1e-9)
    if x < y:  # non-decreasing in floats; strictly increasing once x and y are apart
        assert w.bx_life(x) <= w.bx_life(y)
    if y - x > 1e-6:
        assert w.bx_life(x) < w.bx_life(y)


@given(st.floats(1.0, 8.0), etas)
def test_with_wearout_the_mean_life_is_at_most_eta(beta: float, eta: float) -> None:
    w = Weibull(beta, eta)
    assert w.mean <= eta * (1 + 1e-12)
    assert w.hazard(eta / 2) <= w.hazard(eta) * (1 + 1e-12)


@given(betas, etas, st.floats(0, 10.0), st.floats(0, 10.0))
def test_conditional_failure_probability(beta: float, eta: float, a: float, h: float) -> None:
    age, horizon = a * eta, h * eta
    p = conditional_failure_probability(age, horizon, beta, eta)
    assert 0 <= p <= 1
    assert conditional_failure_probability(0, horizon, beta, eta) == pytest.approx(
        Weibull(beta, eta).cdf(horizon), abs=1e-12
    )


def test_an_exponential_life_is_memoryless_and_wearout_is_not() -> None:
    p_new = conditional_failure_probability(0, 100, 1.0, 1000)
    p_old = conditional_failure_probability(5000, 100, 1.0, 1000)
    assert p_new == pytest.approx(p_old)
    assert conditional_failure_probability(900, 100, 3.0, 1000) > conditional_failure_probability(
        0, 100, 3.0, 1000
    )
    with pytest.raises(ValueError):
        conditional_failure_probability(-1, 100, 1.0, 1000)


# --- lifetimes from an event history ------------------------------------------------------

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def test_lifetimes_per_type_and_mode_with_the_running_interval_censored() -> None:
    histories = [
        AssetHistory(
            "P-1",
            "pump",
            at(0),
            [Failure(at(100), "seal"), Failure(at(250), "bearing"), Failure(at(400), "seal")],
        ),
        AssetHistory("P-2", "pump", at(50), [Failure(at(50), "seal")]),  # logged at install
        AssetHistory("P-3", "pump", at(200)),  # never failed: a survivor in every mode
        AssetHistory("M-1", "motor", at(0), [Failure(at(600), "winding")]),
    ]
    out = lifetimes_from_history(histories, now=at(1000))
    assert list(out) == [("motor", "winding"), ("pump", "bearing"), ("pump", "seal")]
    seal = out[("pump", "seal")]
    # P-1: 0->100 (fail), 100->400 (fail), 400->1000 (running); P-2: the 0 h failure is
    # dropped, then 50->1000 running; P-3: 200->1000 running.
    assert seal.durations == (100.0, 300.0, 600.0, 950.0, 800.0)
    assert seal.observed == (True, True, False, False, False)
    assert seal.asset_ids == ("P-1", "P-1", "P-1", "P-2", "P-3")
    assert (seal.n_failures, seal.n_censored) == (2, 3)
    bearing = out[("pump", "bearing")]
    # the seal failures do not renew the bearing by default
    assert bearing.durations == (250.0, 750.0, 950.0, 800.0)
    assert bearing.observed == (True, False, False, False)
    assert out[("motor", "winding")].observed == (True, False)
    assert json.loads(json.dumps(seal.to_dict()))["n_censored"] == 3


def test_renewal_on_any_failure_censors_the_other_modes() -> None:
    history = AssetHistory(
        "P-1", "pump", at(0), [Failure(at(100), "seal"), Failure(at(250), "bearing")]
    )
    out = lifetimes_from_history([history], now=at(400), renew_on_any_failure=True)
    assert out[("pump", "seal")].durations == (100.0, 150.0, 150.0)
    assert out[("pump", "seal")].observed == (True, False, False)
    assert out[("pump", "bearing")].durations == (100.0, 150.0, 150.0)
    assert out[("pump", "bearing")].observed == (False, True, False)


def test_unknown_origin_drops_the_first_interval_and_units_are_configurable() -> None:
    history = AssetHistory(
        "P-9",
        "pump",
        at(0),
        [Failure(at(48), "seal"), Failure(at(48), "seal"), Failure(at(120), "seal")],
        in_service_known=False,  # only first seen at hour 0
    )
    out = lifetimes_from_history([history], now=at(240), unit=timedelta(days=1))
    seal = out[("pump", "seal")]
    assert seal.durations == (3.0, 5.0)  # 48->120 failed, 120->240 running; duplicate once
    assert seal.observed == (True, False)
    assert (
        lifetimes_from_history(
            [AssetHistory("P-8", "pump", at(0), in_service_known=False)], now=at(10)
        )
        == {}
    )


@pytest.mark.parametrize(
    ("history", "now", "message"),
    [
        (AssetHistory("A", "pump", at(10), [Failure(at(5), "seal")]), at(20), "outside"),
        (AssetHistory("A", "pump", at(0), [Failure(at(30), "seal")]), at(20), "outside"),
        (AssetHistory("A", "pump", at(30)), at(20), "after now"),
        (AssetHistory("A", "pump", datetime(2024, 1, 1)), at(20), "naive"),
    ],
)
def test_history_errors(history: AssetHistory, now: datetime, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        lifetimes_from_history([history], now=now)


def test_a_simulated_fleet_history_recovers_the_life_distribution() -> None:
    """Assets installed at random times, each renewed at failure, observed until now: the
    lifetimes built from the event log give back the distribution that generated it."""
    rng = np.random.default_rng(21)
    beta, eta = 1.8, 2000.0
    now = at(30_000)
    histories = []
    for i in range(150):
        start = float(rng.uniform(0, 20_000))
        clock, failures = start, []
        while True:
            clock += eta * float(rng.weibull(beta))
            if clock >= 30_000:
                break
            failures.append(Failure(at(clock), "bearing"))
        histories.append(AssetHistory(f"F-{i}", "fan", at(start), failures))
    lifetimes = lifetimes_from_history(histories, now=now)[("fan", "bearing")]
    assert isinstance(lifetimes, Lifetimes)
    assert lifetimes.n_censored == 150  # one running interval per asset
    fit = lifetimes.fit()
    assert fit.beta == pytest.approx(beta, rel=0.1)
    assert fit.eta == pytest.approx(eta, rel=0.08)
    assert fit.eta_lower < eta < fit.eta_upper
