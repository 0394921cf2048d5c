"""The Timescale branch for real: hour/day reads equal the raw table's answers whatever order
readings arrive in, `readings_1h` as downsampled history after retention, and `pdm migrate`
keeping unchanged jobs.

These need a PostgreSQL server with TimescaleDB, which no package here provides: point
PDM_TEST_DATABASE_URL at one (see the README, Development); elsewhere they skip. Each test
gets its own database. The background jobs of that database are paused right after the
migration and run explicitly (`CALL run_job`), so what a test sees does not depend on when the
scheduler wakes up.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

import pdm_common.db.migrations as mig
from pdm_common.db import copy_insert_ignore
from pdm_common.db.queries import BucketedReadings, readings_bucketed_from
from pdm_common.db.settings import StorageSettings

pytestmark = pytest.mark.integration

COLS = ["time", "asset_id", "sensor", "value"]
TYPES = ["timestamptz", "text", "text", "float8"]
AGGS = ["avg", "min", "max", "count", "last"]
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
#: The current hour: the policies are relative to now, so the data must be too.
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
TODAY = NOW.replace(hour=0)

Row = tuple[datetime, str, str, float]


@pytest.fixture(scope="session")
def timescale_url(database_url: str) -> str:
    with psycopg.connect(database_url) as c:
        if not mig.timescale_available(c):
            pytest.skip(
                "needs TimescaleDB: set PDM_TEST_DATABASE_URL to a PostgreSQL server with the "
                "timescaledb extension (README, Development)"
            )
    return database_url


@pytest.fixture
def fresh_ts(timescale_url: str) -> Iterator[str]:
    name = f"pdm_tstest_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(timescale_url, autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield make_conninfo(timescale_url, dbname=name)
    with psycopg.connect(timescale_url, autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _migrate(url: str, settings: StorageSettings) -> None:
    assert mig.migrate(url, settings).variant == "timescale"
    _execute(
        url,
        "SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs "
        "WHERE job_id >= 1000",  # this database's own jobs, not TimescaleDB's
    )


@pytest.fixture
def ts_db(fresh_ts: str) -> str:
    _migrate(fresh_ts, StorageSettings(timescale="on"))
    return fresh_ts


@pytest.fixture
async def conn(ts_db: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(ts_db, autocommit=True) as c:
        yield c


def _execute(url: str, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as c:
        cur = c.execute(statement.encode() if params is None else statement, params)
        return cur.fetchall() if cur.description else []


def _refresh(url: str, start: datetime | None, end: datetime) -> None:
    _execute(
        url, "CALL refresh_continuous_aggregate('readings_1h', %s::timestamptz, %s)", [start, end]
    )


def _run_job(url: str, proc_name: str, table: str | None = None) -> None:
    jobs = _execute(
        url,
        "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = %s "
        "AND (%s::text IS NULL OR hypertable_name = %s)",
        [proc_name, table, table],
    )
    assert len(jobs) == 1, (proc_name, table, jobs)
    _execute(url, f"CALL run_job({jobs[0][0]})")


def _freshness(url: str) -> dict[str, Any]:
    with psycopg.connect(url) as c:
        cur = c.execute("SELECT * FROM readings_1h_freshness")
        assert cur.description is not None
        names = [d.name for d in cur.description]
        row = cur.fetchone()
        assert row is not None
        return dict(zip(names, row, strict=True))


async def _insert(conn: psycopg.AsyncConnection[Any], rows: list[Row]) -> int:
    return await copy_insert_ignore(conn, "readings", COLS, TYPES, rows)


def _hour_of(asset: str, sensor: str, hour: datetime, n: int, base: float = 0.0) -> list[Row]:
    return [(hour + timedelta(minutes=5 * i), asset, sensor, base + i) for i in range(n)]


async def _read(
    conn: psycopg.AsyncConnection[Any],
    asset: str,
    start: datetime,
    end: datetime,
    bucket: Any = "1h",
    agg: Any = "count",
    sensor: str | None = None,
    **kwargs: Any,
) -> BucketedReadings:
    return await readings_bucketed_from(
        conn, asset, sensor, start, end, bucket, agg, True, **kwargs
    )


async def _assert_reads_equal_raw(
    conn: psycopg.AsyncConnection[Any], asset: str, start: datetime, end: datetime
) -> set[str]:
    """Every hour/day aggregate of the default read equals the raw table's; the sources seen."""
    sources: set[str] = set()
    for bucket in ("1h", "1d"):
        for agg in AGGS:
            for sensor in (None, "temp"):
                got = await _read(conn, asset, start, end, bucket, agg, sensor)
                raw = await _read(conn, asset, start, end, bucket, agg, sensor, rollup=False)
                assert raw.source == "readings"
                where = (bucket, agg, sensor, got.source)
                assert [(r.bucket, r.sensor) for r in got.rows] == [
                    (r.bucket, r.sensor) for r in raw.rows
                ], where
                assert [r.value for r in got.rows] == pytest.approx([r.value for r in raw.rows]), (
                    where
                )
                sources.add(got.source)
    return sources


