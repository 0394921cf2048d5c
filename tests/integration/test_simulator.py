"""The simulator service on the real broker: a fleet publishing as an IoT gateway, commands
steering it, ground truth published, bad commands dead-lettered."""

from __future__ import annotations

import json
import time

import pytest
from aiokafka import AIOKafkaConsumer

from pdm_common.dlq_cli import list_dead_letters
from pdm_common.events import GroundTruth, ReadingSnapshot

from .harness import publish

pytestmark = pytest.mark.integration
COMMANDS = "pdm.simulator.commands.v1"


async def wait_for(kafka: str, topic: str, check, timeout: float = 60):
    """Read `topic` from the start until `check(records so far)` returns something (a topic
    the fleet keeps writing to never goes idle, so `read_topic` would not return)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.subscribe([topic])
        records: list = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for part in batch.values():
                records += part
            if (found := check(records)) is not None:
                return found
    finally:
        await consumer.stop()
    raise AssertionError(f"{topic}: condition not met within {timeout}s")


async def test_fleet_publishes_and_obeys_commands(kafka, start_service):
    service = start_service(
        "simulator",
        PDM_SIMULATOR_FLEET=json.dumps({"pump": 2, "milling": 1}),
        PDM_SIMULATOR_RATE_HZ="5",
    )

    def all_assets(records):
        snaps = [ReadingSnapshot.model_validate_json(r.value) for r in records]
        assets = {s.asset_id for s in snaps}
        return snaps if assets == {"pump-001", "pump-002", "milling-001"} else None

    try:
        snaps = await wait_for(kafka, "pdm.readings.v1", all_assets)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{service.tail()}") from None
    pump = next(s for s in snaps if s.asset_id == "pump-001")
    assert {"vibration", "discharge_pressure"} <= set(pump.readings)
    assert pump.asset_type == "pump"

    inject = {
        "command_id": "5f0c1c3e-6c1e-4f7e-9a57-6f1b1d0f7a11",
        "action": "inject",
        "asset_id": "pump-002",
        "mode": "bearing_degradation",
        "severity": "critical",
        "ramp_s": 2,
    }
    bad = [
        {"action": "inject", "asset_id": "milling-001", "mode": "seal_leak"},  # not on a mill
        {"action": "explode"},
    ]
    await publish(kafka, [inject, inject, *bad], topic=COMMANDS)  # inject twice: applied once

    def truth(records):
        events = [GroundTruth.model_validate_json(r.value) for r in records]
        kinds = [e.event_type for e in events]
        return events if "failure.failed" in kinds else None

    events = await wait_for(kafka, "pdm.simulator.truth.v1", truth)
    assert [(e.event_type, e.asset_id) for e in events] == [
        ("failure.injected", "pump-002"),
        ("failure.failed", "pump-002"),
    ]
    assert events[0].expected_failure_at is not None and events[0].mode == "bearing_degradation"
    letters = await list_dead_letters(kafka, COMMANDS, idle_ms=800)
    assert sorted(letter.reason for letter in letters) == ["invalid", "refused"]
    refused = next(letter for letter in letters if letter.reason == "refused")
    assert "seal_leak" in refused.error
