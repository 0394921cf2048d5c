"""The maintenance routes in process, with a fake scheduler behind the Kafka reply client:
Gantt lanes, request validation, how command results become HTTP answers, and idempotent
retries. (The real scheduler is exercised in tests/integration/test_gateway_maintenance.py.)"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from pdm_common.maintenance import PlannedOrder
from pdm_gateway.api.maintenance import command_id, gantt_lanes
from pdm_gateway.app import create_app
from pdm_gateway.keys import Principal
from pdm_gateway.settings import GatewaySettings
from pdm_gateway.store import Database, Stores
from pdm_gateway.store.idempotency_keys import Claim

TOKEN = "pdm_0123456789ab_" + "x" * 43
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)
NOW = datetime.now(UTC).isoformat()


def planned(
    tech: str | None, asset: str, start_h: float | None, hours: float = 1.0
) -> PlannedOrder:
    start = T0 + timedelta(hours=start_h) if start_h is not None else None
    return PlannedOrder(
        work_order_id=uuid.uuid4(),
        asset_id=asset,
        status="scheduled" if start else "unschedulable",
        technician_id=tech,
        start=start,
        end=start + timedelta(hours=hours) if start else None,
        reason=None if start else "no_technician",
    )


def test_gantt_lanes_group_by_technician_or_asset() -> None:
    orders = [
        planned("tech-b", "pump-1", 5),
        planned("tech-a", "pump-2", 3, 2.0),
        planned("tech-a", "pump-1", 1),
        planned(None, "pump-3", None),
    ]
    lanes, rest = gantt_lanes(orders, "technician")
    assert [lane.key for lane in lanes] == ["tech-a", "tech-b"]
    first = lanes[0]
    assert [o.asset_id for o in first.orders] == ["pump-1", "pump-2"]  # by start
    assert first.busy_h == 3.0
    assert first.first_start == T0 + timedelta(hours=1)
    assert first.last_end == T0 + timedelta(hours=5)
    assert [o.asset_id for o in rest] == ["pump-3"]
    by_asset, rest2 = gantt_lanes(orders, "asset")
    assert [(lane.key, len(lane.orders)) for lane in by_asset] == [("pump-1", 2), ("pump-2", 1)]
    assert rest2 == rest


def test_gantt_lane_without_technician_is_last() -> None:
    lanes, _ = gantt_lanes([planned(None, "a", 1), planned("t", "b", 2)], "technician")
    assert [lane.key for lane in lanes] == ["t", None]


def test_command_id_is_derived_from_the_idempotency_key() -> None:
    assert command_id("k", "same") == command_id("k", "same")
    assert command_id("k", "same") != command_id("other-key", "same")
    assert command_id("k", None) != command_id("k", None)


class FakeStore:
    """Keys (one admin key) and idempotency claims in memory; audit records dropped."""

    def __init__(self) -> None:
        self.idempotency: dict[str, tuple[str, int | None, Any]] = {}

    async def authenticate(self, key_id: str, secret: str) -> Principal | None:
        return Principal(key_id, "tester", frozenset({"admin"}))

    async def record(self, *args: Any) -> None:
        return None

    async def begin(self, key_id: str, key: str, sha: str) -> Claim:
        if key not in self.idempotency:
            self.idempotency[key] = (sha, None, None)
            return Claim("new")
        stored_sha, status, response = self.idempotency[key]
        if stored_sha != sha:
            return Claim("mismatch")
        return Claim("in_flight") if status is None else Claim("replay", status, response)

    async def finish(self, key_id: str, key: str, status: int, response: Any) -> None:
        self.idempotency[key] = (self.idempotency[key][0], status, response)

    async def abandon(self, key_id: str, key: str) -> None:
        self.idempotency.pop(key, None)


class FakeScheduler:
    """Answers each command with the next of `answers` (a result without the envelope)."""

    def __init__(self, *answers: dict[str, Any]) -> None:
        self.answers = list(answers)
        self.commands: list[dict[str, Any]] = []
        self.timeouts: list[float] = []

    async def call(self, topic: str, body: Any, *, key: str | None, timeout_s: float):  # type: ignore[no-untyped-def]
        assert topic == "pdm.maintenance.commands.v1"
        self.commands.append(body)
        self.timeouts.append(timeout_s)
        answer = {"source": "scheduler", "action": body["action"]} | self.answers.pop(0)
        return [json.dumps(answer).encode()], 1.0


def work_order(**fields: Any) -> dict[str, Any]:
    return {
        "work_order_id": str(uuid.uuid4()),
        "asset_id": "pump-1",
        "type": "corrective",
        "status": "open",
        "priority": 1,
        "source": "person",
        "title": "Seal leaks",
        "skill": "pump",
        "estimated_hours": 2.0,
        "parts_cost": 0.0,
        "failure_cost": 0.0,
        "downtime_cost_per_h": 0.0,
        "created_at": NOW,
        "created_by": "tester",
        "updated_at": NOW,
        "version": 1,
    } | fields


@pytest.fixture
def app() -> Any:
    app = create_app(settings=GatewaySettings(key_cache_s=0))
    store = FakeStore()
    app.state.stores = Stores(Database(), *[store] * 7)  # type: ignore[arg-type]
    app.state.auth.keys = store
    app.middleware_stack = None
    for middleware in app.user_middleware:
        if "audit" in middleware.kwargs:
            middleware.kwargs["audit"] = store
    return app


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


async def test_create_maps_statuses_and_replays_a_repeated_key(app) -> None:  # type: ignore[no-untyped-def]
    order = work_order()
    app.state.bus._replies = scheduler = FakeScheduler({"status": "created", "work_order": order})
    body = {"asset_id": "pump-1", "type": "corrective", "title": "Seal leaks"}
    headers = AUTH | {"Idempotency-Key": "wo-1"}
    async with client(app) as http:
        first = await http.post("/v1/work-orders", json=body, headers=headers)
        assert first.status_code == 201, first.text
        assert first.json()["work_order_id"] == order["work_order_id"]
        again = await http.post("/v1/work-orders", json=body, headers=headers)
        assert again.status_code == 201 and again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
        other = await http.post("/v1/work-orders", json=body | {"title": "x"}, headers=headers)
        assert other.status_code == 422 and other.json()["type"].endswith("idempotency-mismatch")
    assert len(scheduler.commands) == 1  # the repeat never reached the scheduler
    sent = scheduler.commands[0]
    assert sent["action"] == "create" and sent["actor"] == "tester"
    assert sent["command_id"] == str(command_id("0123456789ab", "wo-1"))
    assert sent["fields"] == body  # only what the client set


async def test_refusals_become_problems_and_free_the_key(app) -> None:  # type: ignore[no-untyped-def]
    wo = str(uuid.uuid4())
    app.state.bus._replies = FakeScheduler(
        {"status": "conflict", "message": "cannot complete an open order"},
        {"status": "not_found", "message": f"no work order {wo}"},
        {"status": "invalid", "message": "unknown failure mode 'x'"},
    )
    findings = {"failure_found": True, "failure_mode": "seal_leak"}
    async with client(app) as http:
        conflict = await http.post(
            f"/v1/work-orders/{wo}/transitions",
            json={"action": "complete", "findings": findings},
            headers=AUTH | {"Idempotency-Key": "t-1"},
        )
        assert conflict.status_code == 409
        assert conflict.headers["content-type"] == "application/problem+json"
        assert conflict.json()["detail"] == "cannot complete an open order"
        missing = await http.post(
            f"/v1/work-orders/{wo}/transitions", json={"action": "start"}, headers=AUTH
        )
        assert missing.status_code == 404
        invalid = await http.patch(f"/v1/work-orders/{wo}", json={"priority": 2}, headers=AUTH)
        assert invalid.status_code == 422 and "failure mode" in invalid.json()["detail"]
    assert "t-1" not in app.state.stores.idempotency.idempotency  # abandoned: may be retried


async def test_bad_bodies_are_refused_before_any_command(app) -> None:  # type: ignore[no-untyped-def]
    app.state.bus._replies = scheduler = FakeScheduler()
    wo = str(uuid.uuid4())
    async with client(app) as http:
        no_findings = await http.post(
            f"/v1/work-orders/{wo}/transitions", json={"action": "complete"}, headers=AUTH
        )
        assert no_findings.status_code == 422
        assert no_findings.headers["content-type"] == "application/problem+json"
        assert "findings" in no_findings.json()["detail"]
        unknown = await http.post(
            f"/v1/work-orders/{wo}/transitions", json={"action": "explode"}, headers=AUTH
        )
        assert unknown.status_code == 422
        no_title = await http.post(
            "/v1/work-orders", json={"asset_id": "pump-1", "type": "corrective"}, headers=AUTH
        )
        assert no_title.status_code == 422
        assert no_title.json()["errors"][0]["loc"] == ["body", "title"]
        typo = await http.patch(f"/v1/work-orders/{wo}", json={"prio": 1}, headers=AUTH)
        assert typo.status_code == 422
        bad_id = await http.get("/v1/work-orders/not-a-uuid", headers=AUTH)
        assert bad_id.status_code == 422
        both = await http.put(
            "/v1/maintenance/plans/p1",
            json={"name": "x", "asset_id": "a", "asset_type": "pump", "interval_hours": 10,
                  "skill": "pump"},
            headers=AUTH,
        )  # fmt: skip
        assert both.status_code == 422
        backwards = await http.put(
            "/v1/assets/pump-1/production-windows",
            json={"windows": [{"start": "2026-03-02T10:00:00Z", "end": "2026-03-02T09:00:00Z"}]},
            headers=AUTH,
        )
        assert backwards.status_code == 422
    assert scheduler.commands == []


async def test_replan_without_a_plan_in_the_reply_is_accepted(app) -> None:  # type: ignore[no-untyped-def]
    app.state.bus._replies = FakeScheduler({"status": "ok", "message": "planning"})
    async with client(app) as http:
        answer = await http.post("/v1/schedule/replan", headers=AUTH)
    assert answer.status_code == 202 and answer.json()["status"] == "ok"


async def test_technician_upsert_sends_the_whole_technician(app) -> None:  # type: ignore[no-untyped-def]
    tech = {
        "name": "Ana",
        "skills": ["pump"],
        "shifts": [{"days": [0, 1, 2, 3, 4], "start": "06:00:00", "end": "14:00:00"}],
        "hourly_cost": 55.0,
    }
    app.state.bus._replies = scheduler = FakeScheduler(
        {"status": "created", "technician": tech | {"technician_id": "tech-1", "active": True}}
    )
    async with client(app) as http:
        answer = await http.put("/v1/technicians/tech-1", json=tech, headers=AUTH)
    assert answer.status_code == 201 and answer.json()["technician_id"] == "tech-1"
    assert scheduler.commands[0]["technician"]["technician_id"] == "tech-1"
    assert scheduler.commands[0]["action"] == "technician.upsert"


def test_a_nul_in_any_query_string_is_a_422_problem_not_a_500() -> None:
    import asyncio

    from pdm_gateway.middleware import NoNulInQuery

    reached: list[str] = []

    async def inner(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        reached.append(scope["path"])

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    app = NoNulInQuery(inner)
    scope = {"type": "http", "method": "GET", "path": "/v1/assets", "headers": []}
    asyncio.run(app(scope | {"query_string": b"site=a%00b"}, receive, send))
    assert sent[0]["status"] == 422 and reached == []
    asyncio.run(app(scope | {"query_string": b"site=ab"}, receive, send))
    assert reached == ["/v1/assets"]


async def test_a_what_if_is_waited_for_as_long_as_it_asks_to_solve(app) -> None:  # type: ignore[no-untyped-def]
    summary = {
        "created_at": NOW, "anchor": NOW, "horizon_h": 72, "trigger": "what-if",
        "method": "cp-sat", "solver_status": "OPTIMAL", "objective": 0, "wall_time_s": 0.1,
        "expected_failure_cost": 0.0, "risk_removed": 0.0, "scheduled": 0,
        "unschedulable": 0, "late": 0,
    }  # fmt: skip
    app.state.bus._replies = scheduler = FakeScheduler(
        {"status": "ok", "schedule": summary}, {"status": "ok", "schedule": summary}
    )
    async with client(app) as http:
        long = await http.post("/v1/schedule/what-if", json={"time_limit_s": 45}, headers=AUTH)
        assert long.status_code == 200, long.text
        plain = await http.post("/v1/schedule/what-if", json={}, headers=AUTH)
        assert plain.status_code == 200 and plain.json()["plan_id"] is None
    reply_timeout = app.state.bus.reply_timeout_s
    assert scheduler.timeouts == [reply_timeout + 45, reply_timeout]