# --- late data -----------------------------------------------------------------------------


async def test_late_reading_in_a_materialised_hour(
    conn: psycopg.AsyncConnection[Any], ts_db: str
) -> None:
    hour = NOW - 2 * DAY
    await _insert(conn, _hour_of("pump-1", "temp", hour, 8) + _hour_of("pump-1", "vib", hour, 3))
    _refresh(ts_db, None, NOW - HOUR)
    window = (hour - 5 * HOUR, hour + 5 * HOUR)
    first = await _read(conn, "pump-1", *window, sensor="temp")
    assert [(r.bucket, r.value) for r in first.rows] == [(hour, 8)]
    assert first.source == "readings_1h"
    assert _freshness(ts_db)["stale_ranges"] == 0

    assert await _insert(conn, [(hour + timedelta(minutes=59), "pump-1", "temp", 99.0)]) == 1
    late = await _read(conn, "pump-1", *window, sensor="temp")
    assert [(r.bucket, r.value) for r in late.rows] == [(hour, 9)]
    assert late.source == "readings_1h+readings"
    assert await _assert_reads_equal_raw(conn, "pump-1", TODAY - 4 * DAY, TODAY + DAY) == {
        "readings_1h+readings"
    }
    pending = _freshness(ts_db)
    assert (pending["stale_ranges"], pending["stale_hours"]) == (1, 1.0)
    assert pending["oldest_stale"] == hour

    _run_job(ts_db, "refresh_readings_1h_stale")
    assert _execute(
        ts_db,
        "SELECT sample_count FROM readings_1h WHERE asset_id = 'pump-1' AND sensor = 'temp'",
    ) == [(9,)]
    refreshed = await _read(conn, "pump-1", *window, sensor="temp")
    assert (refreshed.rows, refreshed.source) == (late.rows, "readings_1h")
    done = _freshness(ts_db)
    assert (done["stale_ranges"], done["refresh_lag_s"]) == (0, 0)
    assert (done["last_refreshed_ranges"], done["last_refreshed_hours"]) == (1, 1.0)


async def test_rows_into_a_compressed_chunk(conn: psycopg.AsyncConnection[Any], ts_db: str) -> None:
    hour = NOW - 10 * DAY
    first = _hour_of("pump-2", "temp", hour, 8)
    await _insert(conn, first)
    _refresh(ts_db, None, NOW - HOUR)
    compressed = _execute(
        ts_db,
        "SELECT compress_chunk(c, if_not_compressed => true) "
        "FROM show_chunks('readings', older_than => INTERVAL '7 days') c",
    )
    assert len(compressed) == 1
    assert _execute(
        ts_db,
        "SELECT is_compressed FROM timescaledb_information.chunks "
        "WHERE hypertable_name = 'readings' AND range_start <= %s AND range_end > %s",
        [hour, hour],
    ) == [(True,)]
    assert (await _read(conn, "pump-2", hour, hour + HOUR)).source == "readings_1h"

    more = _hour_of("pump-2", "temp", hour + timedelta(minutes=2), 7, base=50.0)
    assert await _insert(conn, first + more) == 7  # duplicates ignored, new rows stored
    read = await _read(conn, "pump-2", hour - 2 * HOUR, hour + 2 * HOUR)
    assert ([r.value for r in read.rows], read.source) == ([15], "readings_1h+readings")
    whole = await _read(conn, "pump-2", hour, hour + HOUR)  # all of it stale: raw
    assert ([r.value for r in whole.rows], whole.source) == ([15], "readings")
    await _assert_reads_equal_raw(conn, "pump-2", TODAY - 12 * DAY, TODAY + DAY)

    _run_job(ts_db, "refresh_readings_1h_stale")
    read = await _read(conn, "pump-2", hour, hour + HOUR)
    assert ([r.value for r in read.rows], read.source) == ([15], "readings_1h")
    assert await _assert_reads_equal_raw(conn, "pump-2", TODAY - 12 * DAY, TODAY + DAY) == {
        "readings_1h"
    }


