"""The one query layer over `readings` that answers the same with and without TimescaleDB.

`time_bucket()` on a timestamptz buckets in UTC from a default origin of Monday 2000-01-03
00:00 UTC (for widths without months). `date_bin()` with exactly that origin therefore
returns identical bucket starts for every fixed width, including weeks; 1m, 1h and 1d buckets
would also match with the 2000-01-01 origin (it is a whole number of days away), weeks would
not. The origin is written with an explicit `+00` so the session time zone cannot shift it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

from psycopg import AsyncConnection, sql

Bucket = Literal["1m", "1h", "1d"]
Agg = Literal["avg", "min", "max", "last", "count"]

BUCKET_INTERVALS: dict[str, str] = {"1m": "1 minute", "1h": "1 hour", "1d": "1 day"}
#: time_bucket()'s default origin for widths without months (see the module docstring).
DATE_BIN_ORIGIN = "2000-01-03 00:00:00+00"

_TIME = sql.Identifier("time")
_VALUE = sql.Identifier("value")
_SIMPLE_AGGS: dict[str, sql.SQL] = {
    "avg": sql.SQL("avg"),
    "min": sql.SQL("min"),
    "max": sql.SQL("max"),
}


@dataclass(frozen=True, slots=True)
class BucketRow:
    """One aggregated bucket of one sensor; `value` is an int for `count`, else a float."""

    bucket: datetime
    sensor: str
    value: float | int


def _check_bucket(bucket: str) -> str:
    if bucket not in BUCKET_INTERVALS:
        raise ValueError(f"unknown bucket {bucket!r}: use one of {', '.join(BUCKET_INTERVALS)}")
    return BUCKET_INTERVALS[bucket]


def bucket_expression(bucket: Bucket, timescale: bool) -> sql.Composable:
    """`time_bucket(...)` on TimescaleDB, the equivalent `date_bin(...)` elsewhere."""
    width = sql.SQL("INTERVAL {}").format(sql.Literal(_check_bucket(bucket)))
    if timescale:
        return sql.SQL("time_bucket({}, {})").format(width, _TIME)
    origin = sql.SQL("TIMESTAMPTZ {}").format(sql.Literal(DATE_BIN_ORIGIN))
    return sql.SQL("date_bin({}, {}, {})").format(width, _TIME, origin)


def aggregate_expression(agg: Agg, timescale: bool) -> sql.Composable:
    """The aggregate of `value`; `last` is TimescaleDB's `last()` or its array_agg equivalent."""
    if agg not in get_args(Agg):
        raise ValueError(f"unknown aggregate {agg!r}: use one of {', '.join(get_args(Agg))}")
    if agg == "count":
        return sql.SQL("count(*)")
    if agg == "last":
        if timescale:
            return sql.SQL("last({}, {})").format(_VALUE, _TIME)
        return sql.SQL("(array_agg({} ORDER BY {} DESC))[1]").format(_VALUE, _TIME)
    return sql.SQL("{}({})").format(_SIMPLE_AGGS[agg], _VALUE)


def _check_range(start: datetime, end: datetime) -> None:
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware datetimes")
    if start >= end:
        raise ValueError(f"start ({start.isoformat()}) must be before end ({end.isoformat()})")


#: Which table answered a bucketed read: the raw table, the hourly aggregate, or the hourly
#: aggregate with the hours changed since they were materialised read raw.
Source = Literal["readings", "readings_1h", "readings_1h+readings"]


@dataclass(frozen=True, slots=True)
class BucketedReadings:
    rows: list[BucketRow]
    source: Source


#: Beyond this many stale ranges in one read, they are merged into one (still exact, more raw).
MAX_STALE_RANGES = 16


async def readings_bucketed(
    conn: AsyncConnection[Any],
    asset_id: str,
    sensor: str | None,
    start: datetime,
    end: datetime,
    bucket: Bucket,
    agg: Agg,
    timescale: bool,
    *,
    rollup: bool | None = None,
) -> list[BucketRow]:
    """Aggregate one asset's readings in `[start, end)` per sensor and bucket (see
    `readings_bucketed_from`, which also says which table answered)."""
    found = await readings_bucketed_from(
        conn, asset_id, sensor, start, end, bucket, agg, timescale, rollup=rollup
    )
    return found.rows


