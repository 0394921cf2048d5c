"""The database layer against a real PostgreSQL: the embedded one (the plain branch), or the
server PDM_TEST_DATABASE_URL names, which takes the Timescale branch when it has TimescaleDB
(the expectations below follow the branch; test_timescale.py has the Timescale-only ones).

Each test gets its own database created from the session server, so migrations run from
scratch and nothing leaks into the shared `pdm` database other tests use.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import typer
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb
from typer.testing import CliRunner

from pdm_common.db import (
    BucketRow,
    classify_db_error,
    copy_insert_ignore,
    create_pool,
    latest_readings,
    ping,
    readings_bucketed,
    timescale_enabled,
)
from pdm_common.db import migrations as mig
from pdm_common.db.queries import uses_rollup
from pdm_common.db.settings import StorageSettings
from pdm_tools.db_cli import register

pytestmark = pytest.mark.integration

COLS = ["time", "asset_id", "sensor", "value"]
TYPES = ["timestamptz", "text", "text", "float8"]
T0 = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
SETTINGS = StorageSettings(timescale="auto")
MIGRATION_NAMES = [
    "initial",
    "readings_layout",
    "alarms",
    "predictions",
    "prediction_timer",
    "predictions_layout",
    "gateway",
    "alarm_flood_control",
    "scheduler",
    "drift",
    "shadow_predictions",
    "readings_freshness",
    "model_performance",
]
MIGRATION_LABELS = [f"{i:04d}_{name}" for i, name in enumerate(MIGRATION_NAMES, start=1)]


@pytest.fixture(scope="session")
def branch(database_url: str) -> mig.Variant:
    """The branch `pdm migrate` takes on the session server with PDM_TIMESCALE=auto."""
    with psycopg.connect(database_url) as c:
        return "timescale" if mig.timescale_available(c) else "plain"


@pytest.fixture
def fresh_db(database_url: str) -> Iterator[str]:
    """An empty database of its own on the session server; dropped afterwards."""
    name = f"pdm_dbtest_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield make_conninfo(database_url, dbname=name)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def migrated_db(fresh_db: str) -> str:
    mig.migrate(fresh_db, SETTINGS)
    return fresh_db


@pytest.fixture
async def conn(migrated_db: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(migrated_db) as c:
        yield c


def _copy_migrations(tmp_path: Path) -> Path:
    target = tmp_path / "migrations"
    shutil.copytree(mig.MIGRATIONS_DIR, target)
    return target


def _rows(url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as c:
        return c.execute(query.encode()).fetchall()


# --- migrations ----------------------------------------------------------------------------


def test_migrate_from_scratch_then_rerun_is_a_noop(fresh_db: str, branch: mig.Variant) -> None:
    messages: list[str] = []
    first = mig.migrate(fresh_db, SETTINGS, echo=messages.append)
    assert first.variant == branch
    assert first.applied == MIGRATION_LABELS
    assert any(f"storage branch: {branch}" in m for m in messages)
    recorded = _rows(fresh_db, "SELECT version, name, variant, applied_at FROM schema_migrations")
    assert [(v, n, var) for v, n, var, _ in sorted(recorded)] == [
        (i, name, branch) for i, name in enumerate(MIGRATION_NAMES, start=1)
    ]
    # A continuous aggregate's user-facing relation is a view, like the plain branch's.
    tables = _rows(
        fresh_db,
        "SELECT relname, relkind FROM pg_class WHERE relname IN "
        "('assets', 'readings', 'readings_1h', 'readings_time_brin') ORDER BY relname",
    )
    assert tables == [
        ("assets", "r"),
        ("readings", "r"),
        ("readings_1h", "v"),
        ("readings_time_brin", "i"),
    ]

    second = mig.migrate(fresh_db, SETTINGS)
    assert second.applied == []
    again = _rows(fresh_db, "SELECT version, name, variant, applied_at FROM schema_migrations")
    assert sorted(again) == sorted(recorded)  # untouched, applied_at included
    report = mig.status(fresh_db)
    assert [(r.name, r.state) for r in report.migrations] == [
        (name, "applied") for name in MIGRATION_NAMES
    ]
    assert report.recorded_variant == branch
    assert report.timescale_available is (branch == "timescale")


def test_changed_checksum_is_detected(fresh_db: str, tmp_path: Path) -> None:
    directory = _copy_migrations(tmp_path)
    mig.migrate(fresh_db, SETTINGS, migrations=mig.load_migrations(directory))
    initial = directory / "0001_initial.sql"
    initial.write_text(initial.read_text() + "\nCREATE INDEX sneaky ON assets (site);\n")
    edited = mig.load_migrations(directory)
    with pytest.raises(mig.MigrationError, match="0001_initial was changed after it was applied"):
        mig.migrate(fresh_db, SETTINGS, migrations=edited)
    states = {r.name: r.state for r in mig.status(fresh_db, migrations=edited).migrations}
    assert states == {
        name: "changed" if name == "initial" else "applied" for name in MIGRATION_NAMES
    }
    assert _rows(fresh_db, "SELECT to_regclass('sneaky')") == [(None,)]


def test_failing_migration_is_rolled_back_entirely(fresh_db: str, tmp_path: Path) -> None:
    directory = _copy_migrations(tmp_path)
    (directory / "0099_broken.sql").write_text(
        "CREATE TABLE half_done (id int);\nSELECT * FROM no_such_table;\n"
    )
    with pytest.raises(mig.MigrationError, match="0099_broken failed and was rolled back"):
        mig.migrate(fresh_db, SETTINGS, migrations=mig.load_migrations(directory))
    assert _rows(fresh_db, "SELECT max(version) FROM schema_migrations") == [
        (len(MIGRATION_NAMES),)
    ]
    assert _rows(fresh_db, "SELECT to_regclass('half_done')") == [(None,)]


def test_concurrent_migrate_runs_are_serialised(fresh_db: str, tmp_path: Path) -> None:
    directory = _copy_migrations(tmp_path)
    # A slow migration guarantees the runs overlap.
    (directory / "0099_slow.sql").write_text(
        "SELECT pg_sleep(0.5);\nCREATE TABLE slow_marker (id int);\n"
    )
    found = mig.load_migrations(directory)
    start = threading.Barrier(4)
    messages: list[list[str]] = [[] for _ in range(4)]

    def run(i: int) -> mig.MigrateResult:
        start.wait()
        return mig.migrate(fresh_db, SETTINGS, migrations=found, echo=messages[i].append)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, range(4)))
    applied = sorted(label for r in results for label in r.applied)
    assert applied == [*MIGRATION_LABELS, "0099_slow"]
    assert any("waiting for it to finish" in m for ms in messages for m in ms)
    assert _rows(fresh_db, "SELECT count(*) FROM schema_migrations") == [
        (len(MIGRATION_LABELS) + 1,)
    ]


def test_timescale_on_without_the_extension_fails_before_touching_anything(
    fresh_db: str, branch: mig.Variant
) -> None:
    if branch == "timescale":
        pytest.skip("this server has TimescaleDB: PDM_TIMESCALE=on succeeds here")
    with pytest.raises(mig.MigrationError, match="timescaledb extension is not available"):
        mig.migrate(fresh_db, StorageSettings(timescale="on"))
    assert _rows(fresh_db, "SELECT to_regclass('schema_migrations')") == [(None,)]


def test_timescale_off_warns_why_the_branch_is_plain(
    fresh_db: str, branch: mig.Variant, caplog: pytest.LogCaptureFixture
) -> None:
    """The warning names the reason: the setting on a server with TimescaleDB, the missing
    extension elsewhere."""
    with caplog.at_level("WARNING", logger="pdm_common.db.migrations"):
        result = mig.migrate(fresh_db, StorageSettings(timescale="off"))
    assert result.variant == "plain"
    expected = mig.OFF_WARNING if branch == "timescale" else mig.PLAIN_WARNING
    assert [r.getMessage() for r in caplog.records] == [expected]
    assert ("not available" in expected) is (branch == "plain")


def test_cli_status_dry_run_and_migrate(
    fresh_db: str, branch: mig.Variant, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .pdm/stack.env
    monkeypatch.setenv("PDM_DATABASE_URL", fresh_db)
    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:  # keeps `migrate` a sub-command, as under `pdm`
        pass

    runner = CliRunner()
    dry = runner.invoke(app, ["migrate", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f"-- storage branch: {branch}" in dry.output
    if branch == "plain":
        assert "CREATE VIEW readings_1h" in dry.output
    else:
        assert "CREATE MATERIALIZED VIEW readings_1h" in dry.output
    ts = runner.invoke(app, ["migrate", "--dry-run", "--variant", "timescale"])
    assert ts.exit_code == 0, ts.output
    assert "create_hypertable('readings'" in ts.output
    assert _rows(fresh_db, "SELECT to_regclass('readings')") == [(None,)]

    applied = runner.invoke(app, ["migrate"])
    assert applied.exit_code == 0, applied.output
    assert f"applied 0002_readings_layout [{branch}]" in applied.output
    status = runner.invoke(app, ["migrate", "--status"])
    assert status.exit_code == 0, status.output
    assert "readings_layout" in status.output and "applied" in status.output

    monkeypatch.setenv("PDM_DATABASE_URL", "postgresql://pdm@127.0.0.1:1/nowhere")
    down = runner.invoke(app, ["migrate"])
    assert down.exit_code == 1
    assert "cannot reach PostgreSQL at 127.0.0.1:1/nowhere" in down.output
    assert "pdm stack up" in down.output


# --- bulk insert ---------------------------------------------------------------------------


async def _stored(conn: psycopg.AsyncConnection[Any]) -> dict[tuple[str, str, datetime], float]:
    cur = await conn.execute("SELECT asset_id, sensor, time, value FROM readings")
    return {(a, s, t): v for a, s, t, v in await cur.fetchall()}


async def test_copy_insert_ignore_skips_duplicates(conn: psycopg.AsyncConnection[Any]) -> None:
    t = [T0 + timedelta(seconds=i) for i in range(4)]
    first = [
        (t[2], "pump-1", "temp", 2.0),
        (t[0], "pump-1", "temp", 0.0),  # out of order
        (t[1], "pump-1", "temp", 1.0),
        (t[0], "pump-1", "temp", 99.0),  # duplicate inside the batch: the first one wins
        (t[0], "pump-1", "vib", 5.0),
    ]
    assert await copy_insert_ignore(conn, "readings", COLS, TYPES, first) == 4
    await conn.commit()
    second = [
        (t[1], "pump-1", "temp", -1.0),  # already stored: ignored
        (t[3], "pump-1", "temp", 3.0),
        (t[3], "pump-1", "temp", 3.5),
    ]
    assert await copy_insert_ignore(conn, "readings", COLS, TYPES, iter(second)) == 1
    assert await copy_insert_ignore(conn, "readings", COLS, TYPES, []) == 0
    await conn.commit()
    assert await _stored(conn) == {
        ("pump-1", "temp", t[0]): 0.0,
        ("pump-1", "temp", t[1]): 1.0,
        ("pump-1", "temp", t[2]): 2.0,
        ("pump-1", "temp", t[3]): 3.0,
        ("pump-1", "vib", t[0]): 5.0,
    }


PRED_COLS = [
    "prediction_id", "time", "asset_id", "asset_type", "request_id", "health_score",
    "confidence", "payload",
]  # fmt: skip
PRED_TYPES = ["uuid", "timestamptz", "text", "text", "uuid", "float8", "float8", "jsonb"]


def _prediction(request_id: uuid.UUID | None, at: datetime) -> tuple[Any, ...]:
    return (uuid.uuid4(), at, "pump-1", "pump", request_id, 0.9, 0.8, Jsonb({}))


async def _prediction_requests(conn: psycopg.AsyncConnection[Any]) -> list[tuple[Any, ...]]:
    cur = await conn.execute(
        "SELECT request_id, time FROM predictions WHERE request_id IS NOT NULL ORDER BY time"
    )
    return await cur.fetchall()


async def test_plain_predictions_dedupe_redelivered_requests(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    """The plain branch (0006 a no-op): 0004's (request_id) index dedupes across times."""
    request = uuid.uuid4()
    first = [_prediction(request, T0), _prediction(None, T0), _prediction(None, T0)]
    assert await copy_insert_ignore(conn, "predictions", PRED_COLS, PRED_TYPES, first) == 3
    await conn.commit()
    again = [_prediction(request, T0 + timedelta(seconds=5))]  # redelivery, new occurred_at
    assert await copy_insert_ignore(conn, "predictions", PRED_COLS, PRED_TYPES, again) == 0
    await conn.commit()
    assert await _prediction_requests(conn) == [(request, T0)]


