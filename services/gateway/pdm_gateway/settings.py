"""Gateway settings (`PDM_GATEWAY_*`); connections come from `CommonSettings`."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from pdm_common.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PDM_GATEWAY_")

    http_port: int = Field(8000, description="Port of the HTTP API, `/docs` and the probes.")
    cors_origins: list[str] = Field(
        default_factory=list,
        description='Origins allowed to call the API from a browser, as JSON (["*"] for any); '
        "none by default.",
    )
    public_docs: bool = Field(
        True,
        description="Serve `/docs`, `/openapi.json` and `/asyncapi.json` without a key (they "
        "describe the API and hold no plant data).",
    )
    rate_limit_per_s: float = Field(
        100.0, gt=0, description="Requests per second per API key (a key may override it)."
    )
    rate_limit_burst_s: float = Field(
        2.0,
        gt=0,
        description="Burst allowance in seconds of the key's rate (bucket = rate x this).",
    )
    key_cache_s: float = Field(
        5.0,
        ge=0,
        description="How long a looked-up API key is trusted before the database is asked "
        "again; a revoked key stops working within this time.",
    )
    reply_timeout_s: float = Field(
        10.0,
        gt=0,
        le=120,
        description="Longest wait for a service's Kafka reply (predictions, asset commands) "
        "before answering 504.",
    )
    registry_timeout_s: float = Field(
        5.0,
        gt=0,
        le=60,
        description="Longest wait for the MLflow registry behind GET /v1/models before "
        "answering 503 (the answer is kept for a few seconds).",
    )
    drift_check_per_min: float = Field(
        2.0,
        gt=0,
        description="POST /v1/drift/check requests per minute per API key (a check reads "
        "every model's recent features); 429 with Retry-After above.",
    )
    max_body_bytes: int = Field(
        1_048_576, ge=1024, description="Largest request body accepted (413 above)."
    )
    max_page: int = Field(10_000, ge=10, description="Most rows a list endpoint returns at once.")
    export_chunk_rows: int = Field(
        5_000, ge=100, description="Rows fetched per round trip while streaming a CSV export."
    )
    export_settle_s: float = Field(
        5.0,
        ge=0,
        description="An export without `to` stops this long before now, so readings still in "
        "flight are picked up by the next incremental export instead of being skipped.",
    )
    stream_queue: int = Field(
        1_000,
        ge=10,
        description="Events buffered per WebSocket client; when full, new events for that "
        "client are dropped (and counted) instead of slowing the others.",
    )
    stream_max_dropped: int = Field(
        10_000,
        ge=0,
        description="A WebSocket client that has missed this many events is disconnected "
        "(close code 1013, try again later); 0 = never.",
    )
    ws_compression: bool = Field(
        False,
        description="Offer permessage-deflate on /v1/stream: less bandwidth, but it nearly "
        "doubles the gateway's CPU per frame (docs/benchmarks.md).",
    )
    idempotency_ttl_h: float = Field(
        24.0, gt=0, description="How long an Idempotency-Key of POST /v1/readings is kept."
    )
    latest_cache_assets: int = Field(
        100_000,
        ge=0,
        description="Assets whose latest readings are kept in memory from the live stream "
        "(served without a database round trip); 0 = always read the database.",
    )
