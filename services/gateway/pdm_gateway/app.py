"""Wiring of the API gateway: settings, database pool, Kafka bus and stream, routes, probes.

The gateway reads the tables of other services (CQRS read side) and writes only its own
(`api_keys`, `audit_log`, `idempotency_keys`); every change elsewhere is a Kafka command or
HTTP-ingested readings on `pdm.readings.v1`. It starts while Kafka or PostgreSQL is down
and reports not-ready until both answer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pdm_common import topics
from pdm_common.broker import ensure_topics
from pdm_common.db.pool import create_pool, ping
from pdm_common.db.watch import DatabaseWatch
from pdm_common.events import ReadingSnapshot
from pdm_common.service import BackgroundTask
from pdm_common.settings import CommonSettings
from pdm_common.telemetry import REGISTRY, configure_logging
from pdm_gateway import SERVICE, probes
from pdm_gateway.api import (
    admin,
    alarms,
    assets,
    maintenance,
    models,
    predictions,
    readings,
    reliability,
    simulator,
)
from pdm_gateway.api import stream as stream_api
from pdm_gateway.bus import Bus
from pdm_gateway.headers import SecurityHeaders
from pdm_gateway.latest import LatestCache
from pdm_gateway.middleware import AuditLog, BodyLimit, NoNulInQuery
from pdm_gateway.model_registry import ModelRegistryView
from pdm_gateway.problems import MEDIA_TYPE as PROBLEM_MEDIA_TYPE
from pdm_gateway.problems import ProblemDetail
from pdm_gateway.problems import install as install_problems
from pdm_gateway.security import SECURITY_SCHEMES, Authenticator
from pdm_gateway.settings import GatewaySettings
from pdm_gateway.store import Database, Stores
from pdm_gateway.store.idempotency_keys import IdempotencyStore
from pdm_gateway.stream import StreamHub

log = structlog.get_logger(__name__)
DESCRIPTION = """\
The one HTTP entry of the predictive-maintenance platform.