async def test_timescale_request_claim_dedupes_without_a_request_id_index(
    conn: psycopg.AsyncConnection[Any], branch: mig.Variant
) -> None:
    """The parts of 0006's Timescale branch that are plain SQL (claim table, trigger, index
    swap, prune procedure) run here for real: with only (request_id, time) unique, a
    redelivered request with a new `time` is still stored once."""
    if branch == "timescale":
        pytest.skip("0006 ran this SQL for real on this server; test_timescale.py covers it")
    stored = uuid.uuid4()
    before = [_prediction(stored, T0)]  # stored before 0006: its claim comes from the backfill
    assert await copy_insert_ignore(conn, "predictions", PRED_COLS, PRED_TYPES, before) == 1
    await conn.commit()
    plain_sql = [
        s
        for s in mig.predictions_timescale_statements(SETTINGS)
        if "timescaledb" not in s and "create_hypertable" not in s and "_job" not in s
        and "_policy" not in s
    ]  # fmt: skip
    assert len(plain_sql) == 10  # all but the extension, hypertable, compression, policies
    async with conn.transaction():
        for statement in plain_sql:
            await conn.execute(statement.encode())
    await conn.commit()
    cur = await conn.execute("SELECT to_regclass('predictions_request')")
    assert await cur.fetchone() == (None,)

    fresh = uuid.uuid4()
    t1, t2 = T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)
    batch = [
        _prediction(stored, t1),  # redelivery of a request stored before 0006
        _prediction(fresh, t1),
        _prediction(fresh, t2),  # the same request twice in one batch: the first wins
        _prediction(None, t1),  # no request id: never deduped
        _prediction(None, t1),
    ]
    assert await copy_insert_ignore(conn, "predictions", PRED_COLS, PRED_TYPES, batch) == 3
    await conn.commit()
    redelivered = [_prediction(fresh, T0 + timedelta(minutes=3))]
    assert await copy_insert_ignore(conn, "predictions", PRED_COLS, PRED_TYPES, redelivered) == 0
    await conn.commit()
    assert await _prediction_requests(conn) == [(stored, T0), (fresh, t1)]

    # A rolled-back insert releases its claim.
    late = uuid.uuid4()
    one = [_prediction(late, t2)]
    assert await copy_insert_ignore(conn, "predictions", PRED_COLS, PRED_TYPES, one) == 1
    await conn.rollback()
    assert await copy_insert_ignore(conn, "predictions", PRED_COLS, PRED_TYPES, one) == 1
    await conn.commit()

    # The prune job's procedure forgets claims past the horizon.
    await conn.execute("UPDATE prediction_requests SET time = now() - INTERVAL '200 days'")
    await conn.execute(
        "CALL prune_prediction_requests(0, jsonb_build_object('drop_after', INTERVAL '180 days'))"
    )
    await conn.commit()
    cur = await conn.execute("SELECT count(*) FROM prediction_requests")
    assert await cur.fetchone() == (0,)


