"""What the routes share: the app's components, time ranges, page sizes and cursors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Path, Query, Request

from pdm_common.events import ASSET_ID_PATTERN, SENSOR_PATTERN
from pdm_gateway import cursors
from pdm_gateway.bus import Bus
from pdm_gateway.problems import Problem
from pdm_gateway.settings import GatewaySettings
from pdm_gateway.store import Stores

AssetIdPath = Annotated[
    str, Path(pattern=ASSET_ID_PATTERN, description="Asset id, e.g. `pump-001`.")
]
SensorQuery = Annotated[str | None, Query(pattern=SENSOR_PATTERN, description="Only this sensor.")]
FromQuery = Annotated[
    datetime | None,
    Query(alias="from", description="Start, inclusive (ISO 8601 with offset)."),
]
ToQuery = Annotated[
    datetime | None, Query(alias="to", description="End, exclusive (ISO 8601 with offset).")
]
CursorQuery = Annotated[
    str | None, Query(max_length=512, description="`next_cursor` of the previous page.")
]
LimitQuery = Annotated[int, Query(ge=1, le=10_000, description="Page size.")]


def stores(request: Request) -> Stores:
    return request.app.state.stores


def bus(request: Request) -> Bus:
    return request.app.state.bus


def settings(request: Request) -> GatewaySettings:
    return request.app.state.settings


def aware(value: datetime | None, name: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise Problem(
            422,
            f"`{name}` has no UTC offset: write e.g. 2026-01-31T12:00:00Z",
            slug="validation",
        )
    return value


def time_range(
    start: datetime | None, end: datetime | None, default_span: timedelta
) -> tuple[datetime, datetime]:
    end = aware(end, "to") or datetime.now(UTC)
    start = aware(start, "from") or end - default_span
    if start >= end:
        raise Problem(422, "`from` must be before `to`", slug="validation")
    return start, end


def decode_cursor(cursor: str | None, kinds: tuple[type, ...]) -> tuple[Any, ...] | None:
    if cursor is None:
        return None
    try:
        return cursors.decode(cursor, kinds)
    except cursors.BadCursor as exc:
        raise Problem(400, str(exc), slug="bad-cursor") from exc


def page_limit(request: Request, limit: int) -> int:
    return min(limit, settings(request).max_page)