Every `/v1` route needs an API key (`Authorization: Bearer pdm_...` or `X-API-Key`), with the
scope it names: `read`, `write` (implies read) or `admin` (implies both). Create one with
`pdm apikey create --name me --scopes read,write`. Errors are RFC 9457 problem details
(`application/problem+json`); `429` carries `Retry-After`. Lists are keyset-paginated:
pass `next_cursor` back as `cursor`. The topics behind the API are described by the
AsyncAPI document at `/asyncapi.json`.
"""


def create_app(
    common: CommonSettings | None = None, settings: GatewaySettings | None = None
) -> FastAPI:
    common = common or CommonSettings()
    settings = settings or GatewaySettings()
    configure_logging(SERVICE, common.log_level, common.log_format)
    watch = DatabaseWatch(common.database_url)
    db = Database(watch=watch)
    stores = Stores.over(db)
    bus = Bus(common, settings.reply_timeout_s)
    model_registry = ModelRegistryView(common.mlflow_tracking_uri, settings.registry_timeout_s)
    latest = LatestCache(settings.latest_cache_assets)
    hub = StreamHub(
        common.kafka_bootstrap,
        settings.stream_queue,
        settings.stream_max_dropped,
        latest if settings.latest_cache_assets else None,
        common.kafka_fetch_max_wait_ms,
    )

    background = (
        BackgroundTask("gateway topics", lambda: _ensure_topics(common)),
        BackgroundTask(
            "gateway idempotency purge",
            lambda: _purge_idempotency(stores.idempotency, settings.idempotency_ttl_h),
        ),
        BackgroundTask("gateway registry client import", model_registry.warm),
        BackgroundTask("gateway database watch", watch.run),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = db.pool = await create_pool(
            common.database_url,
            min_size=1,
            max_size=common.database_pool_size,
            name=SERVICE,
            statement_timeout_ms=common.database_statement_timeout_ms,
        )
        bus.start()
        hub.start()
        for task in background:
            task.start()
        try:
            yield
        finally:
            for task in background:
                await task.stop()
            await hub.stop()
            await bus.stop()
            await pool.close()

    docs = settings.public_docs
    app = FastAPI(
        title="Predictive-maintenance platform API",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.settings = settings
    app.state.stores = stores
    app.state.bus = bus
    app.state.hub = hub
    app.state.latest = latest
    app.state.auth = Authenticator(stores.keys, settings)
    app.state.model_registry = model_registry
    app.state.drift_checks = models.CheckLimiter(settings.drift_check_per_min)
    install_problems(app)
    # readings first: the hottest route (latest readings) is matched before the others
    for module in (readings, assets, alarms, predictions, simulator, admin, stream_api):
        app.include_router(module.router)
    for module in (maintenance, reliability, models):
        app.include_router(module.router)

    async def database() -> bool:
        return watch.down is None and await ping(db.pool, timeout=0.5) if db.pool else False

    async def broker() -> bool:
        return bus.replies_ready and hub.connected

    probes.install(app, {"database": database, "schema": stores.schema_ready, "broker": broker})

    if docs:

        @app.get("/asyncapi.json", tags=["probes"], response_model=dict[str, Any])
        async def asyncapi() -> dict[str, Any]:
            """The AsyncAPI document of every topic of the platform."""
            from pdm_common.asyncapi import build

            return build()

    @app.get("/metrics", tags=["probes"], response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        """Prometheus metrics."""
        return PlainTextResponse(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "Idempotency-Key"],
            expose_headers=["Retry-After", "X-Next-Cursor"],
        )
    # Outermost last: the audit log also records what the body limit refused.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(NoNulInQuery)
    app.add_middleware(AuditLog, audit=stores.audit)
    app.add_middleware(SecurityHeaders, docs_paths=[app.docs_url])  # outermost: all answers
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, made to say what the gateway really answers: every error is a
    problem document (`application/problem+json`, also FastAPI's own 422), every `/v1` route
    can answer 401/403/429 (the key check) and every write 413 (the body limit); plus the
    schema of the readings body (parsed by hand, see `post_readings`)."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas["ReadingSnapshot"] = ReadingSnapshot.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    schemas["ProblemDetail"] = ProblemDetail.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schema["components"]["securitySchemes"] = SECURITY_SCHEMES
    problem = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemDetail"}}}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            if path.startswith("/v1/"):
                operation["security"] = [{name: []} for name in SECURITY_SCHEMES]
                extra = [401, 403, 429, 503]
                extra += [413] if method in ("post", "patch", "put") else []
                for status in extra:
                    responses.setdefault(str(status), {"description": HTTPStatus(status).phrase})
            if operation.get("parameters") or operation.get("requestBody"):
                responses.setdefault("422", {"description": "Invalid request"})
            if operation.get("requestBody"):
                responses.setdefault("400", {"description": "Body is not JSON"})
            for status, response in responses.items():
                if status[0] in "45":
                    response["content"] = problem
    app.openapi_schema = schema
    return schema


async def _ensure_topics(common: CommonSettings) -> None:
    """Create missing topics, retrying in the background until the broker answers: the
    gateway serves reads while Kafka is away (the kit's start-up creates topics first and
    would hold the database pool back until then)."""
    delay = 1.0
    while True:
        try:
            await ensure_topics(
                common.kafka_bootstrap, topics.all_topics(), partitions=common.kafka_partitions
            )
            return
        except Exception as exc:
            log.warning("cannot create topics yet", error=repr(exc), retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


async def _purge_idempotency(store: IdempotencyStore, ttl_h: float) -> None:
    while True:
        with contextlib.suppress(Exception):
            removed = await store.purge(datetime.now(UTC) - timedelta(hours=ttl_h))
            if removed:
                log.info("idempotency keys expired", removed=removed)
        await asyncio.sleep(600)


def run(app: FastAPI, port: int, host: str = "0.0.0.0", ws_compression: bool = False) -> None:
    import uvicorn

    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        ws_per_message_deflate=ws_compression,
        server_header=False,  # no `server: uvicorn` banner
    )
