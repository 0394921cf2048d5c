"""The reliability routes' pure helpers (history -> censored lifetimes, risk per asset) and
the routes that need no database, in process."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from pdm_gateway.api.reliability import asset_risks, histories
from pdm_gateway.app import create_app
from pdm_gateway.keys import Principal
from pdm_gateway.settings import GatewaySettings
from pdm_reliability.weibull import lifetimes_from_history

TOKEN = "pdm_0123456789ab_" + "x" * 43
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def h(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def test_history_gives_times_between_failures_and_censors_the_running_one() -> None:
    fleet = [{"asset_id": "p1", "first_seen": T0}, {"asset_id": "p2", "first_seen": T0}]
    failures = [
        {"asset_id": "p1", "ts": h(100), "mode": "seal_leak"},
        {"asset_id": "p1", "ts": h(250), "mode": "seal_leak"},
        {"asset_id": "p2", "ts": h(50), "mode": "bearing_degradation"},
        {"asset_id": "p3", "ts": h(40), "mode": "seal_leak"},  # not in the fleet: added
    ]
    built = histories(fleet, failures, "pump")
    assert [(x.asset_id, x.in_service, len(x.failures)) for x in built] == [
        ("p1", T0, 2), ("p2", T0, 1), ("p3", h(40), 1),
    ]  # fmt: skip
    lives = lifetimes_from_history(built, h(300))
    seal = lives[("pump", "seal_leak")]
    # first sighting is not installation: intervals start at a known failure only
    assert sorted(zip(seal.asset_ids, seal.durations, seal.observed, strict=True)) == [
        ("p1", 50.0, False), ("p1", 150.0, True), ("p3", 260.0, False),
    ]  # fmt: skip
    known = lifetimes_from_history(histories(fleet, failures, "pump", True), h(300))
    seal_known = known[("pump", "seal_leak")]
    assert seal_known.n_failures == 2 and seal_known.n_censored == 3  # p2 survived: censored


def test_risk_per_asset_combines_its_predicted_modes() -> None:
    rows = [
        {"asset_id": "b", "failure_probability": 0.5, "consequence": 1000.0,
         "failure_mode": "seal_leak", "work_order_id": "w1"},
        {"asset_id": "b", "failure_probability": 0.5, "consequence": 3000.0,
         "failure_mode": "bearing_degradation", "work_order_id": "w2"},
        {"asset_id": "a", "failure_probability": 0.0, "consequence": 500.0,
         "failure_mode": None, "work_order_id": "w3"},
    ]  # fmt: skip
    (a, b) = asset_risks(rows)
    assert a == ("a", 0.0, 500.0, ["unknown"], ["w3"])
    asset, probability, consequence, modes, ids = b
    assert asset == "b" and math.isclose(probability, 0.75)
    assert math.isclose(probability * consequence, 0.5 * 1000 + 0.5 * 3000)  # expected loss
    assert modes == ["bearing_degradation", "seal_leak"] and ids == ["w1", "w2"]


@pytest.fixture
def app() -> Any:
    app = create_app(settings=GatewaySettings(key_cache_s=0))

    class Keys:
        async def authenticate(self, key_id: str, secret: str) -> Principal:
            return Principal(key_id, "tester", frozenset({"read"}))

    app.state.auth.keys = Keys()
    app.middleware_stack = None
    return app


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


async def test_weibull_fit_of_posted_lifetimes(app) -> None:  # type: ignore[no-untyped-def]
    durations = [120.0, 190.0, 240.0, 300.0, 330.0, 410.0, 500.0, 520.0, 600.0, 650.0]
    observed = [True] * 8 + [False] * 2
    async with client(app) as http:
        fit = await http.post(
            "/v1/reliability/weibull",
            json={"durations": durations, "observed": observed},
            headers=AUTH,
        )
        assert fit.status_code == 200, fit.text
        body = fit.json()
        assert body["n_failures"] == 8 and body["n_censored"] == 2
        assert body["beta_lower"] < body["beta"] < body["beta_upper"]
        assert body["b10_lower"] < body["b10"] < body["eta"] and body["mtbf"] > 0
        one_failure = await http.post(
            "/v1/reliability/weibull",
            json={"durations": [10.0, 20.0, 30.0], "observed": [True, False, False]},
            headers=AUTH,
        )
        assert one_failure.status_code == 422
        assert one_failure.headers["content-type"] == "application/problem+json"
        assert one_failure.json()["type"].endswith("insufficient-data")
        assert "at least 2 failures" in one_failure.json()["detail"]
        mismatch = await http.post(
            "/v1/reliability/weibull",
            json={"durations": [10.0, 20.0], "observed": [True]},
            headers=AUTH,
        )
        assert mismatch.status_code == 422
        negative = await http.post(
            "/v1/reliability/weibull", json={"durations": [10.0, -1.0]}, headers=AUTH
        )
        assert negative.status_code == 422


async def test_pm_interval_and_its_run_to_failure_answer(app) -> None:  # type: ignore[no-untyped-def]
    async with client(app) as http:
        best = await http.post(
            "/v1/reliability/pm-interval",
            json={"beta": 2.5, "eta": 1000, "cost_preventive": 1, "cost_corrective": 5},
            headers=AUTH,
        )
        assert best.status_code == 200
        assert math.isclose(best.json()["interval"], 493.05, abs_tol=0.05)
        assert best.json()["saving"] > 0
        random = await http.post(
            "/v1/reliability/pm-interval",
            json={"beta": 1.0, "eta": 1000, "cost_preventive": 1, "cost_corrective": 5},
            headers=AUTH,
        )
        assert random.status_code == 200 and random.json()["interval"] is None
        assert "run to failure" in random.json()["reason"]


async def test_fmea_rows_are_ranked_by_action_priority(app) -> None:  # type: ignore[no-untyped-def]
    row = {"function": "pump water", "failure_mode": "no flow", "effect": "line stops",
           "cause": "seal wear", "current_controls": "weekly check"}  # fmt: skip
    rows = [
        row | {"severity": 5, "occurrence": 5, "detection": 5},  # RPN 125, AP L
        row | {"severity": 9, "occurrence": 8, "detection": 2},  # RPN 144, AP H
        row | {"severity": 2, "occurrence": 10, "detection": 10},  # RPN 200, AP M
    ]
    async with client(app) as http:
        answer = await http.post("/v1/reliability/fmea", json={"rows": rows}, headers=AUTH)
        assert answer.status_code == 200, answer.text
        assert [(r["action_priority"], r["rpn"]) for r in answer.json()["rows"]] == [
            ("H", 144), ("M", 200), ("L", 125),
        ]  # fmt: skip
        blank = await http.post(
            "/v1/reliability/fmea",
            json={"rows": [rows[0] | {"cause": "   "}]},
            headers=AUTH,
        )
        assert blank.status_code == 422 and "cause" in blank.json()["detail"]
        fractional = await http.post(
            "/v1/reliability/fmea", json={"rows": [rows[0] | {"severity": 4.5}]}, headers=AUTH
        )
        assert fractional.status_code == 422
