"""Batch processors of the anomaly service.

Readings: validated events are scored per (asset, sensor) in reading-time order; scores feed
the alarm book; alarm changes and their events are committed together (outbox), then the
events are published, then (by the caller) offsets are committed. Commands: acknowledge and
assign, shelve and unshelve, applied once per command id.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import structlog
from prometheus_client import Counter
from pydantic import ValidationError

from pdm_anomaly import SERVICE
from pdm_anomaly.alarms import AlarmBook, AlarmChange
from pdm_anomaly.context import rebaseline
from pdm_anomaly.models import DetectorFactory
from pdm_anomaly.shelves import ShelfIndex, check_expiry
from pdm_anomaly.state import AssetState, SnapshotModel, evaluate, warm_up
from pdm_anomaly.storage import AlarmStore, UnknownAlarm
from pdm_common import topics
from pdm_common.db.pool import db_call
from pdm_common.delivery import (
    Delivery,
    Failure,
    Outgoing,
    PermanentError,
    Publisher,
    decode_json,
    event_outgoing,
    publish_or_pause,
)
from pdm_common.events import (
    AlarmCommand,
    AlarmEvent,
    AssetContextChanged,
    ReadingsValidated,
    ShelfCommand,
    describe_validation,
    parse_anomaly_command,
)
from pdm_common.telemetry import REGISTRY, metrics
from pdm_ml.detectors.limits import Limit
from pdm_ml.detectors.semantics import SensorCatalog

log = structlog.get_logger(__name__)
R = TypeVar("R")

#: Most asset states kept; past it the least recently used are dropped (and warmed up again).
MAX_ASSETS = 100_000

ALARMS_SUPPRESSED = Counter(
    "pdm_alarms_suppressed_total",
    "Alarms a shelf held back (one per episode of a condition), by service.",
    ["service"],
    registry=REGISTRY,
)
ALARMS_GROUPED = Counter(
    "pdm_alarms_grouped_total",
    "Conditions that joined an open alarm of their asset instead of opening their own.",
    ["service"],
    registry=REGISTRY,
)


def outgoing(
    events: Sequence[AlarmEvent], trace: Mapping[str, Mapping[str, str]]
) -> list[Outgoing]:
    """Alarm events keyed by asset, each carrying the trace context of the reading behind it."""
    return [event_outgoing(topics.ANOMALIES, e, e.asset_id, trace.get(e.asset_id)) for e in events]


class EventPublisher:
    """Publishes outbox events and stamps them; a failure pauses (events stay queued)."""

    def __init__(self, store: AlarmStore, publisher: Publisher) -> None:
        self.store = store
        self.publisher = publisher

    async def publish(
        self, events: Sequence[AlarmEvent], trace: Mapping[str, Mapping[str, str]] | None = None
    ) -> None:
        if not events:
            return
        await publish_or_pause(self.publisher, outgoing(events, trace or {}), "alarm events")
        await db_call(self.store.mark_published([e.event_id for e in events]))
        for e in events:
            metrics.alarm_events.labels(SERVICE, e.event_type).inc()

    async def flush_outbox(self) -> int:
        """Publish events a crash left unpublished (start-up)."""
        pending = await db_call(self.store.unpublished())
        await self.publish(pending)
        return len(pending)


class ReadingsProcessor:
    """`delivery.BatchProcessor` for `pdm.readings.validated.v1`."""

    def __init__(
        self,
        store: AlarmStore,
        events: EventPublisher,
        book: AlarmBook,
        *,
        detectors: DetectorFactory,
        limits: Mapping[str, Mapping[str, Limit]],
        models: Callable[[str | None], SnapshotModel | None] = lambda _t: None,
        warmup_readings: int = 1024,
        warmup_max_age: timedelta = timedelta(days=7),
        shelf_refresh_s: float = 2.0,
    ) -> None:
        self.store = store
        self.events = events
        self.book = book
        #: the shelves are re-read this often: another replica's command consumer may apply them
        self.shelf_refresh_s = shelf_refresh_s
        self._shelves_read = float("-inf")
        self.detectors = detectors
        self.limits = limits
        self.models = models
        self.warmup_readings = warmup_readings
        self.warmup_max_age = warmup_max_age
        self.assets: dict[str, AssetState] = {}

    def decode(self, delivery: Delivery) -> ReadingsValidated:
        return decode_json(delivery, ReadingsValidated)

    async def process(self, items: Sequence[tuple[Delivery, ReadingsValidated]]) -> list[Failure]:
        await self._refresh_shelves()
        await self._warm_up_new_assets(items)
        changes: list[AlarmChange] = []
        trace: dict[str, dict[str, str]] = {}
        for delivery, event in items:
            state = self.assets[event.asset_id]
            state.partition = delivery.partition
            if event.asset_type:
                state.asset_type = event.asset_type
            limits = self.limits.get(state.asset_type or "", {})
            model = self.models(state.asset_type)
            for snap in event.snapshots:
                ts = snap.ts.timestamp()
                for condition, score in evaluate(
                    state,
                    ts,
                    snap.readings,
                    make_detector=self.detectors(state.asset_type),
                    limits=limits,
                    model=model,
                ):
                    change = self.book.observe(
                        event.asset_id, condition, score, snap.ts, state.asset_type
                    )
                    if change is not None:
                        changes.append(change)
                        trace.setdefault(event.asset_id, delivery.trace_context())
                        _count(change)
        touched = self.book.take_touched()
        if changes or touched:
            recorded = await db_call(self.store.record(changes, touched))
            await self.events.publish(recorded, trace)
        return []

    async def _refresh_shelves(self) -> None:
        """Adopt the stored shelves (start-up, then every `shelf_refresh_s`)."""
        now = time.monotonic()
        if now - self._shelves_read < self.shelf_refresh_s:
            return
        self.book.shelves.replace_all(await db_call(self.store.shelves()))
        self._shelves_read = now

    async def _warm_up_new_assets(
        self, items: Sequence[tuple[Delivery, ReadingsValidated]]
    ) -> None:
        """Assets this consumer has no state for (start-up, rebalance, eviction) are warmed
        up from their stored readings before their first new one is scored."""
        first: dict[tuple[str, str], datetime] = {}
        new_assets: set[str] = set()
        asset_types: dict[str, str | None] = {}
        for _, event in items:
            if event.asset_id in self.assets:
                continue
            new_assets.add(event.asset_id)
            asset_types[event.asset_id] = asset_types.get(event.asset_id) or event.asset_type
            for snap in event.snapshots:
                for sensor in snap.readings:
                    key = (event.asset_id, sensor)
                    first[key] = min(snap.ts, first.get(key, snap.ts))
        if not new_assets:
            return
        history, open_alarms = await db_call(
            self.store.warm_up_data(first, self.warmup_readings, self.warmup_max_age)
        )
        if len(self.assets) + len(new_assets) > MAX_ASSETS:
            self._evict(len(new_assets))
        for asset_id in new_assets:
            state = self.assets[asset_id] = AssetState(asset_type=asset_types.get(asset_id))
            make = self.detectors(state.asset_type)
            n = warm_up(state, history.get(asset_id, ()), make)
            metrics.warmup_readings.labels(SERVICE).inc(n)
        self.book.restore(open_alarms)
        log.info("assets warmed up", assets=len(new_assets), open_alarms=len(open_alarms))

    def _evict(self, room: int) -> None:
        for asset_id in list(self.assets)[: room + len(self.assets) - MAX_ASSETS]:
            del self.assets[asset_id]
            self.book.forget_asset(asset_id)

    def forget_partitions(self, partitions: set[int]) -> None:
        """Partitions moved to another consumer: drop their assets' state (re-warmed if back)."""
        for asset_id in [a for a, s in self.assets.items() if s.partition in partitions]:
            del self.assets[asset_id]
            self.book.forget_asset(asset_id)