async def test_backfill_older_than_the_refresh_window(
    conn: psycopg.AsyncConnection[Any], ts_db: str
) -> None:
    """A new asset's history 5 days back: the refresh policy (3-day window) never refreshes
    it; reads see it at once and the stale-range job materialises it."""
    # Recent data moves the watermark (the end of the newest materialised bucket with data)
    # past the backfill, so real-time aggregation does not cover it.
    await _insert(conn, _hour_of("pump-1", "temp", NOW - 6 * DAY, 4))
    await _insert(conn, _hour_of("pump-1", "temp", NOW - 2 * HOUR, 4))
    _refresh(ts_db, None, NOW - HOUR)
    _run_job(ts_db, "policy_refresh_continuous_aggregate")
    assert _freshness(ts_db)["stale_ranges"] == 0
    assert _execute(
        ts_db,
        "SELECT _timescaledb_functions.to_timestamp(_timescaledb_functions.cagg_watermark("
        "mat_hypertable_id)) FROM _timescaledb_catalog.continuous_agg",
    ) == [(NOW - HOUR,)]

    hour = TODAY - 5 * DAY + 10 * HOUR  # about 5 days old; both hours on one day
    backfill = _hour_of("pump-new", "temp", hour, 6) + _hour_of("pump-new", "temp", hour + HOUR, 6)
    assert await _insert(conn, backfill) == 12
    start, end = hour.replace(hour=0) - DAY, hour.replace(hour=0) + DAY  # whole days
    read = await _read(conn, "pump-new", start, end, "1h", "count")
    assert [r.value for r in read.rows] == [6, 6]
    assert read.source in ("readings_1h+readings", "readings")

    _run_job(ts_db, "policy_refresh_continuous_aggregate")
    pending = _freshness(ts_db)  # outside the policy's window: still stale
    assert pending["stale_hours"] >= 2.0 and pending["oldest_stale"] <= hour
    read = await _read(conn, "pump-new", start, end, "1d", "count")
    assert [r.value for r in read.rows] == [12]

    _run_job(ts_db, "refresh_readings_1h_stale")
    assert _freshness(ts_db)["stale_ranges"] == 0
    read = await _read(conn, "pump-new", start, end, "1d", "count")
    assert ([r.value for r in read.rows], read.source) == ([12], "readings_1h")
    await _assert_reads_equal_raw(conn, "pump-new", TODAY - 7 * DAY, TODAY + DAY)


