"""Rebuilding the fleet at start-up from Kafka (a service keeps no state between restarts
except what it can rebuild from Kafka and the database).

The fleet's state is what its commands made of it. Before the tick loop starts and before the
consumer group joins, `restore` reads `pdm.simulator.commands.v1` from the beginning up to its
current end (every partition) and re-applies each command at its record's timestamp, the
instant the live consumer applied it too (`commands.command_time`): an injected failure goes
on degrading from where it was and fails when it was always going to. Commands are replayed in
timestamp order (partitions interleaved), once per command id; a command that was refused is
refused again (it was dead-lettered the first time, not again now); a malformed one (decoded
as the consumer decodes it) is skipped.

Ground truth is not announced twice: `pdm.simulator.truth.v1` is read the same way, and only
the changes missing from it are published (so a crash between applying a command and the next
tick loses nothing either). An active failure already announced as failed is marked so; one
that came due while the simulator was down is announced at the first tick.

The ids of the commands replayed seed the consumer's seen set: the consumer group resumes
from its committed offsets and skips what the replay already applied.

The embedded broker (tansu) reports the end offset of a partition as the start of its last
batch + 1, so the end of each partition is taken from the high-water mark of the
first fetch response (`consumer.highwater`), never from `end_offsets` alone.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from pdm_common import topics
from pdm_common.delivery import Delivery, PermanentError, decode_json
from pdm_common.events import GroundTruth as GroundTruthEvent
from pdm_common.events import SimulatorCommand
from pdm_common.settings import CommonSettings
from pdm_ml.simulation.machines import Fleet, GroundTruth
from pdm_simulator.commands import CommandRefused, apply_command, command_time, truth_kind

log = structlog.get_logger(__name__)

#: Longest a start-up waits to read a topic to its end before it gives up (and the service
#: fails to start rather than run with a forgotten state).
READ_TIMEOUT_S = 60.0

#: (event type, asset id, mode, injected at): one ground-truth change, however announced.
TruthKey = tuple[str, str, str, datetime]


class RestoreError(RuntimeError):
    """The topics could not be read to their end: the state cannot be rebuilt."""


@dataclass(slots=True)
class Restored:
    """What replaying the commands did to the fleet."""

    applied: list[str] = field(default_factory=list)  # command ids, in the order applied
    refused: dict[str, str] = field(default_factory=dict)  # command id -> why
    invalid: int = 0  # records that are not a command (dead-lettered when first consumed)
    rate_hz: float | None = None  # the last `rate` command, if any
    owed_truth: list[GroundTruth] = field(default_factory=list)  # not on the truth topic yet
    failed_before: list[tuple[str, str]] = field(default_factory=list)  # (asset, mode)

    @property
    def seen(self) -> set[str]:
        return set(self.applied)


def replay_order(records: Iterable[Delivery]) -> list[Delivery]:
    """Records in the order they took effect: by timestamp across partitions, then by
    position; a record without a timestamp (old message format) goes last."""
    return sorted(
        records,
        key=lambda d: (d.timestamp_ms if d.timestamp_ms >= 0 else math.inf, d.partition, d.offset),
    )


def truth_key(truth: GroundTruth) -> TruthKey:
    return (truth_kind(truth), truth.asset_id, truth.mode, truth.injected_at.astimezone(UTC))


def event_key(event: GroundTruthEvent) -> TruthKey:
    return (event.event_type, event.asset_id, event.mode, event.injected_at.astimezone(UTC))


def replay_commands(
    fleet: Fleet,
    commands: Iterable[Delivery],
    announced: Iterable[GroundTruthEvent],
    now: datetime,
) -> Restored:
    """Re-apply `commands` (records of the commands topic) to a freshly built `fleet`, each at
    its record's timestamp; `announced` is the ground truth already published. Afterwards the
    fleet's outbox is empty: what it still owes the truth topic is in `owed_truth`."""
    restored = Restored()
    seen: set[str] = set()
    for record in replay_order(commands):
        try:
            command = decode_json(record, SimulatorCommand)
        except PermanentError:
            restored.invalid += 1
            continue
        key = str(command.command_id)
        if key in seen:
            continue
        try:
            rate = apply_command(fleet, command, command_time(record.timestamp_ms, now))
        except CommandRefused as exc:
            restored.refused[key] = str(exc)
            continue
        seen.add(key)
        restored.applied.append(key)
        if rate is not None:
            restored.rate_hz = rate
    published = {event_key(e) for e in announced}
    for machine in fleet.machines.values():
        for truth in machine.ground_truth:
            _, asset_id, mode, injected_at = truth_key(truth)
            announced_failed = ("failure.failed", asset_id, mode, injected_at) in published
            if announced_failed and machine.mark_failed(truth.mode):
                restored.failed_before.append((truth.asset_id, truth.mode))
    restored.owed_truth = [t for t in fleet.drain_truth() if truth_key(t) not in published]
    return restored


