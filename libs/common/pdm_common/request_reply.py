"""Kafka request/reply for synchronous callers (`pdm predict`, the gateway, benchmarks).

A client owns one private reply topic and one consumer on it; each request carries the
`reply_to` and a fresh `correlation_id` header, and waits (with a timeout) for the replies
that carry that id. A reply may come in numbered parts (a batch answer has `parts`): the
call returns when all have arrived. Replies nobody waits for any more (timed out) are dropped.

The server side (a service answering requests it consumes) is the few helpers below
`ReplyClient`: where to answer (`reply_to`) and the headers an answer carries (`reply_headers`:
the request's `correlation_id` and trace context), so every service answers the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from pdm_common.broker import delete_topics, ensure_topics
from pdm_common.delivery import Delivery, Outgoing, Publisher
from pdm_common.events import Envelope
from pdm_common.telemetry import TRACE_HEADERS

log = structlog.get_logger(__name__)

#: Request headers: the topic to answer on, and the id the answer must carry back.
REPLY_TO = "reply_to"
CORRELATION_ID = "correlation_id"


class ReplyTimeout(TimeoutError):
    """No (complete) reply within the timeout: the service may be down, busy or slow."""


@dataclass
class _Pending:
    future: asyncio.Future[float]
    parts: list[bytes] = field(default_factory=list)
    expected: int | None = None  # None: learnt from the first reply (`parts`, default 1)


class ReplyClient:
    """`async with ReplyClient(bootstrap) as client: replies = await client.call(...)`."""

    def __init__(
        self, bootstrap: str, *, reply_topic: str | None = None, fetch_max_wait_ms: int = 20
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = reply_topic or f"pdm.replies.{uuid.uuid4().hex[:12]}"
        # A topic of our own making is deleted at exit, so restarts and scaling do not pile
        # up reply topics (a crashed process still leaves one: `pdm topics list` shows them).
        self._owns_topic = reply_topic is None
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self._pending: dict[str, _Pending] = {}
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ReplyClient:
        await ensure_topics(self.bootstrap, [self.topic], partitions=1)
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", linger_ms=0, max_request_size=8 << 20
        )
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=self.fetch_max_wait_ms,
            max_partition_fetch_bytes=16 << 20,
        )
        await self.producer.start()
        await self.consumer.start()
        tp = TopicPartition(self.topic, 0)
        self.consumer.assign([tp])
        # A private, fresh topic: everything on it is for us (and "latest" is unreliable on
        # the embedded tansu broker, which misreports a partition's end offset).
        await self.consumer.seek_to_beginning(tp)
        self._reader = asyncio.create_task(self._read(), name=f"replies {self.topic}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        for client in (getattr(self, "producer", None), getattr(self, "consumer", None)):
            if client is not None:
                await client.stop()
        if self._owns_topic:
            with contextlib.suppress(Exception):  # best effort: the broker may be gone
                await delete_topics(self.bootstrap, [self.topic])

    async def _read(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=1000)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    self._receive(record, now)

    def _receive(self, record: Any, now: float) -> None:
        cid = dict(record.headers or ()).get(CORRELATION_ID, b"").decode()
        pending = self._pending.get(cid)
        if pending is None or pending.future.done():
            return
        pending.parts.append(record.value)
        if pending.expected is None:
            pending.expected = _parts(record.value)
        if len(pending.parts) >= pending.expected:
            pending.future.set_result(now)

    async def call(
        self, topic: str, body: Any, *, key: str | None = None, timeout_s: float = 10.0
    ) -> tuple[list[bytes], float]:
        """Publish `body` (JSON) to `topic`; return the reply messages and the round trip in
        ms. Raises `ReplyTimeout` when no complete reply arrives within `timeout_s` seconds."""
        cid = uuid.uuid4().hex
        pending = _Pending(asyncio.get_running_loop().create_future())
        self._pending[cid] = pending
        headers = [(REPLY_TO, self.topic.encode()), (CORRELATION_ID, cid.encode())]
        started = time.perf_counter()
        try:
            await self.producer.send_and_wait(
                topic,
                json.dumps(body).encode(),
                key=key.encode() if key else None,
                headers=headers,
            )
            done = await asyncio.wait_for(pending.future, timeout_s)
        except TimeoutError:
            raise ReplyTimeout(
                f"no complete reply on {self.topic} within {timeout_s:g} s "
                f"({len(pending.parts)} of {pending.expected or '?'} parts)"
            ) from None
        finally:
            del self._pending[cid]
        return pending.parts, (done - started) * 1000


def _parts(value: bytes) -> int:
    try:
        parts = json.loads(value).get("parts", 1)
    except (ValueError, AttributeError):
        return 1
    return parts if isinstance(parts, int) and parts >= 1 else 1


# --------------------------------------------------------------------------------------------
# Server side
# --------------------------------------------------------------------------------------------


def reply_to(delivery: Delivery) -> str | None:
    """The topic a request asks to be answered on; None when nobody waits for an answer."""
    return delivery.headers.get(REPLY_TO) or None


def reply_headers(delivery: Delivery, event_type: str) -> dict[str, str]:
    """Headers of an answer (or of an event caused by a request): the request's
    `correlation_id`, so the client matches it, and its trace context, so the trace goes on."""
    headers = {"content-type": "application/json", "event_type": event_type}
    if CORRELATION_ID in delivery.headers:
        headers[CORRELATION_ID] = delivery.headers[CORRELATION_ID]
    return headers | {k: v for k, v in delivery.headers.items() if k in TRACE_HEADERS}


def reply_outgoing(
    delivery: Delivery, event: Envelope, key: bytes | None = None
) -> Outgoing | None:
    """The answer to `delivery` carrying `event`, keyed by `key` (by default the request's
    key); None when the request names no `reply_to`."""
    topic = reply_to(delivery)
    if topic is None:
        return None
    headers = reply_headers(delivery, event.event_type)
    return Outgoing(topic, event.to_json(), delivery.key if key is None else key, headers)


async def send_replies(publisher: Publisher, replies: Sequence[Outgoing]) -> None:
    """Send replies to waiting clients, best effort.

    A client waits with a timeout: a reply topic that cannot take its reply (e.g. deleted, or
    not created where topics are not auto-created) must not stall everyone else's requests,
    so a failed reply is logged, not retried. Callers keep it from running concurrently with
    another publish of the same batch: with two produce flows in flight, the embedded broker
    (tansu) once left one produce request unanswered."""
    if not replies:
        return
    try:
        await publisher.publish_many(replies)
    except Exception as exc:
        log.warning(
            "replies not delivered",
            replies=len(replies),
            topics=sorted({r.topic for r in replies}),
            error=repr(exc),
        )
