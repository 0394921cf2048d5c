"""Flood control through the real anomaly service (and the gateway), on the real broker and
PostgreSQL: sensors of one asset alarming together give one alarm naming them all, the same
input twice changes nothing, a restart keeps the group; shelving holds new alarms back
(counted on the shelf) until it expires or is lifted; bad shelves are refused (422) or
dead-lettered."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from pdm_tools.dlq_cli import list_dead_letters

from .harness import make_key, publish, read_topic
from .test_anomaly import wait_for
from .test_gateway import bearer

pytestmark = pytest.mark.integration
PROBLEM = "application/problem+json"
VALIDATED = "pdm.readings.validated.v1"
COMMANDS = "pdm.anomaly.commands.v1"


def validated(asset: str, snapshots: list[tuple[datetime, dict[str, float]]]) -> dict:
    """A `readings.validated` event as ingest publishes it (pump limits: vibration ISO 10816
    class II, major from 2.8 mm/s, critical from 7.1; temperatures major 90, critical 105)."""
    return {
        "event_type": "readings.validated",
        "source": "ingest",
        "asset_id": asset,
        "asset_type": "pump",
        "snapshots": [{"ts": ts.isoformat(), "readings": r} for ts, r in snapshots],
    }


def alarm_rows(db_url: str, asset: str | None = None) -> list[dict]:
    with psycopg.connect(db_url) as conn:
        cur = conn.execute(
            "SELECT alarm_id, asset_id, condition, status, severity, conditions, sensors, "
            "opened_at, last_anomalous_at FROM alarms "
            "WHERE %(a)s::text IS NULL OR asset_id = %(a)s ORDER BY asset_id, opened_at, condition",
            {"a": asset},
        )
        cols = [c.name for c in cur.description]  # type: ignore[union-attr]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


async def events_of(kafka: str, asset: str) -> list[dict]:
    records = await read_topic(kafka, "pdm.anomalies.v1", idle_ms=800)
    return [e for e in (json.loads(r.value) for r in records) if e["asset_id"] == asset]


async def test_sensors_alarming_together_give_one_alarm_that_survives_duplicates_and_restart(
    kafka, db_url, start_service
):
    anomaly = start_service("anomaly", PDM_ANOMALY_GROUP_WINDOW_S="120")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    normal = {"vibration": 1.0, "temperature": 60.0, "bearing_temperature": 60.0}
    first = [
        validated("pump-g", [(t0, normal | {"vibration": 5.0})]),  # opens (major)
        validated("pump-g", [(t0 + timedelta(seconds=30), normal | {"temperature": 95.0})]),
        # another pump: its second sensor alarms 5 minutes after the first, outside the window
        validated("pump-h", [(t0, normal | {"vibration": 5.0})]),
        validated("pump-h", [(t0 + timedelta(seconds=300), normal | {"temperature": 95.0})]),
    ]
    await publish(kafka, first, topic=VALIDATED)
    wait_for(
        lambda: (
            [len(a["conditions"]) for a in alarm_rows(db_url, "pump-g")] == [2]
            and len(alarm_rows(db_url, "pump-h")) == 2
        ),
        60,
        "pump-g grouped, pump-h two alarms",
        (anomaly,),
    )
    [group] = alarm_rows(db_url, "pump-g")
    assert group["conditions"] == ["vibration:limit", "temperature:limit"]
    assert group["sensors"] == ["temperature", "vibration"] and group["severity"] == "major"
    assert [a["sensors"] for a in alarm_rows(db_url, "pump-h")] == [["vibration"], ["temperature"]]

    # a crash and restart: the third sensor still joins the same alarm (rebuilt from the table)
    time.sleep(1.0)  # let the batch's offsets be committed before the kill
    anomaly.kill()
    anomaly.start()
    later = validated(
        "pump-g", [(t0 + timedelta(seconds=60), normal | {"bearing_temperature": 110.0})]
    )
    await publish(kafka, [later], topic=VALIDATED)
    wait_for(
        lambda: [len(a["conditions"]) for a in alarm_rows(db_url, "pump-g")] == [3],
        60,
        "third sensor joined after the restart",
        (anomaly,),
    )
    [grown] = alarm_rows(db_url, "pump-g")
    assert grown["alarm_id"] == group["alarm_id"]
    assert grown["sensors"] == ["bearing_temperature", "temperature", "vibration"]
    assert grown["severity"] == "critical"  # the worst of its conditions
    settled = alarm_rows(db_url)

    # the same input again (a redelivery, a replay): the stored state does not move
    await publish(kafka, [*first, later], topic=VALIDATED)
    marker = validated("pump-m", [(t0, normal | {"vibration": 9.0})])  # processed after them
    await publish(kafka, [marker], topic=VALIDATED)
    wait_for(lambda: alarm_rows(db_url, "pump-m"), 60, "marker alarm", (anomaly,))
    assert [a for a in alarm_rows(db_url) if a["asset_id"] != "pump-m"] == settled
    events = await events_of(kafka, "pump-g")
    assert [(e["event_type"], e["joined_condition"]) for e in events] == [
        ("alarm.opened", None),
        ("alarm.escalated", "temperature:limit"),
        ("alarm.escalated", "bearing_temperature:limit"),
    ]
    assert events[-1]["sensors"] == ["bearing_temperature", "temperature", "vibration"]


def add_asset(db_url: str, asset: str) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO assets (asset_id, asset_type) VALUES (%s, 'pump') ON CONFLICT DO NOTHING",
            (asset,),
        )


def shelf_rows(db_url: str) -> list[tuple]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "SELECT shelf_id, asset_id, sensor, reason, shelved_by, suppressed, unshelved_by "
            "FROM alarm_shelves ORDER BY shelved_at"
        ).fetchall()


async def test_shelving_holds_alarms_back_until_it_expires_or_is_lifted(
    kafka, db_url, start_service
):
    reader = make_key(db_url, "read")
    writer = make_key(db_url, "read,write")
    for asset in ("pump-s", "pump-t"):
        add_asset(db_url, asset)
    anomaly = start_service("anomaly", PDM_ANOMALY_SHELF_REFRESH_S="1")
    gateway = start_service("gateway", PDM_GATEWAY_KEY_CACHE_S="0")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}", timeout=30) as http:
        now = datetime.now(UTC)
        good = {
            "asset_id": "pump-s",
            "reason": "bearing replacement in progress",
            # long enough for a slow consumer-group join before the storm below (CI: > 25 s)
            "expires_at": (now + timedelta(seconds=60)).isoformat(),
        }
        # --- refused: 422 problem+json naming the problem, 403 without write -------------
        refused = {
            "no reason": {k: v for k, v in good.items() if k != "reason"},
            "blank reason": good | {"reason": "   "},
            "past": good | {"expires_at": (now - timedelta(minutes=1)).isoformat()},
            "too far": good | {"expires_at": (now + timedelta(days=8)).isoformat()},
            "naive": good | {"expires_at": "2030-01-01T00:00:00"},
            "unknown asset": good | {"asset_id": "pump-nobody"},
        }
        for what, body in refused.items():
            r = await http.post("/v1/alarms/shelves", json=body, headers=bearer(writer))
            assert r.status_code == 422, (what, r.text)
            assert r.headers["content-type"] == PROBLEM, what
        assert "no asset pump-nobody" in r.json()["detail"]
        denied = await http.post("/v1/alarms/shelves", json=good, headers=bearer(reader))
        assert denied.status_code == 403

        # --- shelve the whole of pump-s; pump-t stays unshelved -----------------------------
        accepted = await http.post("/v1/alarms/shelves", json=good, headers=bearer(writer))
        assert accepted.status_code == 202, accepted.text
        shelf_id = accepted.json()["command_id"]

        async def listed() -> list[dict]:
            r = await http.get("/v1/alarms/shelves", headers=bearer(reader))
            assert r.status_code == 200, r.text
            items: list[dict] = r.json()["items"]
            return items

        [shelf] = await _wait(listed, "shelf applied")
        assert shelf["shelf_id"] == shelf_id and shelf["shelved_by"] == "t-read,write"
        assert shelf["sensor"] is None and shelf["active"] is True
        await asyncio.sleep(1.5)  # the readings consumer re-reads the shelves every second
        at = datetime.now(UTC)
        storm = {"vibration": 9.0, "temperature": 110.0}
        await publish(
            kafka,
            [
                validated(a, [(at + timedelta(seconds=i), storm) for i in range(3)])
                for a in ("pump-s", "pump-t")
            ],
            topic=VALIDATED,
        )
        wait_for(lambda: alarm_rows(db_url, "pump-t"), 60, "pump-t alarm", (anomaly,))
        time.sleep(1.0)
        assert alarm_rows(db_url, "pump-s") == []  # held back ...
        [held] = await listed()
        assert held["suppressed"] == 2  # ... and counted: one per condition's episode
        assert held["last_suppressed_condition"] in ("vibration:limit", "temperature:limit")
        assert 'pdm_alarms_suppressed_total{service="anomaly"} 2.0' in anomaly.metrics()

        # --- the shelf expires by itself: pump-s alarms again -------------------------------
        expires = datetime.fromisoformat(good["expires_at"])
        await asyncio.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.5)
        assert await listed() == []
        after = datetime.now(UTC)
        await publish(kafka, [validated("pump-s", [(after, storm)])], topic=VALIDATED)
        wait_for(lambda: alarm_rows(db_url, "pump-s"), 60, "pump-s alarms again", (anomaly,))
        [back] = alarm_rows(db_url, "pump-s")
        assert back["sensors"] == ["temperature", "vibration"]  # and grouped

        # --- a sensor shelf lifted by DELETE -----------------------------------------------
        sensor_shelf = {
            "asset_id": "pump-t",
            "sensor": "bearing_temperature",
            "reason": "sensor being recalibrated",
            "expires_at": (datetime.now(UTC) + timedelta(hours=4)).isoformat(),
        }
        r = await http.post("/v1/alarms/shelves", json=sensor_shelf, headers=bearer(writer))
        assert r.status_code == 202
        lifted_id = r.json()["command_id"]
        await _wait(listed, "sensor shelf applied")
        gone = await http.delete(f"/v1/alarms/shelves/{lifted_id}", headers=bearer(writer))
        assert gone.status_code == 202, gone.text
        await _wait(lambda: _empty(listed), "unshelved")
        again = await http.delete(f"/v1/alarms/shelves/{lifted_id}", headers=bearer(writer))
        assert again.status_code == 404 and again.headers["content-type"] == PROBLEM

    # --- straight onto the topic: a duplicate applies once, malformed ones are dead-lettered
    command = {
        "command_id": str(uuid.uuid4()),
        "action": "shelve",
        "asset_id": "pump-u",
        "actor": "op-anna",
        "reason": "planned stop",
        "expires_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
    }
    no_reason = {k: v for k, v in command.items() if k != "reason"}
    past = command | {"expires_at": "2020-01-01T00:00:00Z"}
    await publish(kafka, [command, command, no_reason, past, b"{nope"], topic=COMMANDS)
    wait_for(lambda: any(r[1] == "pump-u" for r in shelf_rows(db_url)), 60, "pump-u", (anomaly,))
    dead = await list_dead_letters(kafka, COMMANDS, idle_ms=800)
    assert sorted(x.reason for x in dead) == ["invalid", "invalid", "invalid"]
    rows = shelf_rows(db_url)
    assert [r[1] for r in rows if r[1] == "pump-u"] == ["pump-u"]  # once
    assert [(r[1], r[2], r[6]) for r in rows] == [
        ("pump-s", None, None),  # expired, not lifted: it ends at expires_at
        ("pump-t", "bearing_temperature", "t-read,write"),
        ("pump-u", None, None),
    ]


async def _wait(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 90.0) -> Any:
    """Poll until `check` is truthy. 90 s: on a loaded 2-core machine a consumer group of a
    freshly started service can take tens of seconds to join on tansu (CI saw > 30 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.3)
    raise AssertionError(f"{what} not met within {timeout} s")


async def _empty(listed: Callable[[], Awaitable[list[dict]]]) -> bool:
    return await listed() == []
