"""Readings: latest per sensor, raw pages, buckets, the CSV export, and HTTP ingestion."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from pdm_common import topics
from pdm_common.db.queries import BUCKET_INTERVALS, Agg, Bucket
from pdm_common.delivery import Outgoing
from pdm_common.events import parse_gateway_message
from pdm_gateway import cursors
from pdm_gateway.api.deps import (
    AssetIdPath,
    CursorQuery,
    FromQuery,
    LimitQuery,
    SensorQuery,
    ToQuery,
    aware,
    bus,
    decode_cursor,
    page_limit,
    settings,
    stores,
    time_range,
)
from pdm_gateway.api.schemas.readings import Bucket as BucketModel
from pdm_gateway.api.schemas.readings import (
    BucketedReadings,
    LatestReadings,
    RawReading,
    RawReadingsPage,
    Reading,
    ReadingsAccepted,
)
from pdm_gateway.idempotency import IdempotentRequest
from pdm_gateway.keys import Principal
from pdm_gateway.latest import LatestCache
from pdm_gateway.problems import Problem, problem_responses
from pdm_gateway.security import READ, WRITE

router = APIRouter(prefix="/v1", tags=["readings"])
BUCKET_SECONDS = {"1m": 60, "1h": 3600, "1d": 86400}
MAX_BUCKETS = 10_000
IDEMPOTENCY_KEY = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=128,
        description="Makes a retry safe: a repeat with the same key and body is answered "
        "like the first and not published again (kept PDM_GATEWAY_IDEMPOTENCY_TTL_H hours).",
    ),
]


@router.get(
    "/assets/{asset_id}/readings/latest",
    response_model=LatestReadings,
    responses=problem_responses(401, 403, 404, 429),
)
async def latest(request: Request, asset_id: AssetIdPath, _: Principal = READ) -> LatestReadings:
    """The newest reading of every sensor of the asset."""
    cache: LatestCache = request.app.state.latest
    rows = cache.get(asset_id)
    source = "cache"
    if rows is None:
        source = "database"
        found = await stores(request).readings.latest(asset_id)
        if not found:
            raise Problem(404, f"no readings of asset {asset_id!r}", slug="not-found")
        rows = cache.load(asset_id, found)
    return LatestReadings(
        asset_id=asset_id,
        readings={s: Reading(time=t, value=v) for s, (t, v) in rows.items()},
        source=source,
    )


@router.get(
    "/assets/{asset_id}/readings",
    response_model=RawReadingsPage | BucketedReadings,
    responses=problem_responses(400, 401, 403, 422, 429),
)
async def readings(
    request: Request,
    asset_id: AssetIdPath,
    start: FromQuery = None,
    end: ToQuery = None,
    sensor: SensorQuery = None,
    bucket: Annotated[
        Bucket | None, Query(description="Aggregate per bucket; raw rows when absent.")
    ] = None,
    agg: Annotated[Agg, Query(description="Aggregate of a bucket.")] = "avg",
    cursor: CursorQuery = None,
    limit: LimitQuery = 1000,
    _: Principal = READ,
) -> RawReadingsPage | BucketedReadings:
    """Raw readings in `[from, to)` (default: the last hour), ordered by time then sensor,
    a page at a time; or, with `bucket`, one aggregate per sensor and bucket (continuous
    aggregate on TimescaleDB, `date_bin` otherwise: the same answers; `source` says which)."""
    start, end = time_range(start, end, timedelta(hours=1))
    if bucket is not None:
        if (end - start).total_seconds() / BUCKET_SECONDS[bucket] > MAX_BUCKETS:
            raise Problem(
                422,
                f"more than {MAX_BUCKETS} buckets of {bucket} in that range: use a wider "
                f"bucket ({', '.join(BUCKET_INTERVALS)}) or a shorter range",
                slug="validation",
            )
        found = await stores(request).readings.bucketed(asset_id, sensor, start, end, bucket, agg)
        return BucketedReadings(
            asset_id=asset_id,
            bucket=bucket,
            agg=agg,
            source=found.source,
            items=[
                BucketModel(bucket=r.bucket, sensor=r.sensor, value=r.value) for r in found.rows
            ],
        )
    after = decode_cursor(cursor, (datetime, str))
    limit = page_limit(request, limit)
    rows_raw = await stores(request).readings.raw(
        asset_id,
        sensor,
        start,
        end,
        after,
        limit + 1,
    )
    items = [RawReading(time=t, sensor=s, value=v) for t, s, v in rows_raw[:limit]]
    more = len(rows_raw) > limit
    next_cursor = cursors.encode(items[-1].time, items[-1].sensor) if more else None
    return RawReadingsPage(asset_id=asset_id, items=items, next_cursor=next_cursor)


@router.get(
    "/readings/export.csv",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/csv": {}},
            "description": "time,asset_id,sensor,value rows ordered by time; header "
            "`X-Next-Cursor` starts the next incremental export.",
        },
        **problem_responses(400, 401, 403, 422, 429),
    },
)
async def export_csv(
    request: Request,
    asset_id: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")] = None,
    sensor: SensorQuery = None,
    start: FromQuery = None,
    end: ToQuery = None,
    cursor: Annotated[
        str | None,
        Query(
            max_length=512,
            description="`X-Next-Cursor` of the previous export: export only what came after it.",
        ),
    ] = None,
    _: Principal = READ,
) -> StreamingResponse:
    """Every reading in `[from, to)` (one asset or the fleet) as CSV, streamed from the
    database a chunk at a time. Without `from` and `cursor` the export starts at the
    beginning (full export). Without `to` it stops `PDM_GATEWAY_EXPORT_SETTLE_S` before now,
    so readings still in flight are not skipped; the `X-Next-Cursor` header holds that end:
    pass it as `cursor` for the next incremental export."""
    cfg = settings(request)
    decoded = decode_cursor(cursor, (datetime,))
    if decoded is not None and start is not None:
        raise Problem(422, "give either `from` or `cursor`, not both", slug="validation")
    start = decoded[0] if decoded else aware(start, "from")
    end = aware(end, "to") or datetime.now(UTC) - timedelta(seconds=cfg.export_settle_s)
    if start is not None and start >= end:
        raise Problem(422, "nothing to export: `from`/`cursor` is not before `to`", slug="empty")
    body = stores(request).readings.export_csv(asset_id, sensor, start, end, cfg.export_chunk_rows)
    name = f"readings-{asset_id or 'fleet'}-{end:%Y%m%dT%H%M%SZ}.csv"
    return StreamingResponse(
        body,
        media_type="text/csv",
        headers={
            "X-Next-Cursor": cursors.encode(end),
            "Content-Disposition": f'attachment; filename="{name}"',
        },
    )


@router.post(
    "/readings",
    response_model=ReadingsAccepted,
    status_code=202,
    responses=problem_responses(401, 403, 409, 413, 422, 429, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "description": "One snapshot or a list of snapshots, as on "
                        "pdm.readings.v1: {asset_id, ts, readings: {sensor: value}, "
                        "message_id?, asset_type?}",
                        "oneOf": [
                            {"$ref": "#/components/schemas/ReadingSnapshot"},
                            {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/ReadingSnapshot"},
                            },
                        ],
                    }
                }
            },
        }
    },
)
async def post_readings(
    request: Request, idempotency_key: IDEMPOTENCY_KEY = None, who: Principal = WRITE
) -> ReadingsAccepted:
    """Publish readings to `pdm.readings.v1` for gateways that cannot speak Kafka.

    Validated here with the same model ingest uses (422 names the bad field); accepted means
    the broker acknowledged them, ingest then stores each once (natural key). With an
    `Idempotency-Key`, a retry of the same body is answered as the first time without being
    published again; the same key with another body is refused (422); a retry while the first
    request is still in flight gets 409."""
    raw = await request.body()
    try:
        snapshots = parse_gateway_message(raw)
    except ValidationError as exc:
        errors = [
            {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        first = errors[0]
        raise Problem(
            422,
            f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}",
            slug="validation",
            title="Invalid readings",
            errors=errors,
        ) from exc
    if not snapshots:
        raise Problem(422, "an empty list carries no readings", slug="validation")
    idempotent = IdempotentRequest(stores(request).idempotency, who.key_id, idempotency_key, raw)
    stored = await idempotent.begin()
    if stored is not None:
        return ReadingsAccepted.model_validate(stored | {"replayed": True})
    messages = [
        Outgoing(
            topics.READINGS,
            json.dumps(
                s.model_dump(mode="json", exclude_none=True)
                | {"message_id": s.message_id or _message_id(who.key_id, idempotency_key, i)}
            ).encode(),
            s.asset_id.encode(),
            {"content-type": "application/json", "source": "gateway"},
        )
        for i, s in enumerate(snapshots)
    ]
    answer = ReadingsAccepted(
        messages=len(messages),
        readings=sum(len(s.readings) for s in snapshots),
        idempotency_key=idempotency_key,
    )
    try:
        await bus(request).publish(messages)
    except Problem:
        await idempotent.abandon()
        raise
    await idempotent.finish(202, answer)
    return answer


def _message_id(key_id: str, idempotency_key: str | None, index: int) -> str | None:
    return f"http:{key_id}:{idempotency_key}:{index}" if idempotency_key else None
