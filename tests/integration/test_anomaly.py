"""The anomaly service end to end: gateway -> ingest -> validated -> anomaly -> alarms."""

from __future__ import annotations

import json
import math
import random
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from pdm_tools.dlq_cli import list_dead_letters

from .harness import publish, read_topic

pytestmark = pytest.mark.integration

STEP = timedelta(seconds=5)
N = 1500  # snapshots per asset (~2 h of 5 s readings)
HEALTHY = ["pump-h1", "pump-h2", "pump-h3", "pump-h4"]
FAULTS = {
    "pump-spike": ("temperature", 1200),  # one sample, far out
    "pump-shift": ("pressure", 1000),  # level shift from here on
    "pump-drift": ("vibration", 700),  # slow drift from here on
}


def value(asset: str, sensor: str, i: int, rng: random.Random) -> float:
    base = {"temperature": 60.0, "vibration": 2.0, "pressure": 4.5}[sensor]
    sd = {"temperature": 0.5, "vibration": 0.08, "pressure": 0.05}[sensor]
    v = base + sd * rng.gauss(0, 1) + sd * 0.5 * math.sin(i / 120)  # noise + a slow cycle
    fault = FAULTS.get(asset)
    if fault and fault[0] == sensor and i >= fault[1]:
        if asset == "pump-spike" and i == fault[1]:
            v += 30 * sd
        elif asset == "pump-shift":
            v += 12 * sd
        elif asset == "pump-drift":
            v += 0.004 * (i - fault[1])  # +1.2 mm/s after 300 samples
    return round(v, 4)


def stream(assets: list[str], start_i: int, end_i: int, t0: datetime) -> list[list[dict]]:
    """Messages of 50 snapshots of one asset each, interleaved across assets."""
    msgs = []
    for chunk in range(start_i, end_i, 50):
        for asset in assets:
            rng = random.Random(f"{asset}-{chunk}")
            msgs.append(
                [
                    {
                        "asset_id": asset,
                        "asset_type": "pump",
                        "ts": (t0 + i * STEP).isoformat(),
                        "readings": {
                            s: value(asset, s, i, rng)
                            for s in ("temperature", "vibration", "pressure")
                        },
                    }
                    for i in range(chunk, min(chunk + 50, end_i))
                ]
            )
    return msgs


def alarms(db_url: str) -> list[dict]:
    with psycopg.connect(db_url) as conn:
        cur = conn.execute(
            "SELECT asset_id, condition, status, severity, detector, contributors FROM alarms"
        )
        cols = [c.name for c in cur.description]  # type: ignore[union-attr]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


def readings_done(db_url: str, expected: int) -> bool:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT count(*) FROM readings").fetchone()[0] >= expected  # type: ignore[index]


def wait_for(cond, timeout: float, what: str, procs=()) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.5)
    logs = "\n".join(f"--- {p.name}\n{p.tail()}" for p in procs)
    raise AssertionError(f"timed out: {what}\n{logs}")


