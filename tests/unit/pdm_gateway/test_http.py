"""The gateway's HTTP layer in process, with fake storage and a fake Kafka side: how service
answers, timeouts, an unavailable database and idempotency states become HTTP answers.
(The real servers are exercised in tests/integration/test_gateway*.py.)"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import psycopg
import pytest

from pdm_common.request_reply import ReplyTimeout
from pdm_gateway.app import create_app
from pdm_gateway.bus import Bus
from pdm_gateway.keys import Principal
from pdm_gateway.settings import GatewaySettings
from pdm_gateway.store import Database, Stores
from pdm_gateway.store.idempotency_keys import Claim

TOKEN = "pdm_0123456789ab_" + "x" * 43
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class FakeStore:
    """Every store the tests reach (keys, audit log, idempotency keys, assets) in one."""

    def __init__(self) -> None:
        self.idempotency: dict[str, tuple[str, int | None, Any]] = {}
        self.audited: list[tuple[str | None, str, str, int]] = []
        self.database_down = False

    async def authenticate(self, key_id: str, secret: str) -> Principal | None:
        return (
            Principal(key_id, "tester", frozenset({"admin"})) if key_id == "0123456789ab" else None
        )

    async def page(self, *args: Any) -> list[dict[str, Any]]:
        if self.database_down:
            raise psycopg.OperationalError("connection refused")
        return []

    async def record(self, key_id: str | None, method: str, path: str, status: int, _: Any) -> None:
        self.audited.append((key_id, method, path, status))

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


class FakeReplies:
    def __init__(self, answers: list[list[dict[str, Any]]] | Exception) -> None:
        self.answers = answers
        self.calls: list[tuple[str, Any]] = []

    async def call(self, topic: str, body: Any, *, key: str | None, timeout_s: float):  # type: ignore[no-untyped-def]
        self.calls.append((topic, body))
        if isinstance(self.answers, Exception):
            raise self.answers
        return [json.dumps(p).encode() for p in self.answers.pop(0)], 1.0


@pytest.fixture
def gateway() -> tuple[Any, FakeStore, list[Any]]:
    app = create_app(settings=GatewaySettings(key_cache_s=0))
    store = FakeStore()
    published: list[Any] = []
    app.state.stores = Stores(Database(), *[store] * 7)  # type: ignore[arg-type]
    app.state.auth.keys = store
    app.middleware_stack = None  # rebuilt with the fake store on the audit middleware
    bus: Bus = app.state.bus

    async def publish(messages: Any) -> None:
        published.extend(messages)

    bus.publish = publish  # type: ignore[method-assign]
    for middleware in app.user_middleware:
        if "audit" in middleware.kwargs:
            middleware.kwargs["audit"] = store
    return app, store, published


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


async def test_database_down_is_503_with_retry_after(gateway) -> None:  # type: ignore[no-untyped-def]
    app, store, _ = gateway
    store.database_down = True
    async with client(app) as http:
        answer = await http.get("/v1/assets", headers=AUTH)
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["retry-after"] == "5"
    assert answer.json()["type"].endswith("database-unavailable")


async def test_prediction_errors_and_timeouts_map_to_http(gateway) -> None:  # type: ignore[no-untyped-def]
    app, _, _ = gateway
    error = {
        "event_type": "prediction.error",
        "source": "prediction",
        "code": "missing_sensors",
        "message": "no recent torque",
        "missing": ["torque"],
    }
    app.state.bus._replies = FakeReplies([[error]])
    body = {"asset_id": "m-1", "asset_type": "milling", "trigger": "periodic"}
    async with client(app) as http:
        answer = await http.post("/v1/predict", json=body, headers=AUTH)
        assert answer.status_code == 409
        assert answer.json()["missing"] == ["torque"] and answer.json()["code"] == "missing_sensors"
        sent = app.state.bus._replies.calls[0][1]
        assert sent["trigger"] == "request"  # a client cannot pose as the timer
        app.state.bus._replies = FakeReplies(ReplyTimeout("late"))
        late = await http.post("/v1/predict", json=body, headers=AUTH)
        assert late.status_code == 504 and "prediction service" in late.json()["detail"]
        app.state.bus._replies = None
        down = await http.post("/v1/predict", json=body, headers=AUTH)
        assert down.status_code == 503 and down.headers["retry-after"] == "2"


async def test_batch_parts_are_merged_in_order(gateway) -> None:  # type: ignore[no-untyped-def]
    app, _, _ = gateway
    batch_id = str(uuid.uuid4())

    def part(n: int, asset: str) -> dict[str, Any]:
        return {
            "event_type": "prediction.batch",
            "source": "prediction",
            "batch_id": batch_id,
            "part": n,
            "parts": 2,
            "requests": 2,
            "errors": [
                {"event_type": "prediction.error", "source": "prediction", "asset_id": asset,
                 "code": "no_champion", "message": "none"}
            ],
        }  # fmt: skip

    app.state.bus._replies = FakeReplies([[part(2, "b"), part(1, "a")]])
    requests = [{"asset_id": a, "asset_type": "milling"} for a in ("a", "b")]
    async with client(app) as http:
        answer = await http.post("/v1/predict/batch", json={"requests": requests}, headers=AUTH)
    assert answer.status_code == 200
    merged = answer.json()
    assert (merged["part"], merged["parts"]) == (1, 1)
    assert [e["asset_id"] for e in merged["errors"]] == ["a", "b"]


async def test_idempotency_replay_mismatch_and_in_flight(gateway) -> None:  # type: ignore[no-untyped-def]
    app, store, published = gateway
    reading = {"asset_id": "p1", "ts": "2026-01-01T00:00:00Z", "readings": {"t": 1.0}}
    headers = AUTH | {"Idempotency-Key": "k1"}
    async with client(app) as http:
        first = await http.post("/v1/readings", json=reading, headers=headers)
        second = await http.post("/v1/readings", json=reading, headers=headers)
        other = await http.post("/v1/readings", json=[reading, reading], headers=headers)
        store.idempotency["k2"] = (store.idempotency["k1"][0], None, None)  # first still running
        busy = await http.post(
            "/v1/readings", json=reading, headers=AUTH | {"Idempotency-Key": "k2"}
        )
    assert first.status_code == 202 and second.status_code == 202
    assert second.json()["replayed"] is True and first.json()["replayed"] is False
    assert len(published) == 1  # the replay was not published again
    message = json.loads(published[0].value)
    assert message["message_id"] == "http:0123456789ab:k1:0"
    assert published[0].key == b"p1"
    assert other.status_code == 422 and other.json()["type"].endswith("idempotency-mismatch")
    assert busy.status_code == 409 and busy.headers["retry-after"] == "1"
    assert [a[3] for a in store.audited] == [202, 202, 422, 409]


async def test_body_limit_counts_streamed_chunks(gateway) -> None:  # type: ignore[no-untyped-def]
    app, _, published = gateway
    app.state.settings.max_body_bytes = 2048  # the middleware holds its own copy: rebuild
    for middleware in app.user_middleware:
        if "max_bytes" in middleware.kwargs:
            middleware.kwargs["max_bytes"] = 2048
    app.middleware_stack = None

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(10):
            yield b" " * 1000  # no Content-Length: only counting can catch it

    async with client(app) as http:
        answer = await http.post("/v1/readings", content=chunks(), headers=AUTH)
    assert answer.status_code == 413
    assert published == []


async def test_cors_is_off_by_default_and_configurable() -> None:
    preflight = {
        "Origin": "https://dashboard.plant.example",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "Authorization",
    }
    async with client(create_app()) as http:
        closed = await http.options("/v1/assets", headers=preflight)
    assert "access-control-allow-origin" not in closed.headers
    app = create_app(settings=GatewaySettings(cors_origins=["https://dashboard.plant.example"]))
    async with client(app) as http:
        opened = await http.options("/v1/assets", headers=preflight)
        other = await http.options(
            "/v1/assets", headers=preflight | {"Origin": "https://evil.example"}
        )
    assert opened.status_code == 200
    assert opened.headers["access-control-allow-origin"] == "https://dashboard.plant.example"
    assert "authorization" in opened.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-origin" not in other.headers


async def test_probes_answer_as_every_service_does() -> None:
    app = create_app()  # no lifespan: no pool, no broker connection
    async with client(app) as http:
        alive = await http.get("/health")
        ready = await http.get("/ready")
    assert alive.status_code == 200 and alive.json() == {"status": "alive", "service": "gateway"}
    assert alive.content == b'{"status":"alive","service":"gateway"}'
    assert ready.status_code == 503
    assert ready.json() == {
        "ready": False,
        "service": "gateway",
        "checks": {"database": False, "schema": False, "broker": False},
    }


async def test_a_reply_is_parsed_once_into_its_type(gateway) -> None:  # type: ignore[no-untyped-def]
    app, _, _ = gateway
    prediction = {
        "event_type": "prediction.made",
        "source": "prediction",
        "asset_id": "m-1",
        "asset_type": "milling",
        "health_score": 90.0,
        "health_formula": "100 - points",
        "confidence": 1.0,
    }
    app.state.bus._replies = FakeReplies([[prediction]])
    body = {"asset_id": "m-1", "asset_type": "milling"}
    async with client(app) as http:
        answer = await http.post("/v1/predict", json=body, headers=AUTH)
    assert answer.status_code == 200
    assert (
        answer.json()["health_score"] == 90.0 and answer.json()["event_type"] == "prediction.made"
    )


async def test_a_type_without_a_champion_yet_is_503_with_retry_after(gateway) -> None:  # type: ignore[no-untyped-def]
    app, _, _ = gateway
    error = {
        "event_type": "prediction.error",
        "source": "prediction",
        "asset_id": "pump-001",
        "code": "no_champion",
        "message": "failure-pump: no version holds the alias champion",
    }
    app.state.bus._replies = FakeReplies([[error]])
    async with client(app) as http:
        answer = await http.post(
            "/v1/predict", json={"asset_id": "pump-001", "asset_type": "pump"}, headers=AUTH
        )
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "60"
    assert answer.json()["code"] == "no_champion" and "failure-pump" in answer.json()["detail"]
