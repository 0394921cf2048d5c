"""`/health` and `/ready` of the gateway: the service kit's probes, so the gateway's answers
and readiness rules are every service's (checks run together, each bounded in time; one that
fails or hangs counts as not ready).

The kit's probes are bare ASGI apps. The gateway runs them in process and answers what they
decided through FastAPI routes, so the probes stay in the OpenAPI document, GET-only, and
keep the framing of every other gateway answer (compact JSON with a Content-Length).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from pdm_common.service import ReadinessCheck, health_app, ready_app
from pdm_gateway import SERVICE

Message = MutableMapping[str, Any]
ProbeApp = Callable[..., Awaitable[None]]


async def answer_of(app: ProbeApp) -> tuple[int, dict[str, Any]]:
    """Status and JSON body the probe app answers to a GET."""
    status = 500
    body = b""

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status, body
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body += message.get("body", b"")

    await app({"type": "http", "method": "GET", "path": "/", "headers": []}, receive, send)
    return status, json.loads(body)


def install(app: FastAPI, readiness: dict[str, ReadinessCheck]) -> None:
    """Add `/health` (liveness) and `/ready` (every check in `readiness` passes)."""
    alive = health_app(SERVICE)
    ready_check = ready_app(SERVICE, readiness)

    @app.get("/health", tags=["probes"])
    async def health() -> dict[str, str]:
        """Alive (liveness probe)."""
        _, body = await answer_of(alive)
        return body

    @app.get("/ready", tags=["probes"], responses={503: {"description": "Not ready"}})
    async def ready() -> JSONResponse:
        """Database reachable and migrated, broker connected (readiness probe)."""
        status, body = await answer_of(ready_check)
        return JSONResponse(body, status_code=status)