def _count(change: AlarmChange) -> None:
    if change.kind == "alarm.joined":
        ALARMS_GROUPED.labels(SERVICE).inc()
    elif change.kind == "alarm.suppressed":
        ALARMS_SUPPRESSED.labels(SERVICE).inc()
        log.info(
            "alarm suppressed by a shelf",
            asset_id=change.alarm.asset_id,
            condition=change.alarm.condition,
            severity=change.alarm.severity,
            reading_ts=change.reading_ts.isoformat(),
            shelf_id=str(change.shelf_id),
        )


class CommandsProcessor:
    """`delivery.BatchProcessor` for `pdm.anomaly.commands.v1` (acknowledge, assign; shelve,
    unshelve: applied shelves go into `shelves`, the index this process's book reads, at once;
    other processes re-read them from the table)."""

    def __init__(
        self,
        store: AlarmStore,
        events: EventPublisher,
        shelves: ShelfIndex | None = None,
        shelf_max: timedelta = timedelta(days=7),
    ) -> None:
        self.store = store
        self.events = events
        self.shelves = shelves if shelves is not None else ShelfIndex()
        self.shelf_max = shelf_max

    def decode(self, delivery: Delivery) -> AlarmCommand | ShelfCommand:
        try:
            command = parse_anomaly_command(delivery.value)
        except ValidationError as exc:
            raise PermanentError(describe_validation(exc), reason="invalid") from None
        if isinstance(command, ShelfCommand):
            if command.expires_at is not None and command.action == "shelve":
                why = check_expiry(command.expires_at, datetime.now(UTC), self.shelf_max)
                if why is not None:
                    raise PermanentError(why, reason="invalid")
            return command
        if command.action == "assign" and not command.assignee:
            raise PermanentError("assign needs an assignee", reason="invalid")
        return command

    async def process(
        self, items: Sequence[tuple[Delivery, AlarmCommand | ShelfCommand]]
    ) -> list[Failure]:
        failures: list[Failure] = []
        for delivery, c in items:
            if isinstance(c, ShelfCommand):
                await self._shelf(c)
                continue
            try:
                event = await db_call(
                    self.store.apply_command(
                        c.command_id,
                        c.alarm_id,
                        c.action,
                        c.actor,
                        c.assignee,
                        c.note,
                        datetime.now(UTC),
                    )
                )
            except UnknownAlarm as exc:
                failures.append(Failure(delivery, PermanentError(str(exc), reason="unknown_alarm")))
                continue
            if event is not None:
                await self.events.publish([event])
        return failures

    async def _shelf(self, c: ShelfCommand) -> None:
        shelf = await db_call(self.store.apply_shelf(c, datetime.now(UTC)))
        if shelf is not None:
            self.shelves.put(shelf)
        log.info(
            f"{c.action} applied" if shelf is not None else f"{c.action}: nothing to change",
            command_id=str(c.command_id),
            asset_id=c.asset_id,
            sensor=c.sensor,
            actor=c.actor,
            reason=c.reason,
            expires_at=c.expires_at.isoformat() if c.expires_at else None,
        )


