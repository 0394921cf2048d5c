"""Pure ASGI middleware (cheaper than BaseHTTPMiddleware on the read hot path): a request
body size limit and the audit log of writes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import structlog

from pdm_gateway.problems import problem_response
from pdm_gateway.store.audit_log import AuditStore

log = structlog.get_logger(__name__)
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """413 for a body over `max_bytes`, whether it declares its length or streams chunks."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in WRITES:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            None,
            413,
            f"request body larger than {self.max_bytes} bytes (PDM_GATEWAY_MAX_BODY_BYTES); "
            "split it into several requests",
            slug="too-large",
        )
        await response(scope, receive, send)


class NoNulInQuery:
    """422 for a query string holding a NUL character (`%00`): no parameter accepts one, and
    PostgreSQL refuses it in text, so without this check a filter would fail as a 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query: bytes = scope.get("query_string", b"") if scope["type"] == "http" else b""
        if b"%00" in query or b"\x00" in query:
            response = problem_response(
                None,
                422,
                "a query parameter contains a NUL character (%00), which no parameter accepts",
                slug="validation",
                title="Invalid request",
                errors=[{"loc": ["query"], "msg": "NUL character", "type": "nul_character"}],
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class AuditLog:
    """Record every write request (who, what, result) in `audit_log` after it is answered.
    A failed audit insert is logged, not turned into an error: the write itself happened."""

    def __init__(self, app: ASGIApp, audit: AuditStore) -> None:
        self.app = app
        self.audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in WRITES:
            await self.app(scope, receive, send)
            return
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            principal = scope.get("state", {}).get("principal")
            key_id = getattr(principal, "key_id", None)
            query = scope.get("query_string", b"").decode("latin-1")
            try:
                await self.audit.record(
                    key_id,
                    scope["method"],
                    scope["path"],
                    status,
                    {"query": query} if query else {},
                )
            except Exception as exc:  # the database may be down; the write still happened
                log.warning("audit insert failed", path=scope["path"], error=repr(exc))
