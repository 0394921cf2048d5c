"""What every service process shares: the ASGI app with `/health`, `/ready`, `/metrics`
around its FastStream broker, and the uvicorn runner.

`/health` answers while the process runs (liveness); `/ready` is 200 only when every
readiness check passes (broker reachable, database reachable, consumer not paused), so
Kubernetes stops routing to, and alerts on, a service that cannot do its work.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from faststream.asgi import AsgiFastStream
from faststream.kafka import KafkaBroker
from prometheus_client import make_asgi_app
from psycopg_pool import AsyncConnectionPool

from pdm_common import topics
from pdm_common.broker import BrokerPublisher, ensure_topics, make_broker, ping_broker
from pdm_common.db.pool import create_pool
from pdm_common.delivery import BatchProcessor, ReliableBatchHandler, RetryPolicy
from pdm_common.settings import CommonSettings
from pdm_common.telemetry import REGISTRY, configure_logging, metrics

ReadinessCheck = Callable[[], Awaitable[bool]]
Details = Callable[[], dict[str, Any]]
Scope = dict[str, Any]
T = TypeVar("T")


class PauseFlag:
    """Set by the delivery mechanism while a dependency is down; read by `/ready`."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.paused = False

    def __call__(self, paused: bool) -> None:
        self.paused = paused
        metrics.paused.labels(self.service).set(int(paused))

    async def check(self) -> bool:
        return not self.paused


def _json_response(status: int, body: dict[str, Any]) -> Callable[..., Awaitable[None]]:
    payload = json.dumps(body).encode()

    async def send_it(send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    return send_it


def health_app(service: str) -> Callable[..., Awaitable[None]]:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await _json_response(200, {"status": "alive", "service": service})(send)

    return app


def ready_app(
    service: str, checks: dict[str, ReadinessCheck], details: Details | None = None
) -> Callable[..., Awaitable[None]]:
    """`details` adds what a service wants an operator to see without gating readiness on
    it (e.g. which champions are loaded)."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        names = list(checks)
        results = await asyncio.gather(*(_safe(checks[n]) for n in names))
        status = dict(zip(names, results, strict=True))
        ok = all(results)
        body = {"ready": ok, "service": service, "checks": status}
        if details is not None:
            body |= details()
        await _json_response(200 if ok else 503, body)(send)

    return app


#: A probe answers within a second whatever is down: a check still running by then counts
#: as failed (a kubelet's probe times out after 1 s by default).
CHECK_TIMEOUT_S = 0.8


async def _safe(check: ReadinessCheck) -> bool:
    try:
        return bool(await asyncio.wait_for(check(), CHECK_TIMEOUT_S))
    except Exception:
        return False


def asyncapi_app() -> Callable[..., Awaitable[None]]:
    """The platform's AsyncAPI document (see `asyncapi.py` for why not FastStream's own)."""
    from pdm_common.asyncapi import build

    document = build()

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        await _json_response(200, document)(send)

    return app


def make_service_app(
    broker: KafkaBroker,
    service: str,
    *,
    readiness: dict[str, ReadinessCheck],
    details: Details | None = None,
    on_startup: Sequence[Callable[[], Awaitable[None]]] = (),
    on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
    after_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
) -> AsgiFastStream:
    checks = {"broker": lambda: ping_broker(broker), **readiness}
    return AsgiFastStream(
        broker,
        asgi_routes=[
            ("/health", health_app(service)),
            ("/ready", ready_app(service, checks, details)),
            ("/metrics", make_asgi_app(REGISTRY)),
            ("/asyncapi.json", asyncapi_app()),
        ],
        on_startup=list(on_startup),
        on_shutdown=list(on_shutdown),
        after_shutdown=list(after_shutdown),
    )


class BackgroundTask:
    """One long-running coroutine a service starts at start-up and cancels at shutdown
    (a timer, a simulator's tick loop)."""

    def __init__(self, name: str, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self.name = name
        self.run = run
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


@dataclass
class ServiceKit:
    """What every service wires the same way: logging, the broker and its publisher, the
    retry policy, the pause flag behind `/ready`, and the start-up that creates missing topics
    (a no-op where Strimzi owns them) and opens the database pool without waiting for it."""

    common: CommonSettings
    service: str
    broker: KafkaBroker
    publisher: BrokerPublisher
    policy: RetryPolicy
    paused: PauseFlag

    @classmethod
    def create(cls, common: CommonSettings, service: str) -> ServiceKit:
        configure_logging(service, common.log_level, common.log_format)
        broker = make_broker(common, service)
        return cls(
            common,
            service,
            broker,
            BrokerPublisher(common, service),
            RetryPolicy.from_settings(common),
            PauseFlag(service),
        )

    def reliable(self, processor: BatchProcessor[T]) -> ReliableBatchHandler[T]:
        """The platform's retry/DLQ mechanism around a service's batch processor (generic, so
        the type a processor decodes to is checked against the items it processes)."""
        return ReliableBatchHandler(
            processor,
            self.publisher,
            service=self.service,
            policy=self.policy,
            on_pause=self.paused,
        )

    def follow_model_events(self, processor: BatchProcessor[Any], group_prefix: str) -> None:
        """Every process hears every alias move on `pdm.models.v1`."""
        self.broadcast(topics.MODELS, processor, f"{group_prefix}.models", relaxed=True)

    def broadcast(
        self,
        topic: str,
        processor: BatchProcessor[Any],
        group_prefix: str,
        max_records: int = 100,
        *,
        relaxed: bool = False,
    ) -> None:
        """Subscribe so that *every* process of the service hears every event of `topic` (not
        one consumer of a group): a consumer group of its own per process (host + pid), read
        from the start, so the processor must tolerate old events."""
        from pdm_common.broker import subscribe_reliably

        instance = f"{socket.gethostname()}-{os.getpid()}"
        subscribe_reliably(
            self.broker,
            topic,
            self.reliable(processor),
            group_id=f"{group_prefix}.{instance}",
            settings=self.common,
            max_records=max_records,
            relaxed=relaxed,
        )

    async def start(self) -> AsyncConnectionPool:
        c = self.common
        await ensure_topics(c.kafka_bootstrap, topics.all_topics(), partitions=c.kafka_partitions)
        return await create_pool(
            c.database_url,
            min_size=1,
            max_size=c.database_pool_size,
            name=self.service,
            statement_timeout_ms=c.database_statement_timeout_ms,
        )

    def app(
        self,
        *,
        database_ready: ReadinessCheck,
        details: Details | None = None,
        on_startup: Sequence[Callable[[], Awaitable[None]]] = (),
        after_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
    ) -> AsgiFastStream:
        return make_service_app(
            self.broker,
            self.service,
            readiness={"database": database_ready, "consumer": self.paused.check},
            details=details,
            on_startup=on_startup,
            after_shutdown=[*after_shutdown, self.publisher.stop],
        )


def run_service(app: AsgiFastStream, port: int, host: str = "0.0.0.0") -> None:
    """Serve the app (broker consumers start in its lifespan) until SIGINT/SIGTERM."""
    import gc

    import uvicorn

    # Batch consumers allocate millions of short-lived objects per second; with the default
    # thresholds the cyclic GC rescans the long-lived heap (modules, models) over and over.
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, lifespan="on")