async def readings_bucketed_from(
    conn: AsyncConnection[Any],
    asset_id: str,
    sensor: str | None,
    start: datetime,
    end: datetime,
    bucket: Bucket,
    agg: Agg,
    timescale: bool,
    *,
    rollup: bool | None = None,
) -> BucketedReadings:
    """Aggregate one asset's readings in `[start, end)` per sensor and bucket.

    `sensor=None` means every sensor of the asset. Only buckets with data are returned, ordered
    by sensor then bucket; a bucket cut by `start`/`end` aggregates only the rows inside.

    On TimescaleDB, hour and day buckets over a range of whole buckets are read from the
    continuous aggregate `readings_1h` (`uses_rollup`), which is what it is for: a year of
    one sensor is 8,760 rows there instead of millions. Hours changed after they were
    materialised (late readings, backfills, rows into compressed chunks; migration 0012
    lists them) are read raw until the background job refreshes them, so the answer is the
    raw table's whatever the arrival order. Beyond the `readings` retention horizon the
    aggregate is the only source left (downsampled history). Elsewhere `readings_1h` is a
    plain view that would aggregate the asset's whole history, so the raw table is bucketed
    instead. `rollup` forces the choice (tests compare both paths) and skips the stale check.
    """
    _check_range(start, end)
    params: dict[str, Any] = {"asset_id": asset_id, "sensor": sensor, "start": start, "end": end}
    source: Source = "readings"
    if rollup if rollup is not None else (timescale and uses_rollup(bucket, start, end)):
        stale = [] if rollup is not None else await stale_ranges(conn, start, end)
        if stale == [(start, end)]:
            query = _raw_query(bucket, agg, timescale, sensor is not None)
        else:
            query = rollup_query(bucket, agg, timescale, sensor is not None, stale)
            source = "readings_1h+readings" if stale else "readings_1h"
            params |= _stale_params(stale)
    else:
        query = _raw_query(bucket, agg, timescale, sensor is not None)
    async with conn.cursor() as cur:
        await cur.execute(query, params)
        rows = [BucketRow(b, s, v) for b, s, v in await cur.fetchall()]
    return BucketedReadings(rows, source)


def _raw_query(bucket: Bucket, agg: Agg, timescale: bool, one_sensor: bool) -> sql.Composed:
    sensor_filter = sql.SQL("AND sensor = %(sensor)s") if one_sensor else sql.SQL("")
    return sql.SQL(
        "SELECT {bucket} AS bucket, sensor, {agg} AS value FROM readings "
        "WHERE asset_id = %(asset_id)s {sensor_filter} "
        "AND time >= %(start)s AND time < %(end)s "
        "GROUP BY sensor, 1 ORDER BY sensor, 1"
    ).format(
        bucket=bucket_expression(bucket, timescale),
        agg=aggregate_expression(agg, timescale),
        sensor_filter=sensor_filter,
    )