async def test_injected_faults_alarm_their_asset_only_and_restart_brings_no_burst(
    kafka, db_url, start_service
):
    assets = HEALTHY + list(FAULTS)
    t0 = datetime.now(UTC).replace(microsecond=0) - N * STEP - timedelta(minutes=5)
    ingest = start_service("ingest")
    anomaly = start_service("anomaly", PDM_ANOMALY_CLEAR_AFTER_S="3600")
    await publish(kafka, stream(assets, 0, N // 2, t0))
    half = len(assets) * (N // 2) * 3
    wait_for(lambda: readings_done(db_url, half), 90, "first half stored", (ingest, anomaly))
    time.sleep(3)  # let anomaly finish the first half, then crash it
    anomaly.kill()
    await publish(kafka, stream(assets, N // 2, N, t0))
    wait_for(lambda: readings_done(db_url, len(assets) * N * 3), 90, "all stored", (ingest,))
    anomaly.start()
    expected = {a: s for a, (s, _) in FAULTS.items()}
    wait_for(
        lambda: {a["asset_id"] for a in alarms(db_url)} >= set(expected),
        120,
        "alarms for every faulty asset",
        (ingest, anomaly),
    )
    time.sleep(5)  # anything late (a false alarm after the restart) shows up now
    found = alarms(db_url)
    assert {a["asset_id"] for a in found} == set(expected), found
    for asset, sensor in expected.items():
        conditions = [a["condition"] for a in found if a["asset_id"] == asset]
        assert any(c.startswith(f"{sensor}:") for c in conditions), (asset, conditions)
    opened = [json.loads(r.value) for r in await read_topic(kafka, "pdm.anomalies.v1", idle_ms=800)]
    assert {e["asset_id"] for e in opened if e["event_type"] == "alarm.opened"} == set(expected)
    assert all(e["contributors"] for e in opened)
    # one open alarm per (asset, condition), no duplicates after the restart
    keys = [(a["asset_id"], a["condition"]) for a in found if a["status"] == "open"]
    assert len(keys) == len(set(keys))


async def test_commands_acknowledge_assign_once_and_bad_input_is_dead_lettered(
    kafka, db_url, start_service
):
    anomaly = start_service("anomaly")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    # straight onto the validated topic, as ingest would publish it: a vibration beyond the
    # ISO 10816 class II C/D boundary raises a critical limit alarm at once
    event = {
        "event_type": "readings.validated",
        "source": "ingest",
        "asset_id": "pump-x",
        "asset_type": "pump",
        "snapshots": [
            {"ts": (t0 + i * STEP).isoformat(), "readings": {"vibration": 9.0}} for i in range(3)
        ],
    }
    await publish(
        kafka,
        [event, b"{not json", {"asset_id": "missing fields"}],
        topic="pdm.readings.validated.v1",
    )
    wait_for(lambda: alarms(db_url), 60, "limit alarm", (anomaly,))
    [alarm] = alarms(db_url)
    assert alarm["condition"] == "vibration:limit" and alarm["severity"] == "critical"
    with psycopg.connect(db_url) as conn:
        alarm_id = conn.execute("SELECT alarm_id FROM alarms").fetchone()[0]  # type: ignore[index]
    ack = {
        "command_id": str(uuid.uuid4()),
        "alarm_id": str(alarm_id),
        "action": "acknowledge",
        "actor": "op-anna",
    }
    assign = {
        "command_id": str(uuid.uuid4()),
        "alarm_id": str(alarm_id),
        "action": "assign",
        "actor": "op-anna",
        "assignee": "tech-bo",
        "note": "check bearing",
    }
    unknown = {
        "command_id": str(uuid.uuid4()),
        "alarm_id": str(uuid.uuid4()),
        "action": "acknowledge",
        "actor": "op-anna",
    }
    await publish(
        kafka, [ack, ack, assign, unknown, {"action": "explode"}], topic="pdm.anomaly.commands.v1"
    )

    def applied() -> bool:
        with psycopg.connect(db_url) as conn:
            row = conn.execute("SELECT acknowledged_by, assignee FROM alarms").fetchone()
        return row == ("op-anna", "tech-bo")

    wait_for(applied, 60, "ack + assign applied", (anomaly,))
    time.sleep(2)
    events = [json.loads(r.value) for r in await read_topic(kafka, "pdm.anomalies.v1", idle_ms=800)]
    kinds = sorted(e["event_type"] for e in events)
    assert kinds == [
        "alarm.acknowledged",
        "alarm.assigned",
        "alarm.opened",
    ]  # the duplicate ack: nothing
    assigned = next(e for e in events if e["event_type"] == "alarm.assigned")
    assert assigned["actor"] == "op-anna" and assigned["assignee"] == "tech-bo"
    bad_readings = await list_dead_letters(kafka, "pdm.readings.validated.v1", idle_ms=800)
    assert sorted(x.reason for x in bad_readings) == ["invalid", "invalid"]
    bad_commands = await list_dead_letters(kafka, "pdm.anomaly.commands.v1", idle_ms=800)
    assert sorted(x.reason for x in bad_commands) == ["invalid", "unknown_alarm"]


async def test_multivariate_champion_is_served_and_reloaded_when_its_alias_moves(
    kafka, db_url, start_service, mlflow_uri
):
    """The registry path: champion loaded from MLflow, used on snapshots, reloaded on
    `pdm.models.v1` without a restart; alarms name the model version that raised them."""
    import numpy as np

    from pdm_common import registry
    from pdm_ml.detectors import multivariate as mv

    from .test_registry import healthy, register

    asset_type = f"mv{uuid.uuid4().hex[:6]}"
    name = registry.model_name("anomaly", asset_type)
    config = mv.MultivariateConfig(mcd_max_rows=3000)
    v1 = register(mv.fit(healthy(3000, seed=1), config), name, mlflow_uri, youden_j=0.8)
    registry.promote_if_better(
        name, v1.version, metric="youden_j", higher_is_better=True, tracking_uri=mlflow_uri
    )
    anomaly = start_service("anomaly", PDM_MLFLOW_TRACKING_URI=mlflow_uri)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)

    def snapshots(asset: str, start: int, n: int, seed: int, broken: bool = False) -> dict:
        frame = healthy(n, seed)
        if broken:  # each value plausible alone, their relation impossible
            rng = np.random.default_rng(seed)
            frame["power"] = 11 - 4 * 1.5 + rng.normal(0, 0.2, n)
            frame["flow"] = 50 + 12 * 1.5 + rng.normal(0, 1.0, n)
        return {
            "event_type": "readings.validated",
            "source": "test",
            "asset_id": asset,
            "asset_type": asset_type,
            "snapshots": [
                {
                    "ts": (t0 + (start + i) * STEP).isoformat(),
                    "readings": {k: float(v) for k, v in row.items()},
                }
                for i, (_, row) in enumerate(frame.iterrows())
            ],
        }

    def multivariate_alarm(asset: str) -> dict | None:
        with psycopg.connect(db_url) as conn:
            row = conn.execute(
                "SELECT model_name, model_version FROM alarms "
                "WHERE asset_id = %s AND condition = 'multivariate'",
                (asset,),
            ).fetchone()
        return None if row is None else {"model_name": row[0], "model_version": row[1]}

    def serving(version: str) -> bool:
        line = f'pdm_model_in_use{{model="{name}",service="anomaly",version="{version}"}} 1.0'
        return line in anomaly.metrics()

    await publish(kafka, [snapshots("mv-1", 0, 100, seed=3)], topic="pdm.readings.validated.v1")
    # the champion loads in the background on first sight of the asset type
    wait_for(lambda: serving("1"), 60, "champion v1 in use", (anomaly,))
    await publish(
        kafka, [snapshots("mv-1", 100, 5, seed=4, broken=True)], topic="pdm.readings.validated.v1"
    )
    wait_for(lambda: multivariate_alarm("mv-1"), 60, "multivariate alarm (v1)", (anomaly,))
    assert multivariate_alarm("mv-1") == {"model_name": name, "model_version": "1"}

    v2 = register(mv.fit(healthy(3000, seed=2), config), name, mlflow_uri, youden_j=0.9)
    decision = registry.promote_if_better(
        name, v2.version, metric="youden_j", higher_is_better=True, tracking_uri=mlflow_uri
    )
    assert decision.moved
    await publish(kafka, [json.loads(decision.to_event("test").to_json())], topic="pdm.models.v1")
    wait_for(lambda: serving("2"), 60, "champion v2 in use after the alias moved", (anomaly,))
    assert not serving("1")
    await publish(kafka, [snapshots("mv-2", 0, 100, seed=5)], topic="pdm.readings.validated.v1")
    await publish(
        kafka, [snapshots("mv-2", 100, 5, seed=6, broken=True)], topic="pdm.readings.validated.v1"
    )
    wait_for(lambda: multivariate_alarm("mv-2"), 60, "multivariate alarm (v2)", (anomaly,))
    assert multivariate_alarm("mv-2") == {"model_name": name, "model_version": "2"}


async def test_an_announced_change_of_operating_point_is_learned_not_alarmed(
    kafka, db_url, start_service
):
    """`pdm.asset.context.v1` through the real service: the same step in flow alarms on the
    pump nobody announced, and not on the pump whose operating point was announced to change;
    a malformed context event is dead-lettered."""
    anomaly = start_service("anomaly")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    rng = random.Random(7)

    def validated(asset: str, start: int, n: int, level: float) -> dict:
        return {
            "event_type": "readings.validated",
            "source": "test",
            "asset_id": asset,
            "asset_type": "pump",
            "snapshots": [
                {
                    "ts": (t0 + (start + i) * STEP).isoformat(),
                    "readings": {"flow": level + rng.gauss(0, 1.5)},
                }
                for i in range(n)
            ],
        }

    assets = ("pump-announced", "pump-unannounced")
    await publish(
        kafka, [validated(a, 0, 700, 116.0) for a in assets], topic="pdm.readings.validated.v1"
    )
    wait_for(lambda: "assets warmed up" in anomaly.tail(200), 60, "warm-up", (anomaly,))
    context = {
        "event_type": "asset.context_changed",
        "source": "test",
        "asset_id": "pump-announced",
        "reason": "operating_point",
        "detail": "high_load",
        "at": (t0 + 700 * STEP).isoformat(),
    }
    await publish(
        kafka, [context, b"{not json", {**context, "reason": "whim"}], topic="pdm.asset.context.v1"
    )
    wait_for(lambda: "detectors re-learn" in anomaly.tail(200), 60, "context applied", (anomaly,))
    await publish(
        kafka, [validated(a, 700, 300, 146.0) for a in assets], topic="pdm.readings.validated.v1"
    )
    wait_for(
        lambda: any(a["asset_id"] == "pump-unannounced" for a in alarms(db_url)),
        60,
        "the unannounced step alarms",
        (anomaly,),
    )
    time.sleep(3)
    assert [a for a in alarms(db_url) if a["asset_id"] == "pump-announced"] == []
    bad = await list_dead_letters(kafka, "pdm.asset.context.v1", idle_ms=800)
    assert sorted(x.reason for x in bad) == ["invalid", "invalid"]
