"""The prediction service end to end: a `failure-milling`-style champion in a real MLflow,
requests and replies over the real broker, predictions stored in PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

import pandas as pd
import psycopg
import pytest

from pdm_common import registry
from pdm_common.broker import ensure_topics
from pdm_common.request_reply import ReplyClient
from pdm_ml.training import ai4i
from pdm_tools.dlq_cli import list_dead_letters
from tests.datasets import DATA_DIR, require

from .harness import publish, read_topic

DATA = DATA_DIR / "ai4i2020" / "ai4i2020.csv"
CMAPSS = DATA_DIR / "cmapss"
pytestmark = [
    pytest.mark.integration,
]
CONFIG = ai4i.Ai4iConfig(folds=3, n_jobs=1, mode_strategies=("multiclass",))
REQUESTS = "pdm.prediction.requests.v1"
READINGS = {
    "air_temperature": 302.1,
    "process_temperature": 311.0,
    "rotational_speed": 1290.0,
    "torque": 68.0,
    "tool_wear": 215.0,
}


async def replies(kafka: str, topic: str, expected: int, timeout: float = 60) -> list:
    deadline = time.monotonic() + timeout
    found: list = []
    while time.monotonic() < deadline:
        found = await read_topic(kafka, topic, idle_ms=500)
        if len(found) >= expected:
            return found
        await asyncio.sleep(0.3)
    got = [(dict(r.headers).get("correlation_id"), r.key, r.value[:90]) for r in found]
    raise AssertionError(f"replies {got} on {topic} after {timeout}s, want {expected}")


async def test_request_reply_errors_and_dead_letters(kafka, db_url, start_service, mlflow_uri):
    frame = ai4i.load_ai4i(DATA)
    small, _ = ai4i.split_holdout(frame, test_size=0.8, seed=1)  # 2,000 rows, stratified
    train, test = ai4i.split_holdout(small, 0.25, seed=42)
    name = f"failure-it{uuid.uuid4().hex[:8]}"
    result = ai4i.train_ai4i(train, test, CONFIG)
    version = ai4i.register_ai4i(result, tracking_uri=mlflow_uri, name=name)
    registry.promote_if_better(
        name, version.version, metric="holdout_f1", higher_is_better=True, tracking_uri=mlflow_uri
    )
    service = start_service(
        "prediction",
        PDM_MLFLOW_TRACKING_URI=mlflow_uri,
        PDM_PREDICTION_ROUTES=json.dumps({"milling": {"failure": name}}),
    )
    # no cold first request: the champion is loaded at start-up (and /ready says so), so the
    # first request after start is about as fast as the hundredth, not a model load slower.
    # /ready does not wait for the request consumer's group join (tansu joins one group after
    # another, up to ~15 s here): a request before it waits for the join, whatever the model,
    # so the test waits for that too (aiokafka's log line).
    loaded = time.monotonic() + 120
    joined = '"Successfully synced group pdm-prediction with generation'
    while not (
        (service.ready_json() or {}).get("models", {}).get(name)
        and joined in service.log_path.read_text(errors="replace")
    ):
        assert time.monotonic() < loaded, f"{name} not loaded at start-up\n{service.tail()}"
        await asyncio.sleep(0.2)
    first = {"asset_id": "mill-first", "asset_type": "milling", "readings": READINGS,
             "attributes": {"quality": "L"}}  # fmt: skip
    async with ReplyClient(kafka) as client:
        _, first_ms = await client.call(REQUESTS, first, key="mill-first", timeout_s=60)
        rest = [(await client.call(REQUESTS, first, key="mill-first"))[1] for _ in range(100)]
    typical = statistics.median(rest)
    print(f"first request {first_ms:.1f} ms, the next 100: median {typical:.1f} ms")
    assert first_ms < max(10 * typical, 500), (first_ms, typical)  # a model load takes seconds

    reply_topic = f"it.replies.{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka, [reply_topic], partitions=1)
    asset = f"mill-{uuid.uuid4().hex[:6]}"
    ok = {
        "asset_id": asset,
        "asset_type": "milling",
        "readings": READINGS,
        "attributes": {"quality": "L"},
    }
    unknown = {"asset_id": asset, "asset_type": "pump", "readings": {"x": 1.0}}
    stored, partial = f"{asset}-db", f"{asset}-part"
    now = datetime.now(UTC)
    with psycopg.connect(db_url) as conn:  # as ingest would have stored them
        rows = [(now, stored, s, v) for s, v in (READINGS | {"quality_code": 0.0}).items()]
        rows.append((now, partial, "torque", 40.0))
        conn.cursor().executemany(
            "INSERT INTO readings (time, asset_id, sensor, value) VALUES (%s, %s, %s, %s)", rows
        )
    from_db = {"asset_id": stored, "asset_type": "milling"}
    lacking = {"asset_id": partial, "asset_type": "milling"}
    for body, cid in (
        (ok, "c-ok"),
        (unknown, "c-unknown"),
        (b'{"asset_id": 42}', "c-bad"),
        (from_db, "c-db"),
        (lacking, "c-part"),
    ):
        await publish(
            kafka, [body], topic=REQUESTS, headers={"reply_to": reply_topic, "correlation_id": cid}
        )
    await publish(kafka, [b"not json"], topic=REQUESTS)  # no reply_to: DLQ only

    try:
        records = await replies(kafka, reply_topic, 5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{service.tail()}") from None
    by_cid = {dict(r.headers)["correlation_id"].decode(): json.loads(r.value) for r in records}
    assert set(by_cid) == {"c-ok", "c-unknown", "c-bad", "c-db", "c-part"}, [
        (r.headers, r.value[:70]) for r in records
    ]

    p = by_cid["c-ok"]
    assert p["event_type"] == "prediction.made" and p["asset_id"] == asset
    assert p["models"]["failure"] == {"name": name, "version": version.version}
    assert 0.0 <= p["failure_probability"] <= 1.0
    assert p["decision_threshold"] == pytest.approx(result.threshold)
    assert len(p["top_factors"]) == 3 and all(f["feature"] for f in p["top_factors"])
    assert set(p["failure_modes"]) <= {"TWF", "HDF", "PWF", "OSF"}
    assert p["health_score"] == pytest.approx(100 * (1 - p["failure_probability"]))
    assert 0.0 < p["confidence"] <= 1.0
    features = ai4i.feature_matrix(pd.DataFrame([READINGS | {"quality": "L"}]))
    expected = result.model.predict_proba(features)[0, 1]
    assert p["failure_probability"] == pytest.approx(expected)
    ok_record = next(r for r in records if dict(r.headers)["correlation_id"] == b"c-ok")
    assert ok_record.key == asset.encode()

    assert by_cid["c-unknown"]["event_type"] == "prediction.error"
    assert by_cid["c-unknown"]["code"] == "unknown_asset_type"
    assert by_cid["c-bad"]["code"] == "invalid_request"
    assert "asset_id" in by_cid["c-bad"]["message"]

    db = by_cid["c-db"]  # the stored latest readings give the same features
    assert db["event_type"] == "prediction.made"
    assert db["failure_probability"] == pytest.approx(p["failure_probability"])
    assert db["as_of"] is not None and db["confidence"] == 1.0
    assert by_cid["c-part"]["code"] == "missing_sensors"
    assert "tool_wear" in by_cid["c-part"]["missing"]
    assert "tool_wear" in by_cid["c-part"]["message"]

    published = [
        json.loads(r.value) for r in await read_topic(kafka, "pdm.predictions.v1", idle_ms=800)
    ]
    timed = [e for e in published if e["asset_id"] == "mill-first"]
    assert len(timed) == 101  # the start-up timing's requests, each published once
    assert sorted(e["event_id"] for e in published if e["asset_id"] != "mill-first") == sorted(
        [p["event_id"], db["event_id"]]
    )
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT failure_model_version, failure_probability, health_score FROM predictions "
            "WHERE asset_id = %s",
            (asset,),
        ).fetchone()
    assert row == (
        version.version,
        pytest.approx(p["failure_probability"]),
        pytest.approx(p["health_score"]),
    )

    letters = await list_dead_letters(kafka, REQUESTS, idle_ms=800)
    assert len(letters) == 2

    # the CLI a newcomer uses: request/reply through the real broker, typed exit codes
    cli = [sys.executable, "-m", "pdm_tools.cli", "predict", "--asset-type", "milling"]
    env = os.environ | {"PDM_KAFKA_BOOTSTRAP": kafka}
    done = subprocess.run(
        [*cli, "--asset", stored], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["failure_probability"] == pytest.approx(
        db["failure_probability"]
    )
    refused = subprocess.run(
        [*cli, "--asset", partial], env=env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 1 and json.loads(refused.stdout)["code"] == "missing_sensors"
    assert all(letter.reason == "invalid" for letter in letters)


def _train_milling(mlflow_uri: str, name: str):
    frame = ai4i.load_ai4i(DATA)
    small, _ = ai4i.split_holdout(frame, test_size=0.8, seed=1)
    train, test = ai4i.split_holdout(small, 0.25, seed=42)
    result = ai4i.train_ai4i(train, test, CONFIG)
    version = ai4i.register_ai4i(result, tracking_uri=mlflow_uri, name=name)
    registry.promote_if_better(
        name, version.version, metric="holdout_f1", higher_is_better=True, tracking_uri=mlflow_uri
    )
    return result, version


def _store(db_url: str, rows: list[tuple]) -> None:
    with psycopg.connect(db_url) as conn:
        conn.cursor().executemany(
            "INSERT INTO readings (time, asset_id, sensor, value) VALUES (%s, %s, %s, %s)", rows
        )


async def test_batches_alarms_timer_turbofan_and_promotion(
    kafka, db_url, start_service, mlflow_uri
):
    """One service, every trigger: a batch request (parts, errors in place), an alarm event,
    the periodic timer, an RUL from stored turbofan history equal to the model's own answer,
    and a promotion event that switches the served version without a restart."""
    from datetime import timedelta

    from pdm_common.events import AlarmEvent
    from pdm_ml.training import cmapss

    tag = uuid.uuid4().hex[:8]
    failure_name, rul_name = f"failure-it{tag}", f"rul-it{tag}"
    result, v1 = _train_milling(mlflow_uri, failure_name)
    full = cmapss.load_subset(require(CMAPSS), "FD001")
    data = cmapss.CmapssData(
        "FD001",
        full.train[full.train["unit"] <= 15],
        full.test[full.test["unit"] <= 5],
        full.test_rul.loc[:5],
    )
    rul = cmapss.train_cmapss(data, cmapss.RulConfig(windows=(5, 10), n_splits=3, n_estimators=40))
    rul_version = cmapss.register(rul, mlflow_uri, name=rul_name)
    cmapss.promote(rul, rul_version, mlflow_uri)

    now = datetime.now(UTC)
    mills = [f"mill-{tag}-{i}" for i in range(3)]
    engine = f"engine-{tag}"
    rows = [(now, a, s, v) for a in mills for s, v in (READINGS | {"quality_code": 1.0}).items()]
    unit = data.test[data.test["unit"] == 3].reset_index(drop=True)
    sensors = [c for c in unit.columns if c != "unit"]
    start = now - timedelta(minutes=len(unit))
    for i, rec in unit.iterrows():
        rows += [(start + timedelta(minutes=int(i)), engine, s, float(rec[s])) for s in sensors]
    _store(db_url, rows)
    with psycopg.connect(db_url) as conn:
        conn.cursor().executemany(
            "INSERT INTO assets (asset_id, asset_type) VALUES (%s, %s)",
            [(m, "milling") for m in mills] + [(engine, "turbofan"), (f"idle-{tag}", "milling")],
        )

    service = start_service(
        "prediction",
        PDM_MLFLOW_TRACKING_URI=mlflow_uri,
        PDM_PREDICTION_ROUTES=json.dumps(
            {"milling": {"failure": failure_name}, "turbofan": {"rul": rul_name}}
        ),
        PDM_PREDICTION_REPLY_PART_SIZE="2",
        PDM_PREDICTION_PERIODIC_INTERVAL_S="3",
        PDM_PREDICTION_HISTORY_ROWS="40",
    )
    reply_topic = f"it.replies.{tag}"
    await ensure_topics(kafka, [reply_topic], partitions=1)
    batch = {
        "requests": [
            {"asset_id": mills[0], "asset_type": "milling"},
            {"asset_id": f"ghost-{tag}", "asset_type": "milling"},  # no readings
            {"asset_id": engine, "asset_type": "turbofan"},
            {"asset_id": mills[1], "asset_type": "pump"},  # no model serves pumps
            {
                "asset_id": mills[2],
                "asset_type": "milling",
                "readings": READINGS,
                "attributes": {"quality": "M"},
            },
        ]
    }
    await publish(
        kafka, [batch], topic=REQUESTS, headers={"reply_to": reply_topic, "correlation_id": "b1"}
    )
    try:
        parts = [json.loads(r.value) for r in await replies(kafka, reply_topic, 3, timeout=90)]
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{service.tail()}") from None
    assert sorted((p["part"], p["parts"], p["requests"]) for p in parts) == [
        (1, 3, 5),
        (2, 3, 5),
        (3, 3, 5),
    ]
    made = {p["asset_id"]: p for part in parts for p in part["predictions"]}
    errors = {e["asset_id"]: e for part in parts for e in part["errors"]}
    assert set(made) == {mills[0], engine, mills[2]}
    assert errors[f"ghost-{tag}"]["code"] == "missing_sensors"
    assert errors[mills[1]]["code"] == "unknown_asset_type"
    assert made[mills[0]]["failure_probability"] == pytest.approx(
        made[mills[2]]["failure_probability"]
    )
    assert made[mills[0]]["models"]["failure"]["version"] == v1.version

    e = made[engine]  # the stored history gives what the model itself says for those rows
    expected = rul.model.predict_history(unit[sensors].tail(40).reset_index(drop=True))
    assert (e["rul_p10"], e["rul_p50"], e["rul_p90"]) == pytest.approx(
        (expected["p10"], expected["p50"], expected["p90"])
    )
    assert e["rul_p10"] <= e["rul_p50"] <= e["rul_p90"] and e["failure_probability"] is None
    assert e["models"] == {"rul": {"name": rul_name, "version": rul_version.version}}

    alarm = AlarmEvent(
        source="anomaly",
        event_type="alarm.opened",
        alarm_id=uuid.uuid4(),
        asset_id=mills[1],
        asset_type="milling",
        condition="torque:level",
        severity="major",
        detector="univariate",
        score=1.0,
        threshold=0.5,
        opened_at=now,
    )
    await publish(
        kafka, [alarm.model_dump(mode="json")] * 2, topic="pdm.anomalies.v1"
    )  # + a duplicate

    async def predictions_where(check, timeout: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [
                json.loads(r.value)
                for r in await read_topic(kafka, "pdm.predictions.v1", idle_ms=500)
            ]
            if matched := [p for p in found if check(p)]:
                return matched
            await asyncio.sleep(0.5)
        raise AssertionError(f"no prediction matched after {timeout}s\n{service.tail()}")

    by_alarm = await predictions_where(lambda p: p["trigger"] == "alarm")
    assert {p["asset_id"] for p in by_alarm} == {mills[1]}
    assert len({p["event_id"] for p in by_alarm}) == 1  # the duplicate alarm: same event id
    periodic = await predictions_where(
        lambda p: p["trigger"] == "periodic" and p["asset_id"] == engine
    )
    assert periodic[0]["rul_p50"] == pytest.approx(e["rul_p50"])
    periodic_assets = {
        p["asset_id"] for p in await predictions_where(lambda p: p["trigger"] == "periodic")
    }
    assert f"idle-{tag}" not in periodic_assets  # registered, but never reported

    # a challenger is shadow-scored on the same requests: stored beside the champion's
    # prediction, never published
    from mlflow import MlflowClient

    from pdm_common.events import ModelAliasMoved

    v2 = ai4i.register_ai4i(result, tracking_uri=mlflow_uri, name=failure_name)
    MlflowClient(mlflow_uri).set_registered_model_alias(failure_name, "challenger", v2.version)
    moved = ModelAliasMoved(
        source="test", model_name=failure_name, alias="challenger", version=v2.version
    )
    await publish(kafka, [moved.model_dump(mode="json")], topic="pdm.models.v1")
    shadows: list[tuple] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not shadows:
        await asyncio.sleep(1)
        with psycopg.connect(db_url) as conn:
            shadows = conn.execute(
                "SELECT s.asset_id, s.failure_model_version, p.failure_model_version, "
                "s.failure_probability, p.failure_probability FROM shadow_predictions s "
                "JOIN predictions p ON p.prediction_id = s.champion_prediction_id"
            ).fetchall()
    assert shadows, f"no shadow prediction\n{service.tail()}"
    for asset, shadow_version, champion_version, shadow_p, champion_p in shadows:
        assert asset in mills and (shadow_version, champion_version) == (v2.version, v1.version)
        assert shadow_p == pytest.approx(champion_p)  # the same training: the same answer
    published = [json.loads(r.value) for r in await read_topic(kafka, "pdm.predictions.v1")]
    assert {p["models"].get("failure", {}).get("version") for p in published} <= {
        v1.version,
        None,
    }

    decision = registry.promote_if_better(
        failure_name,
        v2.version,
        metric="holdout_f1",
        higher_is_better=True,
        tracking_uri=mlflow_uri,
    )
    assert decision.moved  # as good as the champion is good enough
    await publish(kafka, [decision.to_event("test").model_dump(mode="json")], topic="pdm.models.v1")
    newest = await predictions_where(
        lambda p: (
            p["trigger"] == "periodic"
            and p["asset_id"] == mills[0]
            and p["models"]["failure"]["version"] == v2.version
        ),
        timeout=90,
    )
    assert newest[0]["failure_probability"] == pytest.approx(made[mills[0]]["failure_probability"])
    letters = await list_dead_letters(kafka, REQUESTS, idle_ms=500)
    assert letters == []  # periodic and alarm requests that fail are not dead-lettered
