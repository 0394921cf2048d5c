"""Ingest end to end on the real broker and PostgreSQL, faults included."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from pdm_tools.dlq_cli import list_dead_letters, replay_dead_letters

from .harness import count_rows, publish, read_topic, snapshots, wait_rows

pytestmark = pytest.mark.integration


async def test_ten_thousand_readings_stored_exactly_once(kafka, db_url, start_ingest):
    ingest = start_ingest()
    snaps = snapshots([f"pump-{i:03d}" for i in range(5)], 250, sensors=8)  # 1250 x 8 = 10,000
    await publish(kafka, snaps)
    assert wait_rows(db_url, 10_000, 60, ingest) == 10_000
    # The same messages again, and overlapping batches (lists sharing snapshots): stored once.
    await publish(kafka, snaps[:300])
    await publish(kafka, [snaps[i : i + 4] for i in range(0, 400, 2)])
    marker = {"asset_id": "marker", "ts": datetime.now(UTC).isoformat(), "readings": {"x": 1}}
    await publish(kafka, [marker])
    wait_rows(db_url, 10_001, 30, ingest)
    assert count_rows(db_url) == 10_001
    with psycopg.connect(db_url) as conn:
        registered = conn.execute(
            "SELECT count(*) FROM assets WHERE registered_by = 'auto'"
        ).fetchone()
    assert registered == (6,)
    validated = await read_topic(kafka, "pdm.readings.validated.v1")
    assert {r.key for r in validated} >= {f"pump-{i:03d}".encode() for i in range(5)}
    event = json.loads(validated[0].value)
    assert event["event_type"] == "readings.validated" and event["snapshots"]


async def test_out_of_order_timestamps_are_stored_correctly_and_trace_continues(
    kafka, db_url, start_ingest
):
    ingest = start_ingest()
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    order = [5, 1, 9, 0, 3, 7, 2, 8, 6, 4]
    msgs = [
        {
            "asset_id": "ooo",
            "ts": (base + timedelta(seconds=i)).isoformat(),
            "readings": {"t": float(i)},
        }
        for i in order
    ]
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    await publish(kafka, msgs, headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    wait_rows(db_url, 10, 30, ingest)
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT time, value FROM readings WHERE asset_id='ooo' ORDER BY time"
        ).fetchall()
    assert [r[0] for r in rows] == [base + timedelta(seconds=i) for i in range(10)]
    assert [r[1] for r in rows] == [float(i) for i in range(10)]
    # W3C trace context crossed the Kafka hop: the validated event continues the trace.
    [validated] = await read_topic(kafka, "pdm.readings.validated.v1", idle_ms=800)
    headers = {k: v.decode() for k, v in validated.headers}
    assert headers["traceparent"].split("-")[1] == trace_id
    assert [s["readings"]["t"] for s in json.loads(validated.value)["snapshots"]] == [
        float(i) for i in range(10)
    ]
    metrics = ingest.metrics()
    assert 'pdm_rows_written_total{service="ingest",table="readings"} 10.0' in metrics
    assert (
        'pdm_messages_total{outcome="ok",service="ingest",topic="pdm.readings.v1"} 10.0' in metrics
    )


POISON = {
    "invalid JSON": (b'{"asset_id": "pump-1", "ts": ', "undecodable"),
    "wrong type": (
        json.dumps(
            {"asset_id": "pump-1", "ts": "2026-01-01T00:00:00Z", "readings": {"t": "hot"}}
        ).encode(),
        "invalid",
    ),
    "NaN": (b'{"asset_id":"pump-1","ts":"%s","readings":{"t":NaN}}', "invalid"),
    "Infinity": (b'{"asset_id":"pump-1","ts":"%s","readings":{"t":-Infinity}}', "invalid"),
    "missing field": (json.dumps({"asset_id": "pump-1", "readings": {"t": 1}}).encode(), "invalid"),
    "unknown field": (
        b'{"asset_id":"pump-1","ts":"%s","readings":{"t":1},"temprature":3}',
        "invalid",
    ),
    "oversized": (
        b'{"asset_id":"pump-1","ts":"%s","readings":{"t":1},"message_id":"' + b"x" * 70_000 + b'"}',
        "too_large",
    ),
    "future": (
        b'{"asset_id":"pump-1","ts":"2099-01-01T00:00:00Z","readings":{"t":1}}',
        "ts_out_of_range",
    ),
}


async def test_poison_goes_to_dlq_with_reason_rest_is_stored_and_replay_after_fix(
    kafka, db_url, start_ingest
):
    now = datetime.now(UTC).isoformat().encode()
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO assets (asset_id, asset_type, registered_by) VALUES ('pump-1', 'pump', 'api')"
        )
    ingest = start_ingest(PDM_INGEST_UNKNOWN_ASSETS="reject", PDM_KAFKA_MAX_MESSAGE_BYTES="65536")
    good = snapshots(["pump-1"], 20, sensors=3)
    unregistered = snapshots(["pump-2"], 5, sensors=3)
    mixed: list[object] = []
    for i, (payload, _) in enumerate(POISON.values()):
        mixed += good[i * 2 : i * 2 + 2]
        mixed.append(payload.replace(b"%s", now) if b"%s" in payload else payload)
    mixed += good[16:] + unregistered
    await publish(kafka, mixed)
    wait_rows(db_url, 60, 30, ingest)

    letters: list = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(letters) < len(POISON) + 5:
        letters = await list_dead_letters(kafka, "pdm.readings.v1", idle_ms=500)
    reasons = sorted(x.reason for x in letters)
    expected = sorted([r for _, r in POISON.values()] + ["unknown_asset"] * 5)
    assert reasons == expected, [(x.reason, x.error) for x in letters]
    assert all(x.service == "ingest" and x.original.startswith("pdm.readings.v1[") for x in letters)
    assert count_rows(db_url) == 60  # every good reading of the mixed batches is stored

    # Fix: register the asset, then replay only the letters that the fix resolves.
    with psycopg.connect(db_url) as conn:
        conn.execute("INSERT INTO assets (asset_id, registered_by) VALUES ('pump-2', 'api')")
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "pdm_tools.cli",
            "dlq",
            "replay",
            "pdm.readings.v1",
            "--reason",
            "unknown_asset",
        ],
        env={**ingest.env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    assert "replayed 5 message(s)" in cli.stdout
    wait_rows(db_url, 75, 30, ingest)
    # A second replay finds nothing new: letters are replayed once.
    again = await replay_dead_letters(kafka, "pdm.readings.v1", reason="unknown_asset", idle_ms=500)
    assert again == []
    time.sleep(1)
    assert count_rows(db_url) == 75


@pytest.mark.slow
async def test_kill_9_mid_stream_then_restart_stores_everything_once(kafka, db_url, start_ingest):
    ingest = start_ingest(PDM_INGEST_BATCH_MAX_RECORDS="200")
    snaps = snapshots([f"a{i}" for i in range(10)], 1000, sensors=4)  # 10,000 msgs, 40,000 values
    await publish(kafka, snaps)
    ingest.wait_until(lambda: count_rows(db_url) > 4_000, 60, "first rows")
    ingest.kill()
    stored_at_kill = count_rows(db_url)
    assert stored_at_kill < 40_000, "the kill came too late to prove anything"
    ingest.start()
    assert wait_rows(db_url, 40_000, 120, ingest) == 40_000
    time.sleep(2)  # any late duplicate write would show up now
    assert count_rows(db_url) == 40_000
    with psycopg.connect(db_url) as conn:
        dupes = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM readings GROUP BY asset_id, sensor, time HAVING count(*) > 1) d"
        ).fetchone()
    assert dupes == (0,)


@pytest.mark.slow
async def test_database_down_30s_pauses_and_loses_nothing(kafka, db_url, start_ingest, postgres):
    ingest = start_ingest()  # default pause step (5 s) applies
    first = snapshots(["db-a", "db-b"], 500, sensors=4)
    await publish(kafka, first)
    wait_rows(db_url, 4_000, 60, ingest)
    postgres.stop()
    try:
        second = snapshots(
            ["db-a", "db-b"], 500, sensors=4, start=datetime.now(UTC) - timedelta(minutes=5)
        )
        await publish(kafka, second)
        ingest.wait_until(lambda: ingest.probe("/ready") == 503, 30, "/ready to report the outage")
        await asyncio.sleep(30)
        assert ingest.probe("/health") == 200  # alive, just paused
        assert "pdm_consumer_paused" in ingest.metrics()
    finally:
        postgres.start()
    assert wait_rows(db_url, 8_000, 120, ingest) == 8_000
    ingest.wait_until(lambda: ingest.probe("/ready") == 200, 60, "/ready after the outage")
    assert count_rows(db_url) == 8_000
    assert await list_dead_letters(kafka, "pdm.readings.v1", idle_ms=500) == []


async def test_transient_failure_goes_through_retry_topic_then_dlq(kafka, db_url, start_ingest):
    """A lock held on `readings` makes every insert time out (a transient database error)."""
    ingest = start_ingest(
        PDM_DATABASE_STATEMENT_TIMEOUT_MS="300",
        PDM_RETRY_IN_PROCESS_ATTEMPTS="2",
        PDM_RETRY_TOPIC_ATTEMPTS="2",
        PDM_RETRY_BACKOFF_INITIAL_S="0.05",
        PDM_RETRY_BACKOFF_MAX_S="0.5",
    )
    release = threading.Event()

    def hold_lock() -> None:
        with psycopg.connect(db_url) as conn, conn.transaction():
            conn.execute("LOCK TABLE readings IN ACCESS EXCLUSIVE MODE")
            release.wait(60)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        await publish(kafka, snapshots(["locked"], 3, sensors=2))
        letters: list = []
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and len(letters) < 3:
            letters = await list_dead_letters(kafka, "pdm.readings.v1", idle_ms=500)
    finally:
        release.set()
        holder.join()
    assert len(letters) == 3, ingest.tail()
    assert all("gave up after 2 retry-topic attempts" in x.error for x in letters)
    assert all(x.reason == "database_transient" for x in letters)
    retried = await read_topic(kafka, "pdm.readings.v1.retry", idle_ms=500)
    attempts = sorted(dict((k, v.decode()) for k, v in r.headers)["pdm-attempt"] for r in retried)
    assert attempts == ["1", "1", "1", "2", "2", "2"]
    # The lock is gone: a replay stores them.
    assert len(await replay_dead_letters(kafka, "pdm.readings.v1", idle_ms=500)) == 3
    assert wait_rows(db_url, 6, 30, ingest) == 6
