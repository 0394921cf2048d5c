"""The broker factory and the reliable batch subscription every consumer uses.

Producer: `acks="all"`, a batch size that does not overflow (FastStream's 16 KB default does
with a batch of 1,000 messages), idempotence only where the broker supports it. Consumers:
batch subscribers, `auto_offset_reset="earliest"` (tansu misreports the latest offset), manual
commit after the `ReliableBatchHandler` has made every side effect durable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.middlewares import AckPolicy
from opentelemetry import propagate

from pdm_common import topics
from pdm_common.delivery import Delivery, Outgoing, ReliableBatchHandler
from pdm_common.settings import CommonSettings
from pdm_common.telemetry import REGISTRY, configure_tracing, continue_trace, metrics

log = structlog.get_logger(__name__)

#: Producer batch buffer: large enough for `publish_batch` of 1000 messages.
PRODUCER_BATCH_BYTES = 1 << 20


def producer_options(settings: CommonSettings, service: str) -> dict[str, Any]:
    """Producer settings shared by the FastStream broker and `BrokerPublisher`."""
    return {
        "client_id": f"pdm-{service}",
        "acks": "all",
        "enable_idempotence": settings.kafka_idempotent_producer,
        "max_batch_size": PRODUCER_BATCH_BYTES,
        # room for the largest accepted message plus delivery headers (DLQ keeps the bytes)
        "max_request_size": settings.kafka_max_message_bytes + 65_536,
        "linger_ms": 2,
    }


def make_broker(settings: CommonSettings, service: str) -> KafkaBroker:
    tracer_provider = configure_tracing(service, settings.otel_exporter)
    return KafkaBroker(
        settings.kafka_bootstrap,
        **producer_options(settings, service),
        middlewares=(
            KafkaTelemetryMiddleware(tracer_provider=tracer_provider),
            KafkaPrometheusMiddleware(registry=REGISTRY, app_name=f"pdm-{service}"),
        ),
        logger=structlog.get_logger("faststream"),
        log_level=10,  # FastStream logs every message at INFO; keep that at DEBUG
    )


class BrokerPublisher:
    """`delivery.Publisher`: send all, then wait for every ack.

    Its own aiokafka producer (same settings as the broker's) rather than FastStream's
    `publish()`: that goes through the middleware stack per message and costs ~120 us each
    (1,000 messages: 100-140 ms, against 16-20 ms here; docs/benchmarks.md). Trace context is
    still carried: each message's producer span continues the trace of the message it derives
    from, and its context is written into the outgoing headers.
    """

    def __init__(self, settings: CommonSettings, service: str) -> None:
        self.settings = settings
        self.service = service
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.settings.kafka_bootstrap,
                    **producer_options(self.settings, self.service),
                )
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def stop(self) -> None:
        async with self._lock:
            if self._producer is not None:
                await self._producer.stop()
                self._producer = None

    async def publish_many(self, messages: Sequence[Outgoing]) -> None:
        producer = self._producer or await self.start()
        futures = []
        for m in messages:
            headers = dict(m.headers)
            with continue_trace(headers, f"{m.topic} publish"):
                propagate.inject(headers)  # the producer span, or the consumer's batch span
                futures.append(
                    await producer.send(
                        m.topic,
                        m.value,
                        key=m.key,
                        headers=[(k, v.encode()) for k, v in headers.items()],
                    )
                )
        await asyncio.gather(*futures)


async def handle_and_commit(
    handler: ReliableBatchHandler[Any], topic: str, consumer: Any, records: Sequence[Any]
) -> None:
    """Handle one fetched batch, then commit exactly its offsets, per partition.

    Serial on purpose: a pipelined variant (decode batch N+1 while batch N is written) was
    measured and gained nothing, because the database insert is the bottleneck
    (docs/benchmarks.md). Explicit offsets, rather than the consumer's positions, keep the
    commit tied to the records whose side effects are durable.
    """
    started = time.perf_counter()
    report = await handler.handle([Delivery.from_record(r) for r in records])
    offsets: dict[TopicPartition, int] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        offsets[tp] = max(offsets.get(tp, 0), r.offset + 1)
    try:
        await consumer.commit(offsets)
    except Exception as exc:  # e.g. rebalance: the new owner gets a redelivery
        log.warning("offset commit failed; batch will be redelivered", error=repr(exc))
    service = handler.service
    metrics.batch_seconds.labels(service, topic).observe(time.perf_counter() - started)
    metrics.batch_size.labels(service, topic).observe(len(records))
    _record_lag(consumer, records, service)
    log.debug(
        "batch handled",
        topic=topic,
        size=len(records),
        dlq=report.dead_lettered,
        retry=report.retried,
    )


def subscribe_reliably(
    broker: KafkaBroker,
    topic: str,
    handler: ReliableBatchHandler[Any],
    *,
    group_id: str,
    settings: CommonSettings,
    max_records: int = 5000,
    session_timeout_ms: int = 10_000,
    heartbeat_interval_ms: int = 3_000,
    max_poll_interval_ms: int = 60 * 60 * 1000,
    listener: Any = None,
    relaxed: bool = False,
) -> None:
    """Subscribe `handler` to `topic` and to its `.retry` companion (a separate group).

    `listener` (an aiokafka `ConsumerRebalanceListener`) is attached to the main topic, for
    services that keep per-partition state.

    The broker holds a fetch on a quiet multi-partition topic for the whole fetch wait (it
    does not answer early when data arrives), so the wait is both the idle poll rate and the
    added latency: the `.retry` companion, and `topic` itself when `relaxed`, use
    `kafka_relaxed_fetch_max_wait_ms`; latency-bound topics keep `kafka_fetch_max_wait_ms`.

    `max_poll_interval_ms` is long on purpose: while the database is down the handler pauses
    inside the batch (backpressure), and the consumer must keep its partitions meanwhile.
    """
    fast, slow = settings.kafka_fetch_max_wait_ms, settings.kafka_relaxed_fetch_max_wait_ms
    for name, group, wait_ms in (
        (topic, group_id, slow if relaxed else fast),
        (topics.retry_topic(topic), f"{group_id}.retry", slow),
    ):
        _subscribe(
            broker,
            name,
            handler,
            group_id=group,
            settings=settings,
            max_records=max_records,
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=heartbeat_interval_ms,
            max_poll_interval_ms=max_poll_interval_ms,
            listener=listener if name == topic else None,
            fetch_max_wait_ms=wait_ms,
        )


def _subscribe(
    broker: KafkaBroker,
    topic: str,
    handler: ReliableBatchHandler[Any],
    *,
    group_id: str,
    settings: CommonSettings,
    max_records: int,
    session_timeout_ms: int,
    heartbeat_interval_ms: int,
    max_poll_interval_ms: int,
    listener: Any = None,
    fetch_max_wait_ms: int,
) -> None:
    async def raw_bodies(message: Any) -> Any:
        # Decoding is the processor's job, per message, so one poison message cannot fail
        # the decode of its whole batch.
        return message.body

    @broker.subscriber(
        topic,
        batch=True,
        group_id=group_id,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.MANUAL,
        decoder=raw_bodies,
        max_records=max_records,
        batch_timeout_ms=100,
        max_partition_fetch_bytes=max(8 << 20, settings.kafka_max_message_bytes * 2),
        fetch_max_wait_ms=fetch_max_wait_ms,
        session_timeout_ms=session_timeout_ms,
        heartbeat_interval_ms=heartbeat_interval_ms,
        max_poll_interval_ms=max_poll_interval_ms,
        listener=listener,
        # replies are explicit (request/reply with correlation ids); FastStream's automatic
        # reply to `reply_to` would send an empty extra message
        no_reply=True,
        title=f"{handler.service}:{topic}",
    )
    async def consume(body: list[bytes], msg: KafkaMessage) -> None:
        records = msg.raw_message
        batch = records if isinstance(records, tuple) else (records,)
        await handle_and_commit(handler, topic, msg.consumer, batch)


def _record_lag(consumer: Any, records: Sequence[Any], service: str) -> None:
    """Lag from the fetch high-water mark (tansu misreports `end_offsets`)."""
    seen = {(r.topic, r.partition) for r in records}
    for topic, partition in seen:
        tp = TopicPartition(topic, partition)
        try:
            highwater = consumer.highwater(tp)
            position = (
                max(r.offset for r in records if r.partition == partition and r.topic == topic) + 1
            )
        except Exception:
            continue
        if highwater is not None:
            metrics.consumer_lag.labels(service, topic, str(partition)).set(
                max(0, highwater - position)
            )


async def ensure_topics(
    bootstrap: str, names: Sequence[str], *, partitions: int, replication: int = 1
) -> list[str]:
    """Create the topics that do not exist yet (idempotent); returns those created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="pdm-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            await admin.create_topics(
                [
                    NewTopic(n, num_partitions=partitions, replication_factor=replication)
                    for n in missing
                ]
            )
        return missing
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, names: Sequence[str]) -> None:
    """Delete topics (e.g. a private reply topic at shutdown); missing ones are ignored."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="pdm-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        if doomed := [n for n in names if n in existing]:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()


async def ping_broker(broker: KafkaBroker, seconds: float = 2.0) -> bool:
    try:
        return bool(await asyncio.wait_for(broker.ping(seconds), seconds + 0.5))
    except Exception:
        return False
