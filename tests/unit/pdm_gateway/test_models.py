"""The model-lifecycle routes in process: the registry listing (fake lister: timeouts and an
unreachable registry are 503s), alias history, live performance and drift reports over an
in-memory reader, and the drift commands with a fake drift service behind the Kafka reply
client (status -> HTTP, idempotent retries, the tight per-key limit of drift checks). The real
stack is in tests/integration/test_gateway_models.py."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pdm_common import registry
from pdm_common.request_reply import ReplyTimeout
from pdm_gateway import cursors
from pdm_gateway.api import models as models_api
from pdm_gateway.api.maintenance import command_id
from pdm_gateway.app import create_app
from pdm_gateway.keys import Principal
from pdm_gateway.model_registry import ModelRegistryView
from pdm_gateway.settings import GatewaySettings
from pdm_gateway.store import Database, Stores

from .test_maintenance import AUTH, FakeStore, client

T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)
PROBLEM = "application/problem+json"


def version(name: str, number: str, **metrics: float) -> registry.RegisteredVersion:
    return registry.RegisteredVersion(
        name, number, f"run{number}", {"dataset": "simulated-pump"}, metrics
    )


SERVED = [
    registry.ServedModel(
        name="failure-pump",
        description=None,
        tags={"task": "failure"},
        aliases={"champion": "3", "previous": "2", "challenger": "4"},
        versions={
            "champion": version("failure-pump", "3", pr_auc=0.83),
            "previous": version("failure-pump", "2", pr_auc=0.8),
            "challenger": version("failure-pump", "4", pr_auc=0.81),
        },
        latest_version="4",
        updated_at=T0,
    ),
    registry.ServedModel(
        name="rul-pump",
        description="RUL",
        tags={},
        aliases={"champion": "1"},
        versions={"champion": version("rul-pump", "1", rmse=18.0)},
        latest_version="1",
        updated_at=None,
    ),
]


class FakeDriftReader:
    """`DriftReader` over lists of rows; records the filters it was asked for."""

    def __init__(self) -> None:
        self.history_rows: list[dict[str, Any]] = []
        self.retrain_rows: list[dict[str, Any]] = []
        self.report_rows: list[dict[str, Any]] = []
        self.performance_rows: list[dict[str, Any]] = []
        self.asked: list[dict[str, Any]] = []

    async def history(self, name: str, after: Any, limit: int) -> list[dict[str, Any]]:
        rows = [r for r in self.history_rows if r["model_name"] == name]
        rows.sort(key=lambda r: (r["moved_at"], str(r["change_id"])), reverse=True)
        if after is not None:
            rows = [r for r in rows if (r["moved_at"], str(r["change_id"])) < after]
        return rows[:limit]

    async def performance(
        self, name: str, filters: dict[str, Any], latest: bool, after: Any, limit: int
    ) -> list[dict[str, Any]]:
        self.asked.append(filters | {"latest": latest})
        rows = [r for r in self.performance_rows if r["model_name"] == name]
        if latest and rows:
            newest = max(r["computed_at"] for r in rows)
            rows = [r for r in rows if r["computed_at"] == newest]
        rows = [r for r in rows if all(v in (None, r[k]) for k, v in filters.items())]
        key = lambda r: (r["computed_at"], r["model_version"], r["role"], r["span"])  # noqa: E731
        rows.sort(key=key, reverse=True)
        if after is not None:
            rows = [r for r in rows if key(r) < after]
        return rows[:limit]

    async def retrains(self, name: str, limit: int) -> list[dict[str, Any]]:
        return [r for r in self.retrain_rows if r["model_name"] == name][:limit]

    async def reports(self, filters: dict[str, Any], after: Any, limit: int) -> list[dict]:
        self.asked.append(filters)
        return self.report_rows[:limit]

    async def report(self, report_id: uuid.UUID) -> dict[str, Any] | None:
        return next((r for r in self.report_rows if r["report_id"] == report_id), None)

    async def report_html(self, report_id: uuid.UUID) -> tuple[bool, str | None]:
        row = await self.report(report_id)
        return (row is not None, row.get("html") if row else None)


class FakeDriftService:
    """Answers each command with the next of `answers` (raises it when an exception)."""

    def __init__(self, *answers: dict[str, Any] | Exception) -> None:
        self.answers = list(answers)
        self.commands: list[dict[str, Any]] = []
        self.keys: list[str | None] = []

    async def call(self, topic: str, body: Any, *, key: str | None, timeout_s: float):  # type: ignore[no-untyped-def]
        assert topic == "pdm.drift.commands.v1"
        self.commands.append(body)
        self.keys.append(key)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        reply = {"source": "drift", "action": body["action"], "command_id": body["command_id"]}
        return [json.dumps(reply | answer).encode()], 1.0


class ReadOnlyStore(FakeStore):
    async def authenticate(self, key_id: str, secret: str) -> Principal | None:
        return Principal(key_id, "reader", frozenset({"read"}))


def make_app(store: FakeStore | None = None, **settings: Any) -> Any:
    app = create_app(settings=GatewaySettings(key_cache_s=0, **settings))
    store = store or FakeStore()
    app.state.stores = Stores(Database(), *[store] * 7)  # type: ignore[arg-type]
    app.state.auth.keys = store
    app.middleware_stack = None
    for middleware in app.user_middleware:
        if "audit" in middleware.kwargs:
            middleware.kwargs["audit"] = store
    app.state.model_registry = ModelRegistryView("http://mlflow", 0.5, lister=lambda: SERVED)
    return app


@pytest.fixture
def app() -> Any:
    return make_app()


@pytest.fixture
def reader(monkeypatch: pytest.MonkeyPatch) -> FakeDriftReader:
    fake = FakeDriftReader()
    monkeypatch.setattr(models_api, "drift_reader", lambda request: fake)
    return fake


async def test_models_list_the_aliases_with_metrics_and_filter_by_task(app) -> None:  # type: ignore[no-untyped-def]
    async with client(app) as http:
        answer = await http.get("/v1/models", headers=AUTH)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["registry"] == "http://mlflow"
        pump = body["items"][0]
        assert (pump["name"], pump["task"], pump["asset_type"]) == (
            "failure-pump",
            "failure",
            "pump",
        )
        assert pump["champion"]["version"] == "3" and pump["champion"]["metrics"] == {
            "pr_auc": 0.83
        }
        assert pump["champion"]["uri"] == "models:/failure-pump/3"
        assert pump["previous"]["version"] == "2" and pump["challenger"]["version"] == "4"
        assert pump["champion"]["tags"]["dataset"] == "simulated-pump"
        assert body["items"][1]["challenger"] is None
        rul = await http.get("/v1/models", params={"task": "rul"}, headers=AUTH)
        assert [m["name"] for m in rul.json()["items"]] == ["rul-pump"]
        bad = await http.get("/v1/models", params={"task": "magic"}, headers=AUTH)
        assert bad.status_code == 422 and bad.headers["content-type"] == PROBLEM


async def test_an_unreachable_or_silent_registry_is_a_503_soon(app) -> None:  # type: ignore[no-untyped-def]
    def unreachable() -> list[registry.ServedModel]:
        raise registry.RegistryUnavailable("http://mlflow", "connection refused")

    def silent() -> list[registry.ServedModel]:
        time.sleep(2.0)
        return SERVED

    async with client(app) as http:
        app.state.model_registry = ModelRegistryView("http://mlflow", 0.3, lister=unreachable)
        down = await http.get("/v1/models", headers=AUTH)
        assert down.status_code == 503 and down.headers["retry-after"] == "5"
        assert "unreachable" in down.json()["detail"]
        app.state.model_registry = ModelRegistryView("http://mlflow", 0.3, lister=silent)
        started = time.monotonic()
        slow = await http.get("/v1/models", headers=AUTH)
        assert slow.status_code == 503 and time.monotonic() - started < 1.5
        assert "did not answer within 0.3 s" in slow.json()["detail"]


async def test_the_registry_listing_is_shared_and_cached() -> None:
    calls: list[int] = []
    now = [0.0]

    def lister() -> list[registry.ServedModel]:
        calls.append(1)
        time.sleep(0.05)
        return SERVED

    view = ModelRegistryView("http://mlflow", 2.0, ttl_s=5.0, lister=lister, clock=lambda: now[0])
    results = await asyncio.gather(*(view.models() for _ in range(5)))
    assert len(calls) == 1 and all(r == SERVED for r in results)
    await view.models()
    assert len(calls) == 1
    now[0] = 6.0
    await view.models()
    assert len(calls) == 2


def history_row(name: str, alias: str, number: str, at: datetime, **extra: Any) -> dict:
    return {
        "change_id": uuid.uuid4(), "model_name": name, "alias": alias, "version": number,
        "previous_version": None, "moved_at": at, "actor": "drift", "trigger": "retrain",
        "reason": None, "metrics": {"pr_auc": 0.8},
    } | extra  # fmt: skip


async def test_history_pages_newest_first_with_retrains_and_404_when_unknown(app, reader) -> None:  # type: ignore[no-untyped-def]
    reader.history_rows = [
        history_row("failure-pump", "champion", str(n), T0 + timedelta(hours=n)) for n in (1, 2, 3)
    ]
    reader.retrain_rows = [{
        "job_id": uuid.uuid4(), "model_name": "failure-pump", "trigger": "drift", "reason": "x",
        "status": "finished", "claimed_by": "drift-1", "started_at": T0, "heartbeat_at": T0,
        "finished_at": T0, "challenger_version": "3", "result": {"promoted": True}, "error": None,
    }]  # fmt: skip
    async with client(app) as http:
        first = (await http.get("/v1/models/failure-pump/history?limit=2", headers=AUTH)).json()
        assert [i["version"] for i in first["items"]] == ["3", "2"]
        assert first["retrains"][0]["challenger_version"] == "3"
        assert first["next_cursor"]
        second = await http.get(
            "/v1/models/failure-pump/history",
            params={"limit": 2, "cursor": first["next_cursor"]},
            headers=AUTH,
        )
        assert [i["version"] for i in second.json()["items"]] == ["1"]
        assert second.json()["next_cursor"] is None and second.json()["retrains"] == []
        unknown = await http.get("/v1/models/failure-nothing/history", headers=AUTH)
        assert unknown.status_code == 404 and unknown.headers["content-type"] == PROBLEM
        bad_name = await http.get("/v1/models/Bad Name/history", headers=AUTH)
        assert bad_name.status_code == 422 and bad_name.headers["content-type"] == PROBLEM
        bad_cursor = await http.get("/v1/models/failure-pump/history?cursor=%25%25", headers=AUTH)
        assert bad_cursor.status_code == 400


def performance_row(
    number: str, role: str, span: str, at: datetime, **extra: Any
) -> dict[str, Any]:
    return {
        "model_name": "failure-pump", "model_version": number, "role": role, "span": span,
        "computed_at": at, "window_start": at - timedelta(days=14), "window_end": at,
        "horizon_h": 72.0, "predictions": 400, "alarms": 12, "alarms_judged": 10,
        "true_alarms": 8, "failures": 5, "caught": 4, "precision": 0.8, "recall": 0.8,
        "lead_h_median": 40.0, "lead_h_mean": 38.5, "rul_judged": None, "rul_mae_h": None,
        "rul_bias_h": None, "rul_coverage": None, "degraded": False, "reason": None,
    } | extra  # fmt: skip


async def test_performance_pages_newest_first_filters_and_404_when_none(app, reader) -> None:  # type: ignore[no-untyped-def]
    earlier, newest = T0, T0 + timedelta(hours=6)
    reader.performance_rows = [
        performance_row("3", "served", "all", earlier),
        performance_row("3", "served", "all", newest),
        performance_row("3", "served", "recent", newest, degraded=True, precision=0.4,
                        reason="precision 0.40 < 0.80 (Fisher p=0.01)"),
        performance_row("4", "shadow", "all", newest),
        performance_row("9", "served", "all", newest, model_name="rul-pump"),
    ]  # fmt: skip
    path = "/v1/models/failure-pump/performance"

    def keys(page: dict[str, Any]) -> list[tuple[str, str, str, str]]:
        return [(i["computed_at"], i["model_version"], i["role"], i["span"]) for i in page["items"]]

    async with client(app) as http:
        first = await http.get(path, params={"limit": 2}, headers=AUTH)
        assert first.status_code == 200, first.text
        page1 = first.json()
        assert page1["model_name"] == "failure-pump" and page1["next_cursor"]
        assert [(k[1], k[2], k[3]) for k in keys(page1)] == [
            ("4", "shadow", "all"),
            ("3", "served", "recent"),
        ]
        assert page1["items"][1]["degraded"] is True and "Fisher" in page1["items"][1]["reason"]
        assert page1["items"][0]["lead_h_median"] == 40.0 and page1["items"][0]["rul_mae_h"] is None
        rest = await http.get(
            path, params={"limit": 2, "cursor": page1["next_cursor"]}, headers=AUTH
        )
        page2 = rest.json()
        assert [(k[1], k[3]) for k in keys(page2)] == [("3", "all"), ("3", "all")]
        assert page2["items"][1]["computed_at"].startswith("2026-03-02T08:00")
        assert page2["next_cursor"] is None
        assert reader.asked[-1] == {
            "role": None, "span": None, "model_version": None, "latest": False
        }  # fmt: skip
        latest = (await http.get(path, params={"latest": "true"}, headers=AUTH)).json()
        assert len(latest["items"]) == 3 and len({k[0] for k in keys(latest)}) == 1
        served = await http.get(
            path, params={"role": "served", "span": "all", "version": "3"}, headers=AUTH
        )
        assert len(served.json()["items"]) == 2
        assert reader.asked[-1] == {
            "role": "served", "span": "all", "model_version": "3", "latest": False
        }  # fmt: skip
        assert reader.asked[-2]["latest"] is True
        unknown = await http.get("/v1/models/failure-nothing/performance", headers=AUTH)
        assert unknown.status_code == 404 and unknown.headers["content-type"] == PROBLEM
        assert "outcome labels" in unknown.json()["detail"]
        nothing = await http.get(path, params={"role": "shadow", "span": "recent"}, headers=AUTH)
        assert nothing.status_code == 404 and "role=shadow, span=recent" in nothing.json()["detail"]
        for bad in ({"role": "champion"}, {"span": "week"}, {"version": "v3"},
                    {"latest": "maybe"}, {"limit": 0}):  # fmt: skip
            refused = await http.get(path, params=bad, headers=AUTH)
            assert refused.status_code == 422, bad
            assert refused.headers["content-type"] == PROBLEM
        bad_name = await http.get("/v1/models/Bad Name/performance", headers=AUTH)
        assert bad_name.status_code == 422
        bad_cursor = await http.get(path, params={"cursor": "%%"}, headers=AUTH)
        assert bad_cursor.status_code == 400 and bad_cursor.headers["content-type"] == PROBLEM
        history_cursor = await http.get(
            path, params={"cursor": cursors.encode(T0, str(uuid.uuid4()))}, headers=AUTH
        )
        assert history_cursor.status_code == 400


async def test_performance_is_read_scope() -> None:
    app = make_app(ReadOnlyStore())
    fake = FakeDriftReader()
    fake.performance_rows = [performance_row("3", "served", "all", T0)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(models_api, "drift_reader", lambda request: fake)
        async with client(app) as http:
            answer = await http.get("/v1/models/failure-pump/performance", headers=AUTH)
    assert answer.status_code == 200 and answer.json()["items"][0]["predictions"] == 400


def report_row(**extra: Any) -> dict[str, Any]:
    return {
        "report_id": uuid.uuid4(), "kind": "features", "model_name": "failure-pump",
        "model_version": "3", "asset_type": "pump", "trigger": "timer",
        "window_start": T0, "window_end": T0 + timedelta(hours=1), "reference_rows": 1000,
        "current_rows": 500, "drifted_share": 0.25, "weighted_share": 0.4,
        "drift_detected": True, "created_at": T0, "has_html": True,
        "headlines": ["vibration_rms drifted (wasserstein 0.4)"],
        "columns": [{"column": "vibration_rms", "method": "wasserstein", "statistic": 0.4,
                     "threshold": 0.1, "drifted": True}],
        "html": "<html><body>evidently</body></html>",
    } | extra  # fmt: skip


async def test_reports_list_detail_and_html(app, reader) -> None:  # type: ignore[no-untyped-def]
    with_html = report_row()
    without = report_row(html=None, has_html=False, drift_detected=False)
    reader.report_rows = [with_html, without]
    async with client(app) as http:
        page = await http.get(
            "/v1/drift/reports",
            params={"model_name": "failure-pump", "kind": "features", "drift_detected": "true"},
            headers=AUTH,
        )
        assert page.status_code == 200, page.text
        items = page.json()["items"]
        assert len(items) == 2 and "columns" not in items[0] and "html" not in items[0]
        assert reader.asked[-1] == {
            "model_name": "failure-pump", "kind": "features", "asset_type": None,
            "drift_detected": True,
        }  # fmt: skip
        for bad in ({"kind": "weights"}, {"model_name": "pump"}, {"drift_detected": "maybe"}):
            refused = await http.get("/v1/drift/reports", params=bad, headers=AUTH)
            assert refused.status_code == 422, bad
        detail = (
            await http.get(f"/v1/drift/reports/{with_html['report_id']}", headers=AUTH)
        ).json()
        assert detail["columns"][0]["column"] == "vibration_rms" and detail["headlines"]
        assert "html" not in detail and detail["has_html"] is True
        html = await http.get(f"/v1/drift/reports/{with_html['report_id']}/html", headers=AUTH)
        assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
        assert "evidently" in html.text
        assert html.headers["content-security-policy"].startswith("sandbox")
        no_html = await http.get(f"/v1/drift/reports/{without['report_id']}/html", headers=AUTH)
        assert no_html.status_code == 404 and "no stored Evidently" in no_html.json()["detail"]
        missing = await http.get(f"/v1/drift/reports/{uuid.uuid4()}", headers=AUTH)
        assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM
        assert (
            await http.get(f"/v1/drift/reports/{uuid.uuid4()}/html", headers=AUTH)
        ).status_code == 404
        assert (await http.get("/v1/drift/reports/nope", headers=AUTH)).status_code == 422


async def test_commands_map_statuses_and_replay_a_repeated_key(app) -> None:  # type: ignore[no-untyped-def]
    job = str(uuid.uuid4())
    change = {
        "model_name": "failure-pump", "alias": "champion", "version": "2",
        "previous_version": "3", "moved_at": T0.isoformat(), "actor": "tester",
        "trigger": "command",
    }  # fmt: skip
    app.state.bus._replies = service = FakeDriftService(
        {"status": "accepted", "job_id": job, "message": "retraining"},
        {"status": "ok", "alias_change": change},
        {"status": "conflict", "message": "in cooldown for 5 h; force to override"},
        {"status": "not_found", "message": "no previous version"},
        {"status": "invalid", "message": "version 9 does not exist"},
        {"status": "unavailable", "message": "registry down"},
    )
    headers = AUTH | {"Idempotency-Key": "r-1"}
    async with client(app) as http:
        body = {"reason": "drift", "force": True}
        first = await http.post("/v1/models/failure-pump/retrain", json=body, headers=headers)
        assert first.status_code == 202, first.text
        assert first.json()["job_id"] == job and first.json()["status"] == "accepted"
        again = await http.post("/v1/models/failure-pump/retrain", json=body, headers=headers)
        assert again.status_code == 202 and again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
        rolled = await http.post("/v1/models/failure-pump/rollback", headers=AUTH)
        assert rolled.status_code == 200 and rolled.json()["alias_change"]["version"] == "2"
        cooldown = await http.post("/v1/models/failure-pump/retrain", headers=AUTH)
        assert cooldown.status_code == 409 and "cooldown" in cooldown.json()["detail"]
        none = await http.post("/v1/models/failure-pump/rollback", json={}, headers=AUTH)
        assert none.status_code == 404 and none.headers["content-type"] == PROBLEM
        invalid = await http.post(
            "/v1/models/failure-pump/promote", json={"version": "9"}, headers=AUTH
        )
        assert invalid.status_code == 422
        down = await http.post("/v1/models/failure-pump/promote", headers=AUTH)
        assert down.status_code == 503 and down.headers["retry-after"] == "10"
    sent = service.commands[0]
    assert sent == {
        "command_id": str(command_id("0123456789ab", "r-1")), "action": "retrain",
        "model_name": "failure-pump", "reason": "drift", "actor": "tester", "force": True,
    }  # fmt: skip
    assert service.commands[4]["version"] == "9"
    assert service.keys == ["failure-pump"] * 6
    assert len(service.commands) == 6  # the replay never reached the service


async def test_bad_requests_and_scopes_are_refused_before_any_command() -> None:
    app = make_app(ReadOnlyStore())
    app.state.bus._replies = service = FakeDriftService()
    async with client(app) as http:
        forbidden = await http.post("/v1/models/failure-pump/rollback", headers=AUTH)
        assert forbidden.status_code == 403
    app = make_app()
    app.state.bus._replies = service
    async with client(app) as http:
        for path, body in (
            ("/v1/models/pump/retrain", None),  # not <task>-<type>
            ("/v1/models/failure-pump/promote", {"version": "v2"}),
            ("/v1/models/failure-pump/retrain", {"force": "sometimes"}),
            ("/v1/models/failure-pump/rollback", {"why": "typo"}),
            ("/v1/drift/check", {"model_name": "FAILURE"}),
        ):
            answer = await http.post(path, json=body, headers=AUTH)
            assert answer.status_code == 422, (path, answer.text)
            assert answer.headers["content-type"] == PROBLEM
    assert service.commands == []


async def test_a_silent_drift_service_is_a_504(app) -> None:  # type: ignore[no-untyped-def]
    app.state.bus._replies = FakeDriftService(ReplyTimeout("no reply"))
    async with client(app) as http:
        answer = await http.post("/v1/models/failure-pump/retrain", headers=AUTH)
    assert answer.status_code == 504 and answer.json()["service"] == "drift service"


async def test_drift_checks_are_limited_per_key_but_a_retry_is_not_charged() -> None:
    app = make_app(drift_check_per_min=2.0)
    report = str(uuid.uuid4())
    app.state.bus._replies = service = FakeDriftService(
        ReplyTimeout("no reply"), {"status": "ok", "reports": [report]}
    )
    async with client(app) as http:
        headers = AUTH | {"Idempotency-Key": "check-1"}
        body = {"model_name": "failure-pump"}
        timeout = await http.post("/v1/drift/check", json=body, headers=headers)
        assert timeout.status_code == 504
        retry = await http.post("/v1/drift/check", json=body, headers=headers)
        assert retry.status_code == 200 and retry.json()["reports"] == [report]
        other = await http.post("/v1/drift/check", headers=AUTH)
        assert other.status_code == 429 and other.headers["content-type"] == PROBLEM
        assert 1 <= int(other.headers["retry-after"]) <= 30
    assert service.keys == ["failure-pump", "failure-pump"]
    assert service.commands[0]["command_id"] == service.commands[1]["command_id"]


def test_check_limiter_admits_per_key_at_its_rate() -> None:
    limiter = models_api.CheckLimiter(per_min=6.0)
    now = [0.0]
    limiter.limiter.clock = lambda: now[0]
    assert limiter.admit("a", None) == 0.0
    assert limiter.admit("a", None) == pytest.approx(10.0)
    assert limiter.admit("b", None) == 0.0  # per key
    now[0] = 10.0
    assert limiter.admit("a", None) == 0.0


def test_the_registry_uri_is_shown_without_credentials() -> None:
    from pdm_gateway.model_registry import redact

    assert redact("https://user:token@mlflow.example:8443/x") == "https://mlflow.example:8443/x"
    assert redact("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


async def test_a_registry_that_fails_is_a_502_that_leaks_nothing(app) -> None:  # type: ignore[no-untyped-def]
    def failing() -> list[registry.ServedModel]:
        raise registry.RegistryError("INTERNAL_ERROR: secret stack trace")

    app.state.model_registry = ModelRegistryView("https://u:secret@mlflow", 1.0, lister=failing)
    async with client(app) as http:
        answer = await http.get("/v1/models", headers=AUTH)
    assert answer.status_code == 502 and answer.headers["content-type"] == PROBLEM
    assert "secret" not in answer.text and "https://mlflow" in answer.json()["detail"]


async def test_drift_tables_not_migrated_are_a_503_on_these_routes_only() -> None:
    import contextlib

    import psycopg

    from pdm_gateway.problems import Problem
    from pdm_gateway.store.drift import DriftReader

    class Unmigrated:
        @contextlib.asynccontextmanager
        async def connection(self):  # type: ignore[no-untyped-def]
            raise psycopg.errors.UndefinedTable('relation "drift_reports" does not exist')
            yield

    reader = DriftReader(Unmigrated())  # type: ignore[arg-type]
    with pytest.raises(Problem) as refused:
        await reader.reports({}, None, 10)
    assert refused.value.status == 503 and "pdm migrate" in refused.value.detail
    assert refused.value.headers["Retry-After"]
