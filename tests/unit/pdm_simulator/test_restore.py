"""The simulator rebuilds its fleet from its commands topic at start (restore.py): failures
survive a restart with the same times, refusals stay refusals, ground truth is not repeated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pdm_common.delivery import Delivery
from pdm_common.events import GroundTruth as GroundTruthEvent
from pdm_ml.simulation.machines import Fleet
from pdm_simulator.commands import command_time, truth_event
from pdm_simulator.handlers import CommandsProcessor
from pdm_simulator.restore import caught_up, replay_commands, replay_order
from pdm_simulator.runner import FleetRunner, tick_messages
from tests import factories
from tests.factories import FakePublisher

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
MS0 = int(T0.timestamp() * 1000)
TRUTH = "pdm.simulator.truth.v1"


def fleet() -> Fleet:
    return Fleet.build({"pump": 2, "milling": 1}, seed=3)


def record(
    command: dict | bytes, at: datetime | None, partition: int = 0, offset: int = 0
) -> Delivery:
    ms = -1 if at is None else round((at - T0).total_seconds() * 1000) + MS0
    return factories.delivery(
        command,
        topic="pdm.simulator.commands.v1",
        partition=partition,
        offset=offset,
        timestamp_ms=ms,
    )


def cid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def inject(asset: str = "pump-002", mode: str = "bearing_degradation", **extra) -> dict:
    return {
        "command_id": extra.pop("command_id", cid(1)),
        "action": "inject",
        "asset_id": asset,
        "mode": mode,
        "severity": "critical",
        **extra,
    }


def announced(fleet_: Fleet, now: datetime) -> list[GroundTruthEvent]:
    """What a live simulator published on the truth topic up to `now`."""
    return [
        GroundTruthEvent.model_validate_json(m.value)
        for m in tick_messages(fleet_, now)
        if m.topic == TRUTH
    ]


def no_publisher() -> FakePublisher:
    """The processor does not publish: any attempt fails the test."""
    return FakePublisher.down(AssertionError("the processor does not publish"))


def test_a_command_takes_effect_at_its_record_timestamp_to_the_millisecond() -> None:
    now = T0 + timedelta(hours=1)
    assert command_time(MS0 + 1234, now) == T0 + timedelta(milliseconds=1234)
    assert command_time(-1, now) == now and command_time(None, now) == now


async def test_an_injected_failure_survives_a_restart_with_its_times_and_its_degradation():
    live = fleet()
    processor = CommandsProcessor(FleetRunner(live, no_publisher(), 1.0))
    injected_at = T0 + timedelta(milliseconds=250)
    records = [record(inject(ramp_s=600), injected_at)]
    decoded = [(r, processor.decode(r)) for r in records]
    assert await processor.process(decoded) == []
    (before,) = live["pump-002"].ground_truth
    assert before.injected_at == injected_at  # the record's time, not the consumer's clock
    assert before.expected_failure_at == injected_at + timedelta(seconds=600)
    published = announced(live, T0 + timedelta(seconds=1))
    assert [e.event_type for e in published] == ["failure.injected"]

    restarted = fleet()
    restored = replay_commands(restarted, records, published, now=T0 + timedelta(seconds=300))
    assert restored.applied == [str(decoded[0][1].command_id)] and restored.refused == {}
    assert restarted["pump-002"].ground_truth == [before]
    assert restored.owed_truth == []  # announced already: not again

    # 9 min in, the restored bearing is where the original one would be: compared with a
    # healthy twin (same seed, same noise) the vibration is up by the degradation so far
    twin = fleet()
    t = T0 + timedelta(minutes=9)
    degraded = restarted.snapshots(t)[1]["readings"]
    healthy = twin.snapshots(t)[1]["readings"]
    progress = ((t - injected_at).total_seconds() / 600) ** 3  # bearing exponent
    assert degraded["vibration"] / healthy["vibration"] == pytest.approx(
        1 + 5.0 * 1.15 * progress, rel=0.35
    )  # jitter of a degrading bearing, sd 0.25 x degradation
    assert degraded["vibration"] > 3 * healthy["vibration"]
    assert restarted.snapshots(t)[0]["readings"] == twin.snapshots(t)[0]["readings"]  # pump-001
    later = [e for e in announced(restarted, t + timedelta(minutes=2))]
    assert [(e.event_type, e.expected_failure_at) for e in later] == [
        ("failure.failed", before.expected_failure_at)
    ]


def test_a_failure_announced_as_failed_is_not_announced_again_and_a_missed_one_is() -> None:
    live = fleet()
    records = [record(inject(ramp_s=60), T0)]
    (injected,) = [truth_event(t) for t in replay_commands(live, records, [], now=T0).owed_truth]
    published = announced(live, T0 + timedelta(seconds=61))  # the live tick saw it fail
    assert [e.event_type for e in published] == ["failure.failed"]
    later = T0 + timedelta(minutes=5)

    restarted = fleet()
    restored = replay_commands(restarted, records, [injected, *published], now=later)
    assert restored.failed_before == [("pump-002", "bearing_degradation")]
    assert restored.owed_truth == []
    assert [m.topic for m in tick_messages(restarted, later)] == ["pdm.readings.v1"] * 3

    down = fleet()  # the simulator was down when the failure came due: say it late, once
    restored = replay_commands(down, records, [injected], now=later)
    assert restored.failed_before == [] and restored.owed_truth == []
    failed = announced(down, later)
    assert [(e.event_type, e.injected_at, e.expected_failure_at) for e in failed] == [
        ("failure.failed", T0, T0 + timedelta(seconds=60))
    ]
    assert announced(down, later + timedelta(seconds=1)) == []


def test_truth_lost_in_a_crash_before_the_tick_is_published_after_the_restart() -> None:
    records = [
        record(inject(ramp_s=600), T0),
        record(
            {
                "command_id": cid(2),
                "action": "clear",
                "asset_id": "pump-002",
                "mode": "bearing_degradation",
            },
            T0 + timedelta(seconds=10),
            offset=1,
        ),
    ]
    owed = replay_commands(fleet(), records[:1], [], now=T0).owed_truth
    (injected,) = [truth_event(t) for t in owed]  # published; then the crash
    restarted = fleet()
    restored = replay_commands(restarted, records, [injected], now=T0 + timedelta(seconds=20))
    assert [(t.mode, t.cleared_at) for t in restored.owed_truth] == [
        ("bearing_degradation", T0 + timedelta(seconds=10))
    ]
    assert restarted["pump-002"].ground_truth == [] and restarted.drain_truth() == []


def test_commands_replay_in_timestamp_order_across_partitions_and_refusals_stay_refused():
    """inject (p0), the same inject again under another id (p1: refused, already active),
    clear (p0): replayed partition by partition the refused inject would come back after the
    repair and break the pump again."""
    first, again = cid(10), cid(11)
    clear = {
        "command_id": cid(12),
        "action": "clear",
        "asset_id": "pump-001",
        "mode": "seal_leak",
    }
    records = [
        record(inject("pump-001", "seal_leak", command_id=first), T0, 0, 0),
        record(clear, T0 + timedelta(seconds=2), 0, 1),
        record(inject("pump-001", "seal_leak", command_id=again), T0 + timedelta(seconds=1), 1, 0),
    ]
    assert [(r.partition, r.offset) for r in replay_order(records)] == [(0, 0), (1, 0), (0, 1)]
    f = fleet()
    restored = replay_commands(f, records, [], now=T0 + timedelta(minutes=1))
    assert f["pump-001"].ground_truth == []
    assert list(restored.refused) == [again] and "already active" in restored.refused[again]
    assert restored.seen == {first, clear["command_id"]}


def test_duplicates_bad_records_refusals_and_the_rate_are_replayed_like_the_consumer_did():
    records = [
        record(inject(ramp_s=600), T0, 0, 0),
        record(inject(ramp_s=600), T0 + timedelta(seconds=1), 0, 1),  # redelivered: once
        record(b"not json", T0, 1, 0),
        record({"action": "explode"}, T0, 1, 1),
        record(inject("milling-001", "seal_leak", command_id=cid(9)), T0, 2, 0),
        record({"action": "rate", "rate_hz": 5, "command_id": cid(21)}, T0, 2, 1),
        record(
            {"action": "rate", "rate_hz": 2, "command_id": cid(22)}, T0 + timedelta(seconds=3), 1, 2
        ),
        record({"action": "scenario", "scenario": "high_load"}, None, 0, 2),  # no timestamp: last
    ]
    f = fleet()
    restored = replay_commands(f, records, [], now=T0 + timedelta(minutes=1))
    assert restored.invalid == 2
    assert len(restored.applied) == 4 and restored.rate_hz == 2
    assert [reason for reason in restored.refused.values()] == [
        "failure mode 'seal_leak' does not apply to a milling; allowed modes: "
        "['tool_wear', 'sensor_interference']"
    ]
    assert {m.scenario for m in f.machines.values()} == {"high_load"}
    assert [t.asset_id for t in restored.owed_truth] == ["pump-002"]  # nothing announced yet


async def test_the_consumer_skips_what_the_restore_applied_and_applies_what_came_after():
    f = fleet()
    records = [record(inject(ramp_s=600), T0)]
    restored = replay_commands(f, records, [], now=T0)
    processor = CommandsProcessor(FleetRunner(f, no_publisher(), 1.0), restored.seen)
    newer = record(
        inject("pump-001", "seal_leak", command_id=cid(3)), T0 + timedelta(seconds=5), 1, 0
    )
    batch = [(r, processor.decode(r)) for r in [*records, newer]]  # the group's redelivery
    assert await processor.process(batch) == []
    assert [(t.asset_id, t.injected_at) for t in f.drain_truth()] == [
        ("pump-001", T0 + timedelta(seconds=5))
    ]


def test_caught_up_needs_every_partition_end_known_and_reached() -> None:
    assert caught_up({0: 8, 1: 1, 2: 0}, {0: 8, 1: 1, 2: 0})
    assert not caught_up({0: 8, 1: 1}, {0: 8, 1: 1, 2: None})
    assert not caught_up({0: 6}, {0: 8})
    assert caught_up({}, {})
