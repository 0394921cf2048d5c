"""The prediction service end to end: a `failure-milling`-style champion in a real MLflow,
requests and replies over the real broker, predictions stored in PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from pdm_common import registry
from pdm_common.broker import ensure_topics
from pdm_common.dlq_cli import list_dead_letters
from pdm_common.training import ai4i

from .harness import publish, read_topic

DATA = Path(__file__).resolve().parents[3] / "shared/data/ai4i2020/ai4i2020.csv"
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not DATA.is_file(), reason=f"{DATA} not present"),
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

    published = await read_topic(kafka, "pdm.predictions.v1", idle_ms=800)
    assert sorted(json.loads(r.value)["event_id"] for r in published) == sorted(
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
    assert all(letter.reason == "invalid" for letter in letters)