def decode_truth(records: Iterable[Delivery]) -> list[GroundTruthEvent]:
    """The ground-truth events among `records` (anything else is ignored)."""
    out = []
    for record in records:
        try:
            out.append(decode_json(record, GroundTruthEvent))
        except PermanentError:
            log.warning("unreadable ground-truth record ignored", offset=record.offset)
    return out


# --- I/O ---------------------------------------------------------------------------------


def caught_up(positions: dict[int, int], ends: dict[int, int | None]) -> bool:
    """Every partition's position is at or past its end (an end of None is not known yet)."""
    return all(
        end is not None and positions.get(partition, 0) >= end for partition, end in ends.items()
    )


async def read_to_end(
    bootstrap: str,
    topic: str,
    *,
    timeout_s: float = READ_TIMEOUT_S,
    max_fetch_bytes: int = 8 << 20,
) -> list[Delivery]:
    """Every record of every partition of `topic`, from the beginning up to the end it had
    when the read started (records arriving meanwhile may or may not be included). No group,
    no commit. Raises `RestoreError` when the end is not reached within `timeout_s`."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        max_partition_fetch_bytes=max_fetch_bytes,
        client_id="pdm-simulator-restore",
    )
    await consumer.start()
    try:
        numbers = consumer.partitions_for_topic(topic)
        if not numbers:
            await consumer._client.force_metadata_update()
            numbers = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(numbers or ())]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        # a lower bound only: tansu reports the start of the last batch + 1
        reported = await consumer.end_offsets(tps)
        ends: dict[int, int | None] = {tp.partition: None for tp in tps}
        out: list[Delivery] = []
        deadline = time.monotonic() + timeout_s
        while True:
            for tp in tps:
                highwater = consumer.highwater(tp)
                if ends[tp.partition] is None and highwater is not None:
                    ends[tp.partition] = max(highwater, reported.get(tp, 0))
            positions = {tp.partition: await consumer.position(tp) for tp in tps}
            if caught_up(positions, ends):
                return out
            if time.monotonic() > deadline:
                raise RestoreError(
                    f"{topic}: not read to its end within {timeout_s:g}s "
                    f"(positions {positions}, ends {ends})"
                )
            batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for records in batch.values():
                out += [Delivery.from_record(r) for r in records]
    finally:
        await consumer.stop()


async def restore(fleet: Fleet, common: CommonSettings, now: datetime | None = None) -> Restored:
    """Rebuild `fleet` (freshly built, not stepped yet) from the commands and truth topics."""
    started = time.monotonic()
    fetch = max(8 << 20, common.kafka_max_message_bytes * 2)
    commands, truth = await asyncio.gather(
        read_to_end(common.kafka_bootstrap, topics.SIMULATOR_COMMANDS, max_fetch_bytes=fetch),
        read_to_end(common.kafka_bootstrap, topics.SIMULATOR_TRUTH, max_fetch_bytes=fetch),
    )
    restored = replay_commands(fleet, commands, decode_truth(truth), now or datetime.now(UTC))
    log.info(
        "fleet state restored from Kafka",
        commands=len(commands),
        applied=len(restored.applied),
        refused=len(restored.refused),
        invalid=restored.invalid,
        rate_hz=restored.rate_hz,
        active=describe_active(fleet),
        truth_owed=len(restored.owed_truth),
        seconds=round(time.monotonic() - started, 3),
    )
    return restored


def describe_active(fleet: Fleet) -> list[str]:
    """One line per active failure, for the start-up log."""
    return [
        f"{t.asset_id} {t.mode} {t.severity} since {t.injected_at.isoformat()}"
        + (f", fails {t.expected_failure_at.isoformat()}" if t.expected_failure_at else "")
        + (" (failed)" if t.failed else "")
        for m in fleet.machines.values()
        for t in m.ground_truth
    ]