async def stale_ranges(
    conn: AsyncConnection[Any], start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """The hour-aligned ranges within `[start, end)` where `readings_1h` is not current
    (TimescaleDB branch, migration 0012), merged into one when there are too many."""
    async with conn.cursor() as cur:
        await cur.execute(
            "SELECT lo, hi FROM readings_1h_stale_ranges(%(start)s, %(end)s)",
            {"start": start, "end": end},
        )
        found: list[tuple[datetime, datetime]] = [(lo, hi) for lo, hi in await cur.fetchall()]
    if len(found) > MAX_STALE_RANGES:
        return [(found[0][0], max(hi for _, hi in found))]
    return found


def _stale_params(stale: Sequence[tuple[datetime, datetime]]) -> dict[str, datetime]:
    out: dict[str, datetime] = {}
    for i, (lo, hi) in enumerate(stale):
        out[f"stale_lo_{i}"] = lo
        out[f"stale_hi_{i}"] = hi
    return out


_ROLLUP_SECONDS = {"1h": 3600, "1d": 86400}


def uses_rollup(bucket: str, start: datetime, end: datetime) -> bool:
    """Whether `readings_1h` answers exactly: hour/day buckets and a range of whole buckets
    (a cut bucket must aggregate only the rows inside the range, which needs raw rows)."""
    width = _ROLLUP_SECONDS.get(bucket)
    if width is None:
        return False
    origin = datetime.fromisoformat(DATE_BIN_ORIGIN)
    return all((t - origin).total_seconds() % width == 0 for t in (start, end))


#: readings_1h column per aggregate, and how hourly values combine into a day.
_ROLLUP_COLUMN = {
    "avg": "avg_value",
    "min": "min_value",
    "max": "max_value",
    "count": "sample_count",
    "last": "last_value",
}
_ROLLUP_DAY = {
    "avg": "sum(avg_value * sample_count) / sum(sample_count)",
    "min": "min(min_value)",
    "max": "max(max_value)",
    "count": "sum(sample_count)::bigint",
    "last": "(array_agg(last_value ORDER BY bucket DESC))[1]",
}


def rollup_query(
    bucket: Bucket,
    agg: Agg,
    timescale: bool,
    one_sensor: bool,
    stale: Sequence[tuple[datetime, datetime]] = (),
) -> sql.Composed:
    """The bucketed query over `readings_1h` (hour rows as they are, or combined per day).

    With `stale` ranges (hour-aligned, inside the read range, parameters `stale_lo_<i>` /
    `stale_hi_<i>`), the hours inside them come from the raw table instead, bucketed into
    the same columns, one index range scan per range."""
    if agg not in _ROLLUP_COLUMN:
        raise ValueError(f"unknown aggregate {agg!r}: use one of {', '.join(get_args(Agg))}")
    if bucket not in ("1h", "1d"):
        raise ValueError(f"readings_1h cannot answer {bucket!r} buckets")
    sensor_filter = sql.SQL("AND sensor = %(sensor)s") if one_sensor else sql.SQL("")
    where: sql.Composable = sql.SQL(
        "WHERE asset_id = %(asset_id)s {} AND bucket >= %(start)s AND bucket < %(end)s"
    ).format(sensor_filter)
    hours: sql.Composable = sql.SQL("readings_1h")
    if stale:
        hours = _hours_with_raw(timescale, sensor_filter, where, len(stale))
        where = sql.SQL("")
    if bucket == "1h":
        return sql.SQL(
            "SELECT bucket, sensor, {col} AS value FROM {hours} {where} ORDER BY sensor, bucket"
        ).format(col=sql.Identifier(_ROLLUP_COLUMN[agg]), hours=hours, where=where)
    width = sql.SQL("INTERVAL {}").format(sql.Literal(BUCKET_INTERVALS["1d"]))
    origin = sql.SQL("TIMESTAMPTZ {}").format(sql.Literal(DATE_BIN_ORIGIN))
    day = (
        sql.SQL("time_bucket({}, bucket)").format(width)
        if timescale
        else sql.SQL("date_bin({}, bucket, {})").format(width, origin)
    )
    return sql.SQL(
        "SELECT {day} AS day, sensor, {agg} AS value FROM {hours} {where} "
        "GROUP BY sensor, 1 ORDER BY sensor, 1"
    ).format(day=day, agg=sql.SQL(_ROLLUP_DAY[agg]), hours=hours, where=where)


_HOUR_COLUMNS = "bucket, sensor, avg_value, min_value, max_value, sample_count, last_value"


def _hours_with_raw(
    timescale: bool, sensor_filter: sql.Composable, where: sql.Composable, ranges: int
) -> sql.Composed:
    """`readings_1h`'s rows outside the stale ranges plus the raw table's hours inside them,
    as a subquery with the aggregate's columns."""
    outside = sql.SQL(" ").join(
        sql.SQL("AND NOT (bucket >= %(stale_lo_{i})s AND bucket < %(stale_hi_{i})s)").format(
            i=sql.SQL(str(i))
        )
        for i in range(ranges)
    )
    parts = [
        sql.SQL("SELECT {cols} FROM readings_1h {where} {outside}").format(
            cols=sql.SQL(_HOUR_COLUMNS), where=where, outside=outside
        )
    ]
    for i in range(ranges):
        parts.append(
            sql.SQL(
                "SELECT {bucket} AS bucket, sensor, avg(value), min(value), max(value), "
                "count(*), {last} FROM readings WHERE asset_id = %(asset_id)s {sensor_filter} "
                "AND time >= %(stale_lo_{i})s AND time < %(stale_hi_{i})s GROUP BY 1, 2"
            ).format(
                bucket=bucket_expression("1h", timescale),
                last=aggregate_expression("last", timescale),
                sensor_filter=sensor_filter,
                i=sql.SQL(str(i)),
            )
        )
    return sql.SQL("({}) AS hours").format(sql.SQL(" UNION ALL ").join(parts))


# A loose index scan over the primary key (asset_id, sensor, time): one index probe to find
# each next sensor, one backward probe for its newest row. Cost grows with the number of
# sensors, not of rows, whereas DISTINCT ON would read every row of the asset.
_LATEST = sql.SQL(
    """
    WITH RECURSIVE sensors(sensor) AS (
        SELECT min(sensor) FROM readings WHERE asset_id = %(asset_id)s {since}
        UNION ALL
        SELECT (SELECT min(r.sensor) FROM readings r
                WHERE r.asset_id = %(asset_id)s AND r.sensor > s.sensor {since_r})
        FROM sensors s WHERE s.sensor IS NOT NULL
    )
    SELECT s.sensor, newest.time, newest.value
    FROM sensors s
    CROSS JOIN LATERAL (
        SELECT r.time, r.value FROM readings r
        WHERE r.asset_id = %(asset_id)s AND r.sensor = s.sensor {since_r}
        ORDER BY r.time DESC LIMIT 1
    ) AS newest
    WHERE s.sensor IS NOT NULL
    """
)


async def latest_readings(
    conn: AsyncConnection[Any], asset_id: str, since: datetime | None = None
) -> dict[str, tuple[datetime, float]]:
    """Newest `(time, value)` per sensor of an asset, served by the primary key.

    `since` optionally ignores older readings; on TimescaleDB it lets old chunks be skipped.
    """
    if since is not None and since.tzinfo is None:
        raise ValueError("since must be a timezone-aware datetime")
    since_sql = sql.SQL("AND time >= %(since)s") if since else sql.SQL("")
    since_r = sql.SQL("AND r.time >= %(since)s") if since else sql.SQL("")
    query = _LATEST.format(since=since_sql, since_r=since_r)
    async with conn.cursor() as cur:
        await cur.execute(query, {"asset_id": asset_id, "since": since})
        return {sensor: (t, v) for sensor, t, v in await cur.fetchall()}


async def timescale_enabled(conn: AsyncConnection[Any]) -> bool:
    """Whether this database has TimescaleDB installed, i.e. which query branch to use."""
    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = %s)", ["timescaledb"]
    )
    row = await cur.fetchone()
    return bool(row and row[0])


