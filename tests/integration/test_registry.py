"""The model registry against a real MLflow server, and `pdm train anomaly` end to end
(PostgreSQL history -> fit -> register -> promote -> `pdm.models.v1` event)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import psycopg
import pytest
from typer.testing import CliRunner

from pdm_common import registry, topics
from pdm_common.events import ModelAliasMoved
from pdm_ml.detectors import multivariate as mv
from pdm_tools.stack.processes import LOOPBACK, free_port
from pdm_tools.train.cli import train_app

TAGS = {"task": "anomaly", "dataset": "synthetic", "feature_set": "snapshot:v1"}


def healthy(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    load = rng.normal(size=n)
    return pd.DataFrame(
        {
            "flow": 50 + 12 * load + rng.normal(0, 1.0, n),
            "power": 11 + 4 * load + rng.normal(0, 0.2, n),
            "temperature": 55 + 6 * load + rng.normal(0, 0.7, n),
            "vibration": 2.0 + 0.4 * load + np.abs(rng.normal(0, 0.1, n)),
        }
    )


@pytest.fixture(scope="module")
def fitted() -> mv.MultivariateModel:
    return mv.fit(healthy(3000, seed=1), mv.MultivariateConfig(mcd_max_rows=3000))


@pytest.fixture
def name() -> str:
    """A model name of its own per test: the MLflow server is shared by the session."""
    return f"anomaly-it{uuid.uuid4().hex[:8]}"


def register(
    model: mv.MultivariateModel, name: str, uri: str, youden_j: float
) -> registry.RegisteredVersion:
    sample = healthy(200, seed=9)
    return registry.log_and_register(
        model,
        name=name,
        flavor="pyfunc",
        params={"detector": "robust_mahalanobis_rbc"},
        metrics={"youden_j": youden_j},
        tags=TAGS | {"asset_type": name.removeprefix("anomaly-")},
        signature_input=sample.head(5),
        signature_output=model.predict_frame(sample.head(5)),
        optional_inputs=True,
        input_example=sample.head(3),
        reference_sample=sample,
        tracking_uri=uri,
    )


@pytest.mark.integration
def test_first_version_becomes_champion_and_loads_back_bound_to_its_version(
    mlflow_uri: str, fitted: mv.MultivariateModel, name: str
) -> None:
    with pytest.raises(registry.ModelNotFound, match="no registered model"):
        registry.load_champion(name, mlflow_uri)
    v1 = register(fitted, name, mlflow_uri, youden_j=0.8)
    assert v1.version == "1" and v1.tags["flavor"] == "pyfunc"
    with pytest.raises(registry.NoChampion, match=r"run `pdm train anomaly --asset-type it"):
        registry.load_champion(name, mlflow_uri)

    decision = registry.promote_if_better(
        name, v1.version, metric="youden_j", higher_is_better=True, tracking_uri=mlflow_uri
    )
    assert decision.moved and decision.previous_version is None
    event = decision.to_event("test")
    assert isinstance(event, ModelAliasMoved)
    assert (event.model_name, event.version, event.task) == (name, "1", "anomaly")

    loaded = registry.load_champion(name, mlflow_uri)
    assert loaded.version == "1" and isinstance(loaded.model, mv.MultivariateModel)
    snapshot = healthy(1, seed=5).iloc[0].to_dict()
    score = loaded.model.score(snapshot)
    assert score is not None and (score.model_name, score.model_version) == (name, "1")
    assert score.value == pytest.approx(fitted.score(snapshot).value)  # type: ignore[union-attr]
    reference = registry.load_reference_sample(
        registry.get_version(name, tracking_uri=mlflow_uri), mlflow_uri
    )
    assert list(reference.columns) == list(fitted.sensors) and len(reference) == 200


@pytest.mark.integration
def test_a_worse_model_is_not_promoted_and_the_evidence_is_on_the_version(
    mlflow_uri: str, fitted: mv.MultivariateModel, name: str
) -> None:
    from mlflow import MlflowClient

    v1 = register(fitted, name, mlflow_uri, youden_j=0.9)
    registry.promote_if_better(
        name, v1.version, metric="youden_j", higher_is_better=True, tracking_uri=mlflow_uri
    )
    v2 = register(fitted, name, mlflow_uri, youden_j=0.5)
    seen: list[str] = []

    def evaluate_champion(champion: registry.RegisteredVersion) -> float:
        seen.append(champion.version)
        return 0.85  # the champion re-scored on the candidate's evaluation data

    decision = registry.promote_if_better(
        name,
        v2.version,
        metric="youden_j",
        higher_is_better=True,
        evaluate_champion=evaluate_champion,
        tracking_uri=mlflow_uri,
    )
    assert seen == ["1"]
    assert not decision.moved and decision.champion_version == "1"
    assert (decision.candidate_score, decision.champion_score) == (0.5, 0.85)
    client = MlflowClient(mlflow_uri)
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    tags = client.get_model_version(name, v2.version).tags
    assert tags["promotion.decision"] == "rejected"
    assert float(tags["promotion.candidate_score"]) == 0.5
    assert float(tags["promotion.champion_score"]) == 0.85
    assert tags["promotion.champion_version"] == "1"
    assert "worse than" in tags["promotion.reason"]


@pytest.mark.integration
async def test_champion_cache_serves_the_new_version_after_reload(
    mlflow_uri: str, fitted: mv.MultivariateModel, name: str
) -> None:
    v1 = register(fitted, name, mlflow_uri, youden_j=0.7)
    registry.promote_if_better(
        name, v1.version, metric="youden_j", higher_is_better=True, tracking_uri=mlflow_uri
    )
    cache = registry.ChampionCache(mlflow_uri)
    first = await cache.aget(name)
    assert first.version == "1" and cache.version(name) == "1"
    assert await cache.aget(name) is first  # served from memory

    v2 = register(fitted, name, mlflow_uri, youden_j=0.75)
    decision = registry.promote_if_better(
        name, v2.version, metric="youden_j", higher_is_better=True, tracking_uri=mlflow_uri
    )
    assert decision.moved and decision.previous_version == "1"
    assert cache.get(name).version == "1"  # no I/O until told the alias moved

    event = decision.to_event("test")
    assert cache.wants(event)
    reloaded = await cache.on_alias_moved(event)
    assert reloaded is not None and reloaded.version == "2" and cache.version(name) == "2"
    score = reloaded.model.score(healthy(1, seed=3).iloc[0].to_dict())
    assert score.model_version == "2"
    assert await cache.areload(name, expected_version="2") is reloaded  # redelivery: no-op
    other = event.model_copy(update={"model_name": "anomaly-not-served"})
    assert await cache.on_alias_moved(other) is None


@pytest.mark.integration
def test_an_unreachable_registry_is_a_typed_error_quickly(fitted: mv.MultivariateModel) -> None:
    uri = f"http://{LOOPBACK}:{free_port()}"
    started = time.monotonic()
    with pytest.raises(registry.RegistryUnavailable, match=r"unreachable.*pdm stack up"):
        registry.load_champion("anomaly-pump", uri)
    with pytest.raises(registry.RegistryUnavailable):
        register(fitted, "anomaly-pump", uri, youden_j=1.0)
    with pytest.raises(registry.RegistryUnavailable):
        registry.promote_if_better(
            "anomaly-pump", "1", metric="youden_j", higher_is_better=True, tracking_uri=uri
        )
    cache = registry.ChampionCache(uri, retry_after_s=60)
    with pytest.raises(registry.RegistryUnavailable):
        cache.get("anomaly-pump")
    with pytest.raises(registry.RegistryUnavailable):
        cache.get("anomaly-pump")  # remembered: no second connection attempt
    assert not issubclass(registry.RegistryUnavailable, registry.ModelNotFound)
    assert time.monotonic() - started < 10


# ---- pdm train anomaly, end to end ---------------------------------------------------------


@pytest.fixture
def pump_history(migrated_database_url: str) -> Iterator[str]:
    """Three assets of a fresh type with 100 minutes of 1-second snapshots each."""
    asset_type = f"itpump{uuid.uuid4().hex[:6]}"
    start = datetime.now(UTC) - timedelta(minutes=110)
    with psycopg.connect(migrated_database_url) as conn:
        for a in range(3):
            asset = f"{asset_type}-{a}"
            conn.execute(
                "INSERT INTO assets (asset_id, asset_type) VALUES (%s, %s)", (asset, asset_type)
            )
            frame = healthy(6000, seed=20 + a)
            with conn.cursor().copy(
                "COPY readings (time, asset_id, sensor, value) FROM STDIN"
            ) as copy:
                for i, row in enumerate(frame.itertuples(index=False)):
                    ts = start + timedelta(seconds=i)
                    for sensor, value in zip(frame.columns, row, strict=True):
                        copy.write_row((ts, asset, sensor, float(value)))
    yield asset_type
    with psycopg.connect(migrated_database_url) as conn:
        conn.execute("DELETE FROM readings WHERE asset_id LIKE %s", (f"{asset_type}-%",))
        conn.execute("DELETE FROM assets WHERE asset_type = %s", (asset_type,))


async def read_models_topic(bootstrap: str, name: str, timeout: float = 15.0) -> ModelAliasMoved:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topics.MODELS,
        bootstrap_servers=bootstrap,
        group_id=f"it-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    if record.key == name.encode():
                        return ModelAliasMoved.model_validate_json(record.value)
    finally:
        await consumer.stop()
    raise AssertionError(f"no {name} event on {topics.MODELS}")


@pytest.mark.integration
def test_pdm_train_anomaly_registers_promotes_and_announces(
    mlflow_uri: str,
    kafka_bootstrap: str,
    migrated_database_url: str,
    pump_history: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PDM_DATABASE_URL", migrated_database_url)
    monkeypatch.setenv("PDM_MLFLOW_TRACKING_URI", mlflow_uri)
    monkeypatch.setenv("PDM_KAFKA_BOOTSTRAP", kafka_bootstrap)
    name = f"anomaly-{pump_history}"
    result = CliRunner().invoke(
        train_app,
        ["anomaly", "--asset-type", pump_history, "--since", "1d", "--max-snapshots", "12000"],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "[5/5] announcing" in result.output and "promoted" in result.output

    event = asyncio.run(read_models_topic(kafka_bootstrap, name))
    assert (event.version, event.asset_type, event.task) == ("1", pump_history, "anomaly")
    champion = registry.get_version(name, tracking_uri=mlflow_uri)
    assert champion.version == "1"
    assert champion.metrics["holdout_false_alarm_rate"] < 0.01
    assert champion.metrics["detection_rate_spike"] > 0.95
    assert champion.tags["feature_set"] == "snapshot:flow,power,temperature,vibration"
    assert champion.tags["promotion.decision"] == "promoted"

    unknown = CliRunner().invoke(train_app, ["anomaly", "--asset-type", "nosuchtype"])
    assert unknown.exit_code == 1
    assert "no readings of assets of type 'nosuchtype'" in unknown.output
