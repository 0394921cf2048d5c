"""The simulator service on the real broker: a fleet publishing as an IoT gateway, commands
steering it, ground truth published, bad commands dead-lettered."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaConsumer

from pdm_common.events import GroundTruth, ReadingSnapshot
from pdm_tools.dlq_cli import list_dead_letters

from .harness import publish, read_topic

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


async def test_read_to_end_reaches_the_true_end_of_every_partition(kafka):
    """tansu reports a partition's end as the start of its last batch + 1 (a quirk of the embedded
    broker): the
    restore must read past it, stop at the high-water mark of an empty partition, and finish
    while a writer keeps appending."""
    from aiokafka import AIOKafkaProducer

    from pdm_common.broker import ensure_topics
    from pdm_simulator.restore import read_to_end

    await ensure_topics(kafka, ["it.restore"], partitions=3)
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", linger_ms=20)
    await producer.start()
    try:
        batch = [await producer.send("it.restore", f"a{i}".encode(), partition=0) for i in range(5)]
        await asyncio.gather(*batch)
        await producer.send_and_wait("it.restore", b"b0", partition=1)
        batch = [
            await producer.send("it.restore", f"a{i}".encode(), partition=0) for i in range(5, 9)
        ]
        await asyncio.gather(*batch)  # partition 0: two batches; partition 2 stays empty

        async def keep_writing() -> None:
            while True:
                await producer.send_and_wait("it.restore", b"late", partition=1)
                await asyncio.sleep(0.01)

        writer = asyncio.create_task(keep_writing())
        started = time.monotonic()
        try:
            records = await read_to_end(kafka, "it.restore", timeout_s=20)
        finally:
            writer.cancel()
        assert time.monotonic() - started < 10
    finally:
        await producer.stop()
    first = [r for r in records if r.value != b"late"]
    assert sorted((r.partition, r.value.decode()) for r in first) == [
        *((0, f"a{i}") for i in range(9)),
        (1, "b0"),
    ]
    assert await read_to_end(kafka, "pdm.simulator.commands.v1", timeout_s=10) == []


async def test_injected_failures_survive_a_simulator_restart(kafka, start_service):
    """Inject, restart the service (not the broker): the failure that had failed keeps showing
    in the readings without a second `failure.failed`, the one still degrading fails at its
    original time, no ground truth is repeated, and the refused command stays refused."""
    service = start_service(
        "simulator", PDM_SIMULATOR_FLEET=json.dumps({"pump": 3}), PDM_SIMULATOR_RATE_HZ="5"
    )
    fast, slow, again = (
        "5f0c1c3e-6c1e-4f7e-9a57-6f1b1d0f7a21",
        "5f0c1c3e-6c1e-4f7e-9a57-6f1b1d0f7a22",
        "5f0c1c3e-6c1e-4f7e-9a57-6f1b1d0f7a23",
    )
    commands = [
        {"command_id": fast, "action": "inject", "asset_id": "pump-001",
         "mode": "bearing_degradation", "severity": "critical", "ramp_s": 2},
        {"command_id": slow, "action": "inject", "asset_id": "pump-002", "mode": "seal_leak",
         "severity": "critical", "ramp_s": 30},
        # already active on pump-001: refused, and must stay refused after the restart
        {"command_id": again, "action": "inject", "asset_id": "pump-001",
         "mode": "bearing_degradation", "severity": "low"},
    ]  # fmt: skip
    await publish(kafka, commands, topic=COMMANDS)

    def events_until(n_failed: int):
        def check(records):
            events = [GroundTruth.model_validate_json(r.value) for r in records]
            failed = [e for e in events if e.event_type == "failure.failed"]
            injected = [e for e in events if e.event_type == "failure.injected"]
            return events if len(failed) >= n_failed and len(injected) >= 2 else None

        return check

    try:
        before = await wait_for(kafka, "pdm.simulator.truth.v1", events_until(1))
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{service.tail()}") from None
    slow_injected = next(e for e in before if e.asset_id == "pump-002")
    service.stop()
    restarted_at = datetime.now(UTC)
    service.start()
    assert restarted_at + timedelta(seconds=5) < slow_injected.expected_failure_at

    try:
        events = await wait_for(kafka, "pdm.simulator.truth.v1", events_until(2), timeout=60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{service.tail()}") from None
    await asyncio.sleep(1.5)  # a few more ticks: nothing else may come
    events = [
        GroundTruth.model_validate_json(r.value)
        for r in await read_topic(kafka, "pdm.simulator.truth.v1")  # a quiet topic
    ]
    assert sorted((e.asset_id, e.event_type) for e in events) == [
        ("pump-001", "failure.failed"),
        ("pump-001", "failure.injected"),
        ("pump-002", "failure.failed"),
        ("pump-002", "failure.injected"),
    ]
    slow_failed = next(e for e in events if e.asset_id == "pump-002" and e.failed)
    assert slow_failed.occurred_at > restarted_at  # announced by the restarted process
    assert (slow_failed.injected_at, slow_failed.expected_failure_at) == (
        slow_injected.injected_at,
        slow_injected.expected_failure_at,
    )

    def after_restart(records):
        snaps = [ReadingSnapshot.model_validate_json(r.value) for r in records]
        late = [s for s in snaps if s.ts > restarted_at]
        by_asset = {a: [s for s in late if s.asset_id == a] for a in ("pump-001", "pump-003")}
        return by_asset if all(len(v) >= 5 for v in by_asset.values()) else None

    late = await wait_for(kafka, "pdm.readings.v1", after_restart)
    broken = [s.readings["vibration"] for s in late["pump-001"]]
    healthy = [s.readings["vibration"] for s in late["pump-003"]]
    # failed bearing: vibration x6.75 at failure level, jitter sd 25 %
    assert statistics.median(broken) > 4 * statistics.median(healthy), (broken, healthy)

    letters = await list_dead_letters(kafka, COMMANDS, idle_ms=800)
    assert [(letter.reason, letter.key) for letter in letters] == [("refused", "pump-001")]
    assert "already active" in letters[0].error
