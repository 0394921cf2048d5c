"""The drift service on the real broker, PostgreSQL and MLflow: a quick simulated pump model
as champion, readings of three pumps; a check stores features and sensors reports (with
Evidently's HTML) and publishes them; a poison command is dead-lettered and the rest are
answered; a duplicate command gets the same answer; promote and rollback move the aliases
and the history keeps every move; drifted readings read as "bearing_temperature: mean +8";
a malformed retrain is refused (retrains end to end: tests/integration/test_walkthrough.py);
live performance joins labels with served and shadow predictions; a kill -9 in the middle of a flood of labels loses and duplicates none, and neither
does a 20 s PostgreSQL outage (the service pauses, says so on `/ready`, and its loops outlive it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from mlflow import MlflowClient
from psycopg.types.json import Jsonb

from pdm_common import registry
from pdm_common.drift import DriftCommandResult
from pdm_common.events import GroundTruth, ModelAliasMoved
from pdm_common.request_reply import ReplyClient
from pdm_ml.training import simulated as sim
from pdm_ml.training.simulated import MachinePlan, SimConfig
from pdm_tools.dlq_cli import list_dead_letters

from .harness import ServiceProcess, publish, read_topic

pytestmark = pytest.mark.integration
COMMANDS = "pdm.drift.commands.v1"
DRIFT = "pdm.drift.v1"
MODELS = "pdm.models.v1"
PUMPS = ("pump-701", "pump-702", "pump-703")
WINDOW_S = 30
STEP_S = 0.25
CONFIG = SimConfig.quick("pump")


@pytest.fixture(scope="module")
def champions(mlflow_uri: str) -> dict[str, str]:
    """failure-pump (two versions: A champion, B spare) and rul-pump (A champion), from one
    quick training; the aliases are forced (other tests may have registered these names)."""
    training = sim.train_simulated(CONFIG)
    a = sim.register_failure(training, mlflow_uri)
    b = sim.register_failure(training, mlflow_uri)
    rul = sim.register_rul(training, mlflow_uri)
    for name, version in (("failure-pump", a.version), ("rul-pump", rul.version)):
        registry.set_alias(name, registry.CHAMPION, version, tracking_uri=mlflow_uri)
    return {"a": a.version, "b": b.version, "rul": rul.version}


def rows(db_url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(db_url, connect_timeout=3) as conn:
        return conn.execute(sql, params).fetchall()


def wait_until(check: Callable[[], Any], what: str, service: ServiceProcess, timeout=90) -> Any:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
        except psycopg.OperationalError:
            result = None
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; drift log:\n{service.tail(60)}")


def insert_readings(db_url: str, *, shift: float = 0.0, seed: int = 0) -> datetime:
    """Three healthy pumps (the simulator's physics), one snapshot per 0.25 s over the last
    40 s; `shift` is added to bearing_temperature. Returns the newest timestamp."""
    sensors = list(sim.sensors_of("pump"))
    n = int(40 / STEP_S)
    end = datetime.now(UTC) - timedelta(seconds=1)
    out = []
    for i, asset in enumerate(PUMPS):
        plan = MachinePlan(asset, "healthy", n, "normal", 3600.0 * i)
        history = sim.simulate(plan, replace(CONFIG, seed=seed + i))[sensors]
        for k, values in enumerate(history.itertuples(index=False)):
            t = end - timedelta(seconds=(n - 1 - k) * STEP_S)
            for sensor, value in zip(sensors, values, strict=True):
                v = float(value) + (shift if sensor == "bearing_temperature" else 0.0)
                out.append((t, asset, sensor, v))
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO assets (asset_id, asset_type) SELECT unnest(%s::text[]), 'pump' "
            "ON CONFLICT DO NOTHING",
            (list(PUMPS),),
        )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO readings (time, asset_id, sensor, value) VALUES (%s, %s, %s, %s)", out
            )
    return end


class Client:
    def __init__(self, replies: ReplyClient, service: ServiceProcess) -> None:
        self.replies = replies
        self.service = service

    async def ask(self, body: dict, timeout_s: float = 60) -> DriftCommandResult:
        body = {"command_id": str(uuid.uuid4()), "actor": "it", **body}
        try:
            [reply], _ = await self.replies.call(COMMANDS, body, timeout_s=timeout_s)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; drift log:\n{self.service.tail(60)}") from None
        return DriftCommandResult.model_validate_json(reply)


def drift_env(kafka: str, mlflow_uri: str, **extra: str) -> dict[str, str]:
    return {
        "PDM_MLFLOW_TRACKING_URI": mlflow_uri,
        "PDM_DRIFT_WINDOW_S": str(WINDOW_S),
        "PDM_DRIFT_CHECK_INTERVAL_S": "3600",
        "PDM_DRIFT_QUICK_RETRAIN": "true",
        # the fixture's seed: the challenger equals the champion, so it is promoted (a tie)
        "PDM_DRIFT_RETRAIN_SEED": "0",
        "PDM_DRIFT_AUTO_RETRAIN": "false",
        "PDM_DRIFT_OUTBOX_INTERVAL_S": "0.5",
        "PDM_DRIFT_REPORT_ROWS": "500",
        "PDM_DRIFT_HTML_MAX_COLUMNS": "4",
        **extra,
    }


async def test_checks_commands_aliases_and_retrain(
    kafka, db_url, mlflow_uri, start_service, champions
):
    a, b = champions["a"], champions["b"]
    drift = start_service("drift", **drift_env(kafka, mlflow_uri))
    async with ReplyClient(kafka) as replies:
        client = Client(replies, drift)
        # the first answer waits for the consumer groups; an unknown model is not found
        unknown = await client.ask({"action": "check", "model_name": "failure-nosuchtype"}, 120)
        assert unknown.status == "not_found", unknown
        insert_readings(db_url)

        # a champion move (as `pdm train` announces it): history once, profile and baseline
        moved = ModelAliasMoved(source="trainer", model_name="failure-pump", version=a)
        await publish(kafka, [moved.model_dump(mode="json")] * 2, topic=MODELS)
        wait_until(
            lambda: rows(
                db_url,
                "SELECT 1 FROM drift_reports WHERE trigger = 'champion' AND model_name = 'failure-pump'",
            ),
            "the baseline check of the new champion",
            drift,
        )
        assert rows(
            db_url,
            "SELECT count(*) FROM model_alias_history WHERE change_id = %s",
            (moved.event_id,),
        ) == [(1,)]
        assert rows(
            db_url,
            "SELECT count(*) FROM drift_profiles WHERE model_name = 'failure-pump' AND model_version = %s",
            (a,),
        ) == [(1,)]

        insert_readings(db_url, seed=20)  # fresh ones (the window moves on)
        check = {"command_id": str(uuid.uuid4()), "action": "check", "model_name": "failure-pump"}
        answer = await client.ask(check)
        assert answer.status == "ok", answer
        assert len(answer.reports) == 2, answer  # features + the pumps' sensors (baseline)
        stored = rows(
            db_url,
            "SELECT kind, model_version, current_rows, html IS NOT NULL, trigger FROM drift_reports "
            "WHERE report_id = ANY(%s) ORDER BY kind",
            ([str(r) for r in answer.reports],),
        )
        assert [(k, t) for k, _, _, _, t in stored] == [
            ("features", "command"),
            ("sensors", "command"),
        ]
        assert stored[0][1] == a and stored[1][1] == f"failure-pump@{a}"
        assert all(n >= 50 and html for _, _, n, html, _ in stored), stored

        # the same command again: the same answer, nothing checked twice
        again = await client.ask(check)
        assert again.reports == answer.reports and again.status == "ok"

        # a poison command is dead-lettered, the one after it answered
        await publish(kafka, [b"{not json"], topic=COMMANDS)
        last_normal = insert_readings(db_url, seed=30)
        everything = await client.ask({"action": "check"})
        assert everything.status == "ok" and len(everything.reports) >= 3, everything
        letters = await list_dead_letters(kafka, COMMANDS)
        assert [d.reason for d in letters] == ["undecodable"], letters

        # promote and roll back: the aliases move, the history keeps every move
        promoted = await client.ask(
            {"action": "promote", "model_name": "failure-pump", "version": b, "reason": "try B"}
        )
        assert promoted.status == "ok", promoted
        assert promoted.alias_change and promoted.alias_change.version == b
        assert promoted.alias_change.previous_version == a
        assert registry.alias_version("failure-pump", "previous", tracking_uri=mlflow_uri) == a
        rolled = await client.ask({"action": "rollback", "model_name": "failure-pump"})
        assert rolled.status == "ok", rolled
        assert registry.alias_version("failure-pump", "champion", tracking_uri=mlflow_uri) == a
        assert registry.alias_version("failure-pump", "previous", tracking_uri=mlflow_uri) == b
        missing = await client.ask(
            {"action": "promote", "model_name": "failure-pump", "version": "99999"}
        )
        assert missing.status == "not_found", missing
        # the registry is the session's: another test may have left rul-pump a `previous`
        with contextlib.suppress(Exception):
            MlflowClient(mlflow_uri).delete_registered_model_alias("rul-pump", "previous")
        no_previous = await client.ask({"action": "rollback", "model_name": "rul-pump"})
        assert no_previous.status == "conflict", no_previous
        history = rows(
            db_url,
            "SELECT alias, version, actor, trigger FROM model_alias_history "
            "WHERE model_name = 'failure-pump' AND actor = 'it' ORDER BY moved_at, alias",
        )
        assert ("champion", b, "it", "command") in history and (
            "champion",
            a,
            "it",
            "command",
        ) in history
        assert ("previous", a, "it", "command") in history and (
            "previous",
            b,
            "it",
            "command",
        ) in history

        # drifted readings (after the baseline's window has passed): what moved, in its units
        wait_s = (last_normal + timedelta(seconds=WINDOW_S + 1) - datetime.now(UTC)).total_seconds()
        await asyncio.sleep(max(wait_s, 0))
        insert_readings(db_url, shift=8.0, seed=10)
        drifted = await client.ask({"action": "check", "model_name": "failure-pump"})
        assert drifted.status == "ok", drifted
        found = rows(
            db_url,
            "SELECT kind, headlines, weighted_share, columns FROM drift_reports "
            "WHERE report_id = ANY(%s) ORDER BY kind",
            ([str(r) for r in drifted.reports],),
        )
        (_, feature_lines, weighted, _), (_, sensor_lines, _, columns) = found
        assert sensor_lines[0].startswith("bearing_temperature: mean +"), sensor_lines
        temperature = next(c for c in columns if c["column"] == "bearing_temperature")
        assert temperature["drifted"] and 7.0 < temperature["mean_shift"] < 10.0, temperature
        assert weighted > 0.3 and feature_lines, found

        # retrains (guards, challenger, shadow judgement, promotion, serving, rollback) are
        # exercised end to end in tests/integration/test_walkthrough.py; a malformed one here
        invalid = await client.ask(
            {"action": "retrain", "model_name": "failure-pump", "version": "1"}
        )
        assert invalid.status == "invalid"

    events = [json.loads(r.value) for r in await read_topic(kafka, DRIFT, idle_ms=800)]
    kinds = [e["event_type"] for e in events]
    assert kinds.count("drift.report") >= 6, kinds
    moves = [json.loads(r.value) for r in await read_topic(kafka, MODELS, idle_ms=800)]
    mine = [m for m in moves if m["source"] == "drift"]
    assert {m["alias"] for m in mine} >= {"champion", "previous"}, mine


def truth(asset: str, kind: str = "failure.failed") -> dict:
    now = datetime.now(UTC)
    return GroundTruth(
        event_type=kind,  # type: ignore[arg-type]
        source="simulator",
        asset_id=asset,
        asset_type="pump",
        mode="bearing_degradation",
        severity="critical",
        injected_at=now - timedelta(minutes=5),
        failed=True,
    ).model_dump(mode="json")


@pytest.mark.slow
async def test_labels_survive_a_kill_9_and_a_database_outage_once_each(
    kafka, db_url, mlflow_uri, start_service, postgres
):
    drift = start_service("drift", **drift_env(kafka, mlflow_uri))
    events = [truth(f"pump-{i:03d}") for i in range(300)]
    injected = [truth("pump-999", "failure.injected")]  # no outcome yet: no label
    headers = {"event_type": "failure.failed"}
    await publish(kafka, events[:100], topic="pdm.simulator.truth.v1", headers=headers)
    wait_until(
        lambda: rows(db_url, "SELECT count(*) FROM outcome_labels")[0][0] > 0, "labels", drift
    )
    drift.kill()
    await publish(
        kafka, events[100:] + events[:50], topic="pdm.simulator.truth.v1", headers=headers
    )
    await publish(
        kafka, injected, topic="pdm.simulator.truth.v1", headers={"event_type": "failure.injected"}
    )
    drift.start()
    wait_until(
        lambda: rows(db_url, "SELECT count(*) FROM outcome_labels")[0][0] >= 300,
        "every label after the restart",
        drift,
    )
    await asyncio.sleep(2)  # anything more would be a duplicate
    ((count, distinct, failures),) = rows(
        db_url,
        "SELECT count(*), count(DISTINCT label_id), count(*) FILTER (WHERE failure_found) "
        "FROM outcome_labels WHERE source = 'simulator'",
    )
    assert (count, distinct, failures) == (300, 300, 300)
    assert rows(db_url, "SELECT count(*) FROM outcome_labels WHERE asset_id = 'pump-999'") == [(0,)]

    # PostgreSQL goes away while labels (and duplicates) keep coming
    postgres.stop()
    more = [truth(f"pump-{i:03d}") for i in range(300, 500)]
    await publish(kafka, more + events[:50], topic="pdm.simulator.truth.v1", headers=headers)
    await asyncio.sleep(20)
    assert drift.proc is not None and drift.proc.poll() is None, drift.tail()
    assert drift.probe("/ready") == 503  # paused, and says so
    postgres.start()
    wait_until(
        lambda: rows(db_url, "SELECT count(*) FROM outcome_labels")[0][0] >= 500,
        "every label after the outage",
        drift,
        timeout=120,
    )
    await asyncio.sleep(2)
    assert rows(
        db_url,
        "SELECT count(*), count(DISTINCT label_id) FROM outcome_labels WHERE source = 'simulator'",
    ) == [(500, 500)]
    assert await list_dead_letters(kafka, "pdm.simulator.truth.v1") == []
    # its loops outlived the outage: a command is answered, and the live performance it
    # computes joins the labels with what the champion (v7) and its shadow challenger (v8)
    # predicted an hour before: v7 alarmed all 20 failures, v8 none
    as_of = datetime.now(UTC) - timedelta(hours=1)
    for table, version, probability in (
        ("predictions", "7", 0.9),
        ("shadow_predictions", "8", 0.1),
    ):
        extra = ", champion_prediction_id" if table == "shadow_predictions" else ""
        with psycopg.connect(db_url) as conn:
            for i in range(20):
                conn.execute(
                    f"INSERT INTO {table} (prediction_id, time, asset_id, asset_type, as_of, "
                    "failure_model, failure_model_version, failure_probability, health_score, "
                    f"confidence, payload{extra}) VALUES (%s, %s, %s, 'pump', %s, 'failure-pump', "
                    f"%s, %s, 0.5, 0.9, %s{', %s' if extra else ''})",
                    (uuid.uuid4(), as_of, f"pump-{i:03d}", as_of, version, probability,
                     Jsonb({"decision_threshold": 0.5})) + ((uuid.uuid4(),) if extra else ()),
                )  # fmt: skip
    async with ReplyClient(kafka) as replies:
        answer = await Client(replies, drift).ask({"action": "check"}, 120)
    assert answer.status == "ok" and "live performance of" in (answer.message or ""), answer
    figures = rows(
        db_url,
        "SELECT model_version, role, predictions, failures, caught, recall, precision, degraded "
        "FROM model_performance WHERE model_name = 'failure-pump' AND span = 'all' "
        "AND model_version IN ('7', '8') ORDER BY model_version",
    )
    assert figures == [
        ("7", "served", 20, 20, 20, 1.0, 1.0, False),
        ("8", "shadow", 20, 20, 0, 0.0, None, False),
    ], figures