#: A context change this much older than an asset's newest reading was already part of the
#: history its detectors learned (a replay from the start of the topic): it changes nothing.
CONTEXT_TOLERANCE_S = 300.0


class ContextProcessor:
    """`delivery.BatchProcessor` for `pdm.asset.context.v1`, heard by every process: an asset
    whose operating context changed on purpose re-learns its context-following sensors
    (`pdm_anomaly.context.rebaseline`). Assets this process does not hold are not its business
    (their owner hears the same event); a malformed event is dead-lettered."""

    def __init__(self, readings: ReadingsProcessor, catalog: SensorCatalog) -> None:
        self.readings = readings
        self.catalog = catalog

    def decode(self, delivery: Delivery) -> AssetContextChanged:
        return decode_json(delivery, AssetContextChanged)

    async def process(self, items: Sequence[tuple[Delivery, AssetContextChanged]]) -> list[Failure]:
        for _, event in items:
            state = self.readings.assets.get(event.asset_id)
            if state is None or not state.last_ts:
                continue
            at = event.at.timestamp()
            if at < max(state.last_ts.values()) - CONTEXT_TOLERANCE_S:
                continue
            n = rebaseline(state, event.reason, at, self.catalog)
            log.info(
                "operating context changed: detectors re-learn",
                asset_id=event.asset_id,
                reason=event.reason,
                detail=event.detail,
                detectors=n,
            )
        return []
