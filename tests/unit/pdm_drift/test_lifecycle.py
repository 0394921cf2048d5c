"""Retrain guards without a database or a registry: auto-retrain on a drifted features
report, invalid types, one running per model, the cooldown and `force`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from pdm_common.drift import DriftReport, LivePerformance
from pdm_drift.lifecycle import Lifecycle, Retrain
from pdm_drift.settings import DriftSettings


class FakeTx:
    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state
        self.emitted: list[Any] = []

    async def running_job(self, name: str) -> dict[str, Any] | None:
        job = self.state["running"].get(name)
        return {"job_id": job, "started_at": datetime.now(UTC)} if job else None

    async def cooldown_left_s(self, name: str, cooldown_s: float) -> float:
        return float(self.state["cooldown"].get(name, 0.0))

    async def claim_job(self, job_id: uuid.UUID, name: str, *args: Any) -> bool:
        if name in self.state["running"]:
            return False
        self.state["claimed"][name] = job_id
        return True

    async def since_last_model_change_s(self, model_name: str) -> float | None:
        return self.state["age"].get(model_name)

    async def emit(self, topic: str, key: str, event: Any) -> None:
        self.emitted.append((topic, key, event.event_type))


class FakeStore:
    def __init__(self) -> None:
        self.state: dict[str, Any] = {"running": {}, "cooldown": {}, "claimed": {}, "age": {}}
        self.events: list[Any] = []

    async def run(self, work: Any) -> Any:
        tx = FakeTx(self.state)
        snapshot = dict(self.state["claimed"])
        try:
            out = await work(tx)
        except Exception:
            self.state["claimed"] = snapshot  # rolled back
            raise
        self.events += tx.emitted
        return out


@pytest.fixture
def lifecycle(monkeypatch: pytest.MonkeyPatch) -> tuple[Lifecycle, FakeStore, list[Retrain]]:
    store = FakeStore()
    started: list[Retrain] = []

    async def no_training(self: Lifecycle, job: Retrain) -> None:
        started.append(job)

    monkeypatch.setattr(Lifecycle, "_run", no_training)
    settings = DriftSettings(retrain_weighted_share=0.3, auto_retrain=True)
    return Lifecycle(store, None, settings, lambda: None, "test"), store, started  # type: ignore[arg-type]


def report(name: str, weighted: float, kind: str = "features") -> DriftReport:
    now = datetime.now(UTC)
    return DriftReport(
        source="drift",
        report_id=uuid.uuid4(),
        kind=kind,  # type: ignore[arg-type]
        model_name=name,
        trigger="timer",
        window_start=now,
        window_end=now,
        reference_rows=10,
        current_rows=10,
        drifted_share=weighted,
        weighted_share=weighted,
        drift_detected=True,
    )


async def test_drift_starts_one_retrain_of_both_models(lifecycle) -> None:  # type: ignore[no-untyped-def]
    life, store, started = lifecycle
    await life.on_drift(report("failure-pump", 0.9))
    for task in list(life.tasks):
        await task
    assert len(started) == 1 and list(started[0].jobs) == ["failure-pump", "rul-pump"]
    assert started[0].trigger == "drift" and "0.90" in (started[0].reason or "")
    assert [e[2] for e in store.events] == ["retrain.started"] * 2


async def test_guards(lifecycle) -> None:  # type: ignore[no-untyped-def]
    life, store, started = lifecycle
    status, message, _ = await life.request_retrain(
        "failure-milling", "command", None, actor="x", job_id=uuid.uuid4()
    )
    assert status == "invalid" and "simulated" in message
    store.state["running"]["rul-pump"] = uuid.uuid4()
    status, message, _ = await life.request_retrain(
        "failure-pump", "command", None, actor="x", job_id=uuid.uuid4()
    )
    assert status == "conflict" and "rul-pump is running" in message
    assert store.state["claimed"] == {} and store.events == []  # nothing half-claimed
    store.state["running"].clear()
    store.state["cooldown"]["failure-pump"] = 3600.0
    status, message, _ = await life.request_retrain(
        "failure-pump", "command", None, actor="x", job_id=uuid.uuid4()
    )
    assert status == "conflict" and "cooldown for 60 more min" in message
    status, _, job = await life.request_retrain(
        "failure-pump", "command", None, actor="x", job_id=uuid.uuid4(), force=True
    )
    assert status == "accepted" and job is not None
    for task in list(life.tasks):
        await task
    assert len(started) == 1


async def test_no_retrain_when_off_or_not_a_simulated_model(lifecycle) -> None:  # type: ignore[no-untyped-def]
    life, store, started = lifecycle
    await life.on_drift(report("failure-ai4i", 0.9))
    life.settings = DriftSettings(auto_retrain=False)
    await life.on_drift(report("failure-pump", 0.9))
    assert started == [] and store.events == []


def degraded(name: str) -> LivePerformance:
    now = datetime.now(UTC)
    return LivePerformance(
        model_name=name,
        model_version="3",
        role="served",
        span="recent",
        computed_at=now,
        window_start=now,
        window_end=now,
        horizon_h=24,
        predictions=100,
        degraded=True,
        reason="recall fell from 0.90 (18/20) to 0.30 (6/20), Fisher p=0.0002 < 0.01",
    )


async def test_a_degraded_champion_starts_a_retrain_unless_off(lifecycle) -> None:  # type: ignore[no-untyped-def]
    life, _, started = lifecycle
    await life.on_degraded(degraded("failure-ai4i"))  # not retrained by the service
    await life.on_degraded(degraded("failure-pump"))
    for task in list(life.tasks):
        await task
    assert len(started) == 1 and started[0].trigger == "performance"
    assert "v3 degraded: recall fell" in (started[0].reason or "")
    life.settings = DriftSettings(retrain_on_performance=False)
    await life.on_degraded(degraded("rul-motor"))
    assert len(started) == 1


async def test_a_schedule_retrains_the_types_left_unchanged_for_long_enough(lifecycle) -> None:  # type: ignore[no-untyped-def]
    life, store, started = lifecycle
    assert await life.retrain_scheduled() == []  # no schedule by default
    life.settings = DriftSettings(retrain_every_days=7)
    day = 86400.0
    store.state["age"] = {"failure-pump": 8 * day, "failure-motor": 2 * day}  # compressor: none
    assert await life.retrain_scheduled() == ["failure-pump"]
    for task in list(life.tasks):
        await task
    assert len(started) == 1 and started[0].trigger == "schedule"
    assert list(started[0].jobs) == ["failure-pump", "rul-pump"]
    assert "no retrain or champion move for 8.0 days (every 7)" in (started[0].reason or "")
