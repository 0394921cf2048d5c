"""Live fan-out of platform events to WebSocket clients, and the feed of the latest cache.

One Kafka consumer per gateway process reads the event topics from their end (no consumer
group: every replica sees everything) and hands each record to the clients whose filter
matches. Each client has a bounded queue drained by its own sender task: a slow client fills
its own queue and loses events (counted, and it is told how many), it never delays the
others; one that has missed `stream_max_dropped` events is disconnected with close code 1013.
Records are forwarded without re-encoding: the frame wraps the event's JSON as it arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import Counter, Gauge

from pdm_common import topics
from pdm_common.telemetry import REGISTRY
from pdm_gateway.latest import LatestCache

log = structlog.get_logger(__name__)

#: Stream kind (the `types` filter of /v1/stream) of each topic the gateway fans out.
KINDS: dict[str, str] = {
    topics.READINGS_VALIDATED: "reading",
    topics.ANOMALIES: "alarm",
    topics.PREDICTIONS: "prediction",
    topics.MAINTENANCE_EVENTS: "maintenance",
    topics.DRIFT: "drift",
    topics.MODELS: "model",
    topics.SIMULATOR_TRUTH: "truth",
}
STREAM_TYPES = tuple(sorted(set(KINDS.values())))

CLIENTS = Gauge("pdm_gateway_stream_clients", "Connected WebSocket clients.", registry=REGISTRY)
DROPPED = Counter(
    "pdm_gateway_stream_dropped_total",
    "Events not delivered to a WebSocket client because its queue was full.",
    registry=REGISTRY,
)
SENT = Counter(
    "pdm_gateway_stream_sent_total", "Events sent to WebSocket clients.", registry=REGISTRY
)


@dataclass(frozen=True, slots=True)
class StreamFilter:
    """None = everything; otherwise the allowed asset ids / kinds."""

    assets: frozenset[str] | None = None
    kinds: frozenset[str] | None = None

    @classmethod
    def parse(cls, assets: str | None, kinds: str | None) -> StreamFilter:
        """From `?asset_id=a,b&types=alarm,prediction`; ValueError names unknown types."""
        asset_set = frozenset(a for a in (assets or "").split(",") if a) or None
        kind_set = frozenset(k for k in (kinds or "").split(",") if k) or None
        if kind_set and (unknown := kind_set - set(STREAM_TYPES)):
            raise ValueError(f"unknown stream types {sorted(unknown)}; use {list(STREAM_TYPES)}")
        return cls(asset_set, kind_set)

    def matches(self, kind: str, asset_id: str | None) -> bool:
        if self.kinds is not None and kind not in self.kinds:
            return False
        # Events without an asset (models, drift) pass an asset filter only if no asset set.
        return self.assets is None or (asset_id is not None and asset_id in self.assets)


def frame(kind: str, topic: str, asset_id: str | None, event_type: str | None, raw: bytes) -> str:
    """The WebSocket text frame: metadata plus the event JSON as published."""
    head = json.dumps(
        {"type": kind, "topic": topic, "asset_id": asset_id, "event_type": event_type}
    )
    return head[:-1] + ', "event": ' + raw.decode("utf-8", "replace") + "}"


@dataclass(eq=False)
class Client:
    filter: StreamFilter
    queue: asyncio.Queue[str]
    max_dropped: int
    dropped: int = 0
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, message: str) -> None:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped += 1
            DROPPED.inc()
            if self.max_dropped and self.dropped >= self.max_dropped:
                self.closed.set()


class StreamHub:
    def __init__(
        self,
        bootstrap: str,
        queue_size: int,
        max_dropped: int,
        latest: LatestCache | None = None,
        fetch_max_wait_ms: int = 20,
    ) -> None:
        self.bootstrap = bootstrap
        self.queue_size = queue_size
        self.max_dropped = max_dropped
        self.latest = latest
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.clients: set[Client] = set()
        self.connected = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="gateway stream")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def subscribe(self, flt: StreamFilter) -> Client:
        client = Client(flt, asyncio.Queue(self.queue_size), self.max_dropped)
        self.clients.add(client)
        CLIENTS.set(len(self.clients))
        return client

    def unsubscribe(self, client: Client) -> None:
        self.clients.discard(client)
        CLIENTS.set(len(self.clients))

    def dispatch(
        self, topic: str, key: bytes | None, headers: Iterable[tuple[str, bytes]], value: bytes
    ) -> None:
        kind = KINDS.get(topic)
        if kind is None:
            return
        asset_id = key.decode("utf-8", "replace") if key else None
        if kind == "reading" and self.latest is not None and asset_id is not None:
            self._feed_latest(asset_id, value)
        message: str | None = None
        for client in self.clients:
            if client.filter.matches(kind, asset_id):
                if message is None:
                    event_type = next(
                        (v.decode("utf-8", "replace") for k, v in headers if k == "event_type"),
                        None,
                    )
                    message = frame(kind, topic, asset_id, event_type, value)
                client.offer(message)

    def _feed_latest(self, asset_id: str, value: bytes) -> None:
        assert self.latest is not None
        if self.latest.get(asset_id) is None:
            return  # not cached: nothing to keep fresh, skip the decode
        try:
            event = json.loads(value)
            snapshots = [
                (datetime.fromisoformat(s["ts"]), s["readings"]) for s in event["snapshots"]
            ]
        except (ValueError, KeyError, TypeError):
            return
        self.latest.update(asset_id, snapshots)

    async def _run(self) -> None:
        delay = 0.5
        while True:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                enable_auto_commit=False,
                fetch_max_wait_ms=self.fetch_max_wait_ms,
                max_partition_fetch_bytes=16 << 20,
            )
            try:
                await consumer.start()
                partitions = await _all_partitions(consumer, list(KINDS))
                consumer.assign(partitions)
                await consumer.seek_to_end(*partitions)
                self.connected = True
                delay = 0.5
                while True:
                    batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
                    for records in batch.values():
                        for r in records:
                            self.dispatch(r.topic, r.key, r.headers or (), r.value)
                    await asyncio.sleep(0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.connected = False
                log.warning("stream consumer failed; reconnecting", error=repr(exc), in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()


async def _all_partitions(
    consumer: AIOKafkaConsumer, names: list[str], wait_s: float = 1.0
) -> list[TopicPartition]:
    """Every partition of every topic, waiting (metadata refreshed each `wait_s`) until all
    exist: at a fresh start the topics are being created while the stream starts, and a
    topic assigned with no partitions would never be read (the stream reports not ready
    until then)."""
    while True:
        missing = [t for t in names if not consumer.partitions_for_topic(t)]
        if not missing:
            return [
                TopicPartition(t, p) for t in names for p in consumer.partitions_for_topic(t) or ()
            ]
        log.info("stream waiting for topics", missing=missing)
        await consumer._client.force_metadata_update()
        if [t for t in names if not consumer.partitions_for_topic(t)]:
            await asyncio.sleep(wait_s)


async def pump(client: Client, send: Callable[[str], Awaitable[None]]) -> None:
    """Drain one client's queue into its socket; tells it about drops as they happen."""
    reported = 0
    while True:
        message = await client.queue.get()
        if client.dropped != reported:
            reported = client.dropped
            await send(json.dumps({"type": "dropped", "dropped": reported}))
        await send(message)
        SENT.inc()


def describe_filter(flt: StreamFilter) -> dict[str, Any]:
    return {
        "asset_id": sorted(flt.assets) if flt.assets else None,
        "types": sorted(flt.kinds) if flt.kinds else list(STREAM_TYPES),
    }