async def latest_readings_many(
    conn: AsyncConnection[Any],
    asset_ids: Sequence[str],
    sensors: Sequence[str],
    since: datetime,
) -> dict[str, dict[str, tuple[datetime, float]]]:
    """Newest `(time, value)` of each named sensor of many assets, in one round trip: one
    backward primary-key probe per (asset, sensor), so the cost is assets x sensors probes
    whatever the history length. Assets without any such reading are absent."""
    if since.tzinfo is None:
        raise ValueError("since must be a timezone-aware datetime")
    out: dict[str, dict[str, tuple[datetime, float]]] = {}
    async with conn.cursor() as cur:
        await cur.execute(
            _LATEST_MANY, {"ids": list(asset_ids), "sensors": list(sensors), "since": since}
        )
        for asset_id, sensor, t, v in await cur.fetchall():
            out.setdefault(asset_id, {})[sensor] = (t, v)
    return out


async def recent_rows_many(
    conn: AsyncConnection[Any],
    asset_ids: Sequence[str],
    anchor: str,
    sensors: Sequence[str],
    rows: int,
    since: datetime,
) -> dict[str, tuple[list[dict[str, float]], list[datetime]]]:
    """The last `rows` timestamps of each asset (counted on the `anchor` sensor), with the
    named sensors' values pivoted per timestamp, oldest first; one round trip, index range
    scans per (asset, sensor). Assets without readings since `since` are absent."""
    if since.tzinfo is None:
        raise ValueError("since must be a timezone-aware datetime")
    params = {
        "ids": list(asset_ids),
        "anchor": anchor,
        "sensors": list(sensors),
        "rows": rows,
        "since": since,
    }
    pivots: dict[str, dict[datetime, dict[str, float]]] = {}
    async with conn.cursor() as cur:
        await cur.execute(_RECENT_ROWS_MANY, params)
        for asset_id, sensor, t, v in await cur.fetchall():
            pivots.setdefault(asset_id, {}).setdefault(t, {})[sensor] = v
    return {
        asset: ([pivot[t] for t in sorted(pivot)], sorted(pivot)) for asset, pivot in pivots.items()
    }


_LATEST_MANY = sql.SQL(
    """
    SELECT a.asset_id, s.sensor, n.time, n.value
    FROM unnest(%(ids)s::text[]) AS a(asset_id)
    CROSS JOIN unnest(%(sensors)s::text[]) AS s(sensor)
    CROSS JOIN LATERAL (
        SELECT r.time, r.value FROM readings r
        WHERE r.asset_id = a.asset_id AND r.sensor = s.sensor AND r.time >= %(since)s
        ORDER BY r.time DESC LIMIT 1
    ) AS n
    """
)

_RECENT_ROWS_MANY = sql.SQL(
    """
    SELECT a.asset_id, s.sensor, r.time, r.value
    FROM unnest(%(ids)s::text[]) AS a(asset_id)
    CROSS JOIN LATERAL (
        SELECT min(t.time) AS first FROM (
            SELECT time FROM readings
            WHERE asset_id = a.asset_id AND sensor = %(anchor)s AND time >= %(since)s
            ORDER BY time DESC LIMIT %(rows)s
        ) AS t
    ) AS f
    CROSS JOIN unnest(%(sensors)s::text[]) AS s(sensor)
    JOIN readings r ON r.asset_id = a.asset_id AND r.sensor = s.sensor AND r.time >= f.first
    """
)