async def test_copy_insert_ignore_twice_in_one_transaction_then_rollback(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    a = [(T0 + timedelta(seconds=i), "pump-2", "temp", float(i)) for i in range(100)]
    b = [(T0 + timedelta(seconds=i), "pump-2", "temp", float(i)) for i in range(50, 150)]
    assert await copy_insert_ignore(conn, "readings", COLS, TYPES, a) == 100
    # The stage still holds batch a until commit; it must not be re-inserted or counted.
    assert await copy_insert_ignore(conn, "readings", COLS, TYPES, b) == 50
    await conn.rollback()
    assert await _stored(conn) == {}
    assert await copy_insert_ignore(conn, "readings", COLS, TYPES, b) == 100
    await conn.commit()
    assert len(await _stored(conn)) == 100


async def test_copy_insert_ignore_on_autocommit_and_pooled_connections(migrated_db: str) -> None:
    rows = [(T0 + timedelta(minutes=i), "pump-3", "speed", 1.0 * i) for i in range(10)]
    async with await psycopg.AsyncConnection.connect(migrated_db, autocommit=True) as auto:
        assert await copy_insert_ignore(auto, "public.readings", COLS, TYPES, rows[:5]) == 5
    pool = await create_pool(migrated_db, min_size=1, max_size=1, name="pdm-test-bulk")
    try:
        async with pool.connection() as pooled:
            # The stage's creation is rolled back with this transaction ...
            await copy_insert_ignore(pooled, "readings", COLS, TYPES, rows)
            await pooled.rollback()
        async with pool.connection() as pooled:
            # ... and the same session recreates it instead of failing.
            assert await copy_insert_ignore(pooled, "readings", COLS, TYPES, rows) == 5
        async with pool.connection() as pooled:
            assert await copy_insert_ignore(pooled, "readings", COLS, TYPES, rows) == 0
            cur = await pooled.execute("SELECT count(*) FROM readings WHERE asset_id = 'pump-3'")
            assert await cur.fetchone() == (10,)
    finally:
        await pool.close()


async def test_copy_insert_ignore_rejects_bad_arguments(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    with pytest.raises(ValueError, match="same length"):
        await copy_insert_ignore(conn, "readings", COLS, TYPES[:2], [])
    with pytest.raises(ValueError, match=r"schema\.name"):
        await copy_insert_ignore(conn, "a.b.c", COLS, TYPES, [])


# --- queries -------------------------------------------------------------------------------


def _sample() -> list[tuple[datetime, str, str, float]]:
    """Two sensors over 10:00-11:59 UTC plus another asset, deliberately shuffled."""
    rows = [
        (T0 + timedelta(minutes=59, seconds=59), "pump-1", "temp", 30.0),
        (T0, "pump-1", "temp", 10.0),
        (T0 + timedelta(minutes=20), "pump-1", "temp", 20.0),
        (T0 + timedelta(hours=1), "pump-1", "temp", 40.0),
        (T0 + timedelta(hours=1, minutes=30), "pump-1", "temp", 50.0),
        (T0 + timedelta(minutes=5), "pump-1", "vib", 1.5),
        (T0 + timedelta(minutes=6), "pump-1", "vib", 0.5),
        (T0 + timedelta(hours=1, minutes=1), "pump-2", "temp", 99.0),
    ]
    return rows


async def _load_sample(conn: psycopg.AsyncConnection[Any]) -> None:
    await copy_insert_ignore(conn, "readings", COLS, TYPES, _sample())
    await conn.commit()


async def test_readings_1h_view_answers(conn: psycopg.AsyncConnection[Any]) -> None:
    await _load_sample(conn)
    cur = await conn.execute(
        "SELECT bucket, sensor, avg_value, min_value, max_value, sample_count, last_value "
        "FROM readings_1h WHERE asset_id = 'pump-1' ORDER BY sensor, bucket"
    )
    h10, h11 = T0, T0 + timedelta(hours=1)
    assert await cur.fetchall() == [
        (h10, "temp", 20.0, 10.0, 30.0, 3, 30.0),
        (h11, "temp", 45.0, 40.0, 50.0, 2, 50.0),
        (h10, "vib", 1.0, 0.5, 1.5, 2, 0.5),
    ]


@pytest.mark.parametrize(
    ("agg", "expected"),
    [
        ("avg", [20.0, 45.0]),
        ("min", [10.0, 40.0]),
        ("max", [30.0, 50.0]),
        ("count", [3, 2]),
        ("last", [30.0, 50.0]),
    ],
)
async def test_readings_bucketed_matches_readings_1h(
    conn: psycopg.AsyncConnection[Any], branch: mig.Variant, agg: Any, expected: list[float]
) -> None:
    await _load_sample(conn)
    timescale = await timescale_enabled(conn)
    assert timescale is (branch == "timescale")
    rows = await readings_bucketed(
        conn, "pump-1", "temp", T0, T0 + timedelta(hours=2), "1h", agg, timescale
    )
    assert rows == [
        BucketRow(T0, "temp", expected[0]),
        BucketRow(T0 + timedelta(hours=1), "temp", expected[1]),
    ]


async def test_readings_bucketed_ranges_sensors_and_widths(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    await _load_sample(conn)
    end = T0 + timedelta(hours=1)  # exclusive: the 11:00 reading is out
    every_sensor = await readings_bucketed(conn, "pump-1", None, T0, end, "1h", "count", False)
    assert every_sensor == [BucketRow(T0, "temp", 3), BucketRow(T0, "vib", 2)]
    minutes = await readings_bucketed(conn, "pump-1", "vib", T0, end, "1m", "max", timescale=False)
    assert minutes == [
        BucketRow(T0 + timedelta(minutes=5), "vib", 1.5),
        BucketRow(T0 + timedelta(minutes=6), "vib", 0.5),
    ]
    day = await readings_bucketed(
        conn, "pump-1", "temp", T0 - timedelta(days=1), T0 + timedelta(days=1), "1d", "avg", False
    )
    assert day == [BucketRow(datetime(2025, 3, 1, tzinfo=UTC), "temp", 30.0)]
    assert await readings_bucketed(conn, "nope", None, T0, end, "1h", "avg", False) == []


@pytest.mark.parametrize("agg", ["avg", "min", "max", "count", "last"])
@pytest.mark.parametrize("bucket", ["1h", "1d"])
async def test_rollup_over_readings_1h_answers_like_the_raw_table(
    conn: psycopg.AsyncConnection[Any], agg: Any, bucket: Any
) -> None:
    """The continuous-aggregate path (taken on TimescaleDB) runs here against the plain
    `readings_1h` view: over whole buckets it must give the raw table's answers."""
    await _load_sample(conn)
    midnight = T0.replace(hour=0, minute=0)
    start, end = midnight - timedelta(days=1), midnight + timedelta(days=2)
    assert uses_rollup(bucket, start, end)
    assert not uses_rollup(bucket, start + timedelta(minutes=30), end)  # a cut bucket
    for sensor in ("temp", None):
        raw = await readings_bucketed(conn, "pump-1", sensor, start, end, bucket, agg, False)
        rolled = await readings_bucketed(
            conn, "pump-1", sensor, start, end, bucket, agg, False, rollup=True
        )
        assert [(r.bucket, r.sensor) for r in rolled] == [(r.bucket, r.sensor) for r in raw]
        assert [r.value for r in rolled] == pytest.approx([r.value for r in raw])
        assert raw  # the sample has data in range


async def test_buckets_stay_utc_aligned_in_any_session_time_zone(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    await _load_sample(conn)
    await conn.execute("SET TimeZone = 'Asia/Kolkata'")  # UTC+05:30
    rows = await readings_bucketed(
        conn, "pump-1", "temp", T0, T0 + timedelta(hours=2), "1h", "count", False
    )
    assert [r.bucket for r in rows] == [T0, T0 + timedelta(hours=1)]
    day = await readings_bucketed(
        conn, "pump-1", "temp", T0, T0 + timedelta(hours=2), "1d", "count", False
    )
    assert [r.bucket for r in day] == [datetime(2025, 3, 1, tzinfo=UTC)]


async def test_latest_readings(conn: psycopg.AsyncConnection[Any]) -> None:
    await _load_sample(conn)
    assert await latest_readings(conn, "pump-1") == {
        "temp": (T0 + timedelta(hours=1, minutes=30), 50.0),
        "vib": (T0 + timedelta(minutes=6), 0.5),
    }
    since = T0 + timedelta(hours=1)
    assert await latest_readings(conn, "pump-1", since=since) == {
        "temp": (T0 + timedelta(hours=1, minutes=30), 50.0)
    }
    assert await latest_readings(conn, "pump-9") == {}


# --- pool ----------------------------------------------------------------------------------


async def test_pool_opens_without_waiting_for_a_down_database() -> None:
    started = time.monotonic()
    pool = await create_pool("postgresql://pdm@127.0.0.1:1/pdm", name="pdm-test-down")
    try:
        assert time.monotonic() - started < 1.0
        assert await ping(pool, timeout=0.5) is False
    finally:
        await pool.close()


async def test_pool_recovers_after_postgres_restarts(postgres: Any, database_url: str) -> None:
    pool = await create_pool(database_url, min_size=2, max_size=2, name="pdm-test-restart")
    try:
        assert await ping(pool, timeout=5)
        postgres.stop()
        assert await ping(pool, timeout=1) is False
        with pytest.raises(psycopg.Error) as failure:
            async with pool.connection(timeout=1) as c:
                await c.execute("SELECT 1")
        assert classify_db_error(failure.value) == "unavailable"

        postgres.start()
        started = time.monotonic()
        while not await ping(pool, timeout=2):
            assert time.monotonic() - started < 30, "pool did not recover within 30 s"
            await asyncio.sleep(0.2)
        for _ in range(4):  # every pooled connection works, none is a stale socket
            async with pool.connection(timeout=5) as c:
                cur = await c.execute("SELECT 1")
                assert await cur.fetchone() == (1,)
    finally:
        await pool.close()
