"""Security headers of the gateway: nosniff on every answer, no-store on plant data, a CSP and
frame policy on HTML that still lets the Swagger UI page load what it needs, streamed answers
left unbuffered, and no `server` banner from the real uvicorn the gateway starts."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import socket
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import uvicorn

from pdm_gateway import app as gateway_app
from pdm_gateway.api import models as models_api
from pdm_gateway.app import create_app
from pdm_gateway.headers import SecurityHeaders
from pdm_gateway.keys import Principal
from pdm_gateway.settings import GatewaySettings

TOKEN = "pdm_0123456789ab_" + "x" * 43
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class FakeKeys:
    """One admin key; audit records dropped."""

    async def authenticate(self, key_id: str, secret: str) -> Principal | None:
        return Principal(key_id, "tester", frozenset({"admin"}))

    async def record(self, *args: Any) -> None:
        return None


@pytest.fixture
def app() -> Any:
    app = create_app(settings=GatewaySettings(key_cache_s=0))
    app.state.auth.keys = FakeKeys()
    app.middleware_stack = None
    for middleware in app.user_middleware:
        if "audit" in middleware.kwargs:
            middleware.kwargs["audit"] = FakeKeys()
    app.state.latest.load("pump-1", {"temperature": (datetime.now(UTC), 65.2)})
    return app


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


def policy(answer: httpx.Response) -> dict[str, list[str]]:
    """The answer's Content-Security-Policy as directive -> sources."""
    directives = [d.split() for d in answer.headers["content-security-policy"].split(";")]
    return {d[0]: d[1:] for d in directives if d}


async def test_plant_data_and_problems_are_not_stored_nor_sniffed(app: Any) -> None:
    async with client(app) as http:
        data = await http.get("/v1/assets/pump-1/readings/latest", headers=AUTH)
        unauthenticated = await http.get("/v1/assets/pump-1/readings/latest")
    assert data.status_code == 200 and data.json()["source"] == "cache"
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["content-type"] == "application/problem+json"
    for answer in (data, unauthenticated):
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["cache-control"] == "no-store"
        assert "server" not in answer.headers


async def test_probes_are_not_sniffed(app: Any) -> None:
    async with client(app) as http:
        health = await http.get("/health")
        metrics = await http.get("/metrics")
    assert health.status_code == 200 and health.json()["status"]
    for answer in (health, metrics):
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert "content-security-policy" not in answer.headers  # not HTML


async def test_docs_page_is_framed_by_nobody_and_allowed_what_it_loads(app: Any) -> None:
    async with client(app) as http:
        docs = await http.get("/docs")
        redoc = await http.get("/redoc")
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    assert redoc.status_code == 404  # the gateway serves Swagger UI only
    assert docs.headers["x-frame-options"] == "DENY"
    assert docs.headers["x-content-type-options"] == "nosniff"
    csp = policy(docs)
    assert csp["default-src"] == ["'none'"] and csp["frame-ancestors"] == ["'none'"]
    page = docs.text
    # every script and style sheet the page loads, and its inline bootstrap by hash
    for src in re.findall(r'<script src="([^"]+)"', page):
        assert src in csp["script-src"], src
    for href in re.findall(r'rel="stylesheet" href="([^"]+)"', page):
        assert href in csp["style-src"], href
    icons = re.findall(r'rel="shortcut icon" href="([^"]+)"', page)
    assert icons and all(icon in csp["img-src"] for icon in icons)
    inline = re.findall(r"<script>(.*?)</script>", page, re.DOTALL)
    assert inline, "FastAPI's page bootstraps Swagger UI inline"
    for script in inline:
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp["script-src"]
    assert "'unsafe-inline'" not in csp["script-src"]
    assert "'self'" in csp["connect-src"]  # the schema and "Try it out"
    assert int(docs.headers["content-length"]) == len(docs.content)


async def test_drift_report_keeps_its_sandbox_and_gains_the_frame_policy(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Reports:
        async def report_html(self, report_id: uuid.UUID) -> tuple[bool, str]:
            return True, "<html><script>evidently()</script></html>"

    monkeypatch.setattr(models_api, "drift_reader", lambda request: Reports())
    async with client(app) as http:
        page = await http.get(f"/v1/drift/reports/{uuid.uuid4()}/html", headers=AUTH)
    assert page.status_code == 200, page.text
    csp = policy(page)
    assert csp["sandbox"] == ["allow-scripts", "allow-popups"]  # its own, unchanged
    assert csp["frame-ancestors"] == ["'none'"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"


async def test_streamed_answers_pass_unbuffered_and_websockets_untouched() -> None:
    sent: list[dict[str, Any]] = []

    async def streaming(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.accept"})
            return
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for chunk in (b"data: 1\n\n", b"data: 2\n\n"):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    middleware = SecurityHeaders(streaming, docs_paths=["/docs"])
    await middleware({"type": "http", "path": "/v1/stream/sse", "headers": []}, receive, send)
    assert [m["type"] for m in sent] == ["http.response.start"] + ["http.response.body"] * 3
    assert [m["body"] for m in sent[1:]] == [b"data: 1\n\n", b"data: 2\n\n", b""]
    headers = dict(sent[0]["headers"])
    assert headers[b"x-content-type-options"] == b"nosniff"
    assert headers[b"cache-control"] == b"no-store"
    sent.clear()
    await middleware({"type": "websocket", "path": "/v1/stream", "headers": []}, receive, send)
    assert sent == [{"type": "websocket.accept"}]


async def test_the_uvicorn_the_gateway_starts_sends_no_server_banner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The options `run` passes to uvicorn, served for real on a loopback socket."""
    options: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: options.update(kwargs))
    app = create_app(settings=GatewaySettings())
    gateway_app.run(app, 0)
    assert options["server_header"] is False
    options |= {"lifespan": "off", "host": "127.0.0.1"}  # no database or broker here
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, **options))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(100):
            if server.started:
                break
            await asyncio.sleep(0.02)
        async with httpx.AsyncClient() as http:
            answer = await http.get(f"http://127.0.0.1:{port}/health")
    finally:
        server.should_exit = True
        await serving
        sock.close()
    assert answer.status_code == 200
    assert "server" not in answer.headers
    assert answer.headers["x-content-type-options"] == "nosniff"
