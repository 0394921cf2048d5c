"""Simulated-fleet models against a real MLflow: register, promote, reject, load; served by
the real prediction service, an injected bearing failure scores higher and shorter than its
healthy twin; and `pdm train simulated --quick` end to end."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pandas as pd
import psycopg
import pytest

from pdm_common import registry
from pdm_common.broker import ensure_topics
from pdm_ml.training import simulated as sim
from pdm_ml.training.simulated import MachinePlan, SimConfig

from .harness import publish, read_topic

pytestmark = pytest.mark.integration

CONFIG = SimConfig.quick("pump")
#: Clearly worse: a couple of weak trees on the shortest window only.
WORSE = replace(CONFIG, windows=(4,), n_estimators=3, mode_estimators=3, learning_rate=0.02)


def _history(kind: str, rows: int = 64) -> pd.DataFrame:
    """A pump whose bearing fails (critical, within its last hour), or its healthy twin."""
    plan = MachinePlan(
        "pump-900", "failure", rows, "normal", 0.0, "bearing_degradation", "critical",
        inject_at=4, ramp_rows=rows - 10.0,
    )  # fmt: skip
    if kind == "healthy":
        plan = replace(plan, kind="healthy", mode=None, inject_at=None, ramp_rows=0.0)
    return sim.simulate(plan, CONFIG)[list(sim.sensors_of("pump"))]


async def _replies(kafka: str, topic: str, expected: int, timeout: float = 90) -> list:
    deadline = time.monotonic() + timeout
    found: list = []
    while time.monotonic() < deadline:
        found = await read_topic(kafka, topic, idle_ms=500)
        if len(found) >= expected:
            return found
        await asyncio.sleep(0.3)
    raise AssertionError(f"{len(found)} replies on {topic} after {timeout}s, want {expected}")


async def test_register_promote_reject_load_and_serve(kafka, db_url, start_service, mlflow_uri):
    tag = uuid.uuid4().hex[:8]
    failure_name, rul_name = f"failure-it{tag}", f"rul-it{tag}"
    good = sim.train_simulated(CONFIG)
    failure_v = sim.register_failure(good, mlflow_uri, name=failure_name)
    rul_v = sim.register_rul(good, mlflow_uri, name=rul_name)
    assert failure_v.tags["task"] == "failure" and rul_v.tags["task"] == "rul"
    for version in (failure_v, rul_v):
        assert version.tags["asset_type"] == "pump"
        assert version.tags["dataset"] == "simulated-pump"
        assert version.tags["feature_set"] == sim.FEATURE_SET
    assert float(failure_v.tags[registry.THRESHOLD_TAG]) == pytest.approx(good.failure.threshold)
    assert failure_v.tags["horizon_h"] == "24" and rul_v.tags["rul_unit"] == "hours"
    assert sim.promote_failure(good, failure_v, mlflow_uri).moved
    assert sim.promote_rul(good, rul_v, mlflow_uri).moved

    worse = sim.train_simulated(WORSE)
    assert worse.failure_metrics[sim.FAILURE_METRIC] < good.failure_metrics[sim.FAILURE_METRIC]
    assert worse.rul_metrics[sim.RUL_METRIC] > good.rul_metrics[sim.RUL_METRIC]
    rejected = [
        sim.promote_failure(worse, sim.register_failure(worse, mlflow_uri, name=failure_name),
                            mlflow_uri),
        sim.promote_rul(worse, sim.register_rul(worse, mlflow_uri, name=rul_name), mlflow_uri),
    ]  # fmt: skip
    assert [d.moved for d in rejected] == [False, False]
    assert [d.champion_version for d in rejected] == [failure_v.version, rul_v.version]
    # the champions were re-scored on the same held-out machines, not read from their runs
    assert rejected[0].champion_score == pytest.approx(good.failure_metrics[sim.FAILURE_METRIC])
    assert rejected[1].champion_score == pytest.approx(good.rul_metrics[sim.RUL_METRIC])

    loaded = registry.load_champion(failure_name, mlflow_uri)
    assert isinstance(loaded.model, sim.SimFailureModel)
    assert loaded.model.threshold == pytest.approx(good.failure.threshold)
    assert isinstance(registry.load_champion(rul_name, mlflow_uri).model, sim.SimRulModel)
    sample = registry.load_reference_sample(failure_v, mlflow_uri)
    assert list(sample.columns) == list(good.failure.features)

    # served: stored histories of a failing pump and its healthy twin, one snapshot a minute
    histories = {f"pump-bad-{tag}": _history("failing"), f"pump-ok-{tag}": _history("healthy")}
    now = datetime.now(UTC).replace(microsecond=0)
    rows = [
        (now - timedelta(minutes=len(frame) - 1 - i), asset, sensor, float(value))
        for asset, frame in histories.items()
        for i, record in enumerate(frame.to_dict("records"))
        for sensor, value in record.items()
    ]
    with psycopg.connect(db_url) as conn:
        conn.cursor().executemany(
            "INSERT INTO readings (time, asset_id, sensor, value) VALUES (%s, %s, %s, %s)", rows
        )
    service = start_service(
        "prediction",
        PDM_MLFLOW_TRACKING_URI=mlflow_uri,
        PDM_PREDICTION_ROUTES=json.dumps({"pump": {"failure": failure_name, "rul": rul_name}}),
        PDM_PREDICTION_PERIODIC_INTERVAL_S="0",
    )
    reply_topic = f"it.replies.{tag}"
    await ensure_topics(kafka, [reply_topic], partitions=1)
    batch = {"requests": [{"asset_id": a, "asset_type": "pump"} for a in histories]}
    await publish(
        kafka,
        [batch],
        topic="pdm.prediction.requests.v1",
        headers={"reply_to": reply_topic, "correlation_id": "sim"},
    )
    try:
        parts = [json.loads(r.value) for r in await _replies(kafka, reply_topic, 1)]
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{service.tail()}") from None
    made = {p["asset_id"]: p for part in parts for p in part["predictions"]}
    assert [e["code"] for part in parts for e in part["errors"]] == []
    bad, ok = made[f"pump-bad-{tag}"], made[f"pump-ok-{tag}"]
    assert bad["failure_probability"] > ok["failure_probability"]
    assert bad["failure_predicted"] and not ok["failure_predicted"]
    assert bad["rul_p50"] < ok["rul_p50"] and bad["rul_unit"] == "hours"
    assert bad["health_score"] < ok["health_score"]
    assert "24 h" in bad["failure_horizon"]
    assert max(bad["failure_modes"], key=bad["failure_modes"].get) == "bearing_degradation"
    assert len(bad["top_factors"]) == 3
    assert bad["models"] == {
        "failure": {"name": failure_name, "version": failure_v.version},
        "rul": {"name": rul_name, "version": rul_v.version},
    }
    assert ok["confidence"] == 1.0  # fresh, sampled as trained, a full 64-row window
    # what the service says is what the model says for those rows
    features = pd.DataFrame([good.failure.latest_features(histories[f"pump-bad-{tag}"])])
    assert bad["failure_probability"] == pytest.approx(good.failure.probabilities(features)[0])
    expected = good.rul.predict_history(histories[f"pump-ok-{tag}"])
    assert ok["rul_p50"] == pytest.approx(expected["p50"])
    assert ok["health_formula"].count(f"{CONFIG.rul_cap_h:g}") == 2


def test_the_command_trains_registers_and_promotes(mlflow_uri):
    env = os.environ | {"PDM_MLFLOW_TRACKING_URI": mlflow_uri}
    done = subprocess.run(
        [sys.executable, "-m", "pdm_tools.cli", "train", "simulated", "--asset-type", "motor",
         "--quick", "--machines", "24", "--no-publish"],
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "[5/5] announcing on pdm.models.v1" in out
    assert "registered failure-motor v" in out and "registered rul-motor v" in out
    assert "held-out machines:" in out and "RUL (hours, cap 72)" in out
    for name in ("failure-motor", "rul-motor"):
        assert registry.get_version(name, tracking_uri=mlflow_uri).tags["asset_type"] == "motor"