async def test_any_arrival_order_reads_like_the_raw_table(
    conn: psycopg.AsyncConnection[Any], ts_db: str
) -> None:
    """Four days of two assets arrive shuffled in batches, with refreshes of every kind at
    random points in between; after every batch each hour/day read equals the raw table."""
    rng = random.Random(15)
    rows = [
        (NOW - timedelta(minutes=17 * i + rng.randrange(17)), asset, sensor, rng.uniform(0, 100))
        for i in range(4 * 24 * 60 // 17)
        for asset in ("pump-a", "pump-b")
        for sensor in ("temp", "vib")
        if rng.random() < 0.7
    ]
    rng.shuffle(rows)
    steps = [
        lambda: None,
        lambda: _run_job(ts_db, "policy_refresh_continuous_aggregate"),
        lambda: _run_job(ts_db, "refresh_readings_1h_stale"),
        lambda: _refresh(ts_db, NOW - 2 * DAY, NOW - HOUR),
    ]
    sources: set[str] = set()
    size = len(rows) // 6 + 1
    for i in range(0, len(rows), size):
        await _insert(conn, rows[i : i + size])
        rng.choice(steps)()
        for asset in ("pump-a", "pump-b"):
            sources |= await _assert_reads_equal_raw(conn, asset, TODAY - 5 * DAY, TODAY + DAY)
    _run_job(ts_db, "refresh_readings_1h_stale")
    assert _freshness(ts_db)["stale_ranges"] == 0
    assert await _assert_reads_equal_raw(conn, "pump-a", TODAY - 5 * DAY, TODAY + DAY) == {
        "readings_1h"
    }
    assert "readings_1h+readings" in sources  # some reads did hit late, not yet refreshed hours


# --- retention -----------------------------------------------------------------------------


async def test_hourly_aggregate_outlives_raw_retention(fresh_ts: str) -> None:
    settings = StorageSettings(
        timescale="on", readings_retention_days=10, readings_1h_retention_days=30
    )
    _migrate(fresh_ts, settings)
    assert _execute(
        fresh_ts,
        "SELECT hypertable_name, (config->>'drop_after')::interval FROM "
        "timescaledb_information.jobs WHERE proc_name = 'policy_retention' ORDER BY 1",
    ) == [("predictions", timedelta(days=180)), ("readings", 10 * DAY), ("readings_1h", 30 * DAY)]
    old, recent = NOW - 20 * DAY, NOW - DAY
    async with await psycopg.AsyncConnection.connect(fresh_ts, autocommit=True) as conn:
        await _insert(
            conn, _hour_of("pump-1", "temp", old, 6) + _hour_of("pump-1", "temp", recent, 4)
        )
        _refresh(fresh_ts, None, NOW - HOUR)
        day = old.replace(hour=0)
        before = await _read(conn, "pump-1", day, day + DAY, "1h", "avg")
        assert [r.value for r in before.rows] == [2.5]

        _run_job(fresh_ts, "policy_retention", "readings")
        assert _execute(
            fresh_ts, "SELECT count(*) FROM readings WHERE time < %s", [NOW - 10 * DAY]
        ) == [(0,)]
        minutes = await _read(conn, "pump-1", day, day + DAY, "1m", "avg")
        assert (minutes.rows, minutes.source) == ([], "readings")
        # The drop is recorded as a change of those hours, but past the raw horizon the
        # hourly aggregate is the answer: the downsampled history.
        after = await _read(conn, "pump-1", day, day + DAY, "1h", "avg")
        assert (after.rows, after.source) == (before.rows, "readings_1h")
        _run_job(fresh_ts, "refresh_readings_1h_stale")  # must not erase that history
        assert await _read(conn, "pump-1", day, day + DAY, "1h", "avg") == after
        days = await _read(conn, "pump-1", TODAY - 25 * DAY, TODAY + DAY, "1d", "count")
        assert [(r.bucket, r.value) for r in days.rows] == [(day, 6), (recent.replace(hour=0), 4)]
        assert days.source == "readings_1h"


# --- migrate -------------------------------------------------------------------------------


def _jobs(url: str) -> dict[tuple[str, str | None], tuple[int, Any]]:
    rows = _execute(
        url,
        "SELECT proc_name, hypertable_name, job_id, config FROM timescaledb_information.jobs "
        "WHERE job_id >= 1000",
    )
    return {(p, t): (j, c) for p, t, j, c in rows}


def test_migrate_keeps_unchanged_jobs(fresh_ts: str) -> None:
    mig.migrate(fresh_ts, StorageSettings(timescale="on"))
    first = _jobs(fresh_ts)
    assert sorted(first) == [
        ("policy_compression", "predictions"),
        ("policy_compression", "readings"),
        ("policy_refresh_continuous_aggregate", "readings_1h"),
        ("policy_retention", "predictions"),
        ("policy_retention", "readings"),
        ("prune_prediction_requests", None),
        ("refresh_readings_1h_stale", None),
    ]
    assert mig.migrate(fresh_ts, StorageSettings(timescale="on")).policies_synced
    assert _jobs(fresh_ts) == first

    changed = StorageSettings(
        timescale="on", readings_retention_days=90, readings_1h_stale_refresh_interval="1 minute"
    )
    mig.migrate(fresh_ts, changed)
    after = _jobs(fresh_ts)
    moved = {key for key in first if after[key][0] != first[key][0]}
    assert moved == {("policy_retention", "readings"), ("refresh_readings_1h_stale", None)}
    assert after[("policy_retention", "readings")][1]["drop_after"] == "90 days"
    assert _execute(
        fresh_ts,
        "SELECT schedule_interval FROM timescaledb_information.jobs "
        "WHERE proc_name = 'refresh_readings_1h_stale'",
    ) == [(timedelta(minutes=1),)]
