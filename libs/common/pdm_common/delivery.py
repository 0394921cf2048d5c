"""The one retry / dead-letter mechanism every consumer uses.

A consumer hands a batch of Kafka records to `ReliableBatchHandler.handle`; typed exceptions
decide each message's fate:

* `PermanentError` (undecodable, invalid, rejected): straight to `<topic>.dlq`, with headers
  naming the error, the service, the original topic/partition/offset and the first-seen time.
* `TransientError`: the batch is retried in process with exponential back-off and
  jitter; if it still fails its messages are republished to `<topic>.retry` with an attempt
  counter and a not-before time, and after `retry_topic_attempts` deliveries they go to the DLQ.
* `DependencyUnavailable` (database or broker down): nothing is the message's fault, so the
  consumer *pauses*: it retries in place until the dependency is back, commits nothing and
  fetches nothing meanwhile (backpressure), and never dead-letters.

The caller commits offsets only after `handle` returns, i.e. after every side effect (database
commit, downstream publish, DLQ/retry publish) is durable. A crash anywhere means redelivery,
never loss; processors are idempotent so redelivery is harmless.

Processors share the helpers that map onto these fates, so that every service decodes, builds
events and publishes them the same way: `decode_json` (an undecodable message is permanent),
`event_outgoing` (an event with its content type, type and carried headers) and
`publish_or_pause` (a broker that cannot take a batch's events pauses the consumer).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

import structlog
from pydantic import BaseModel, ValidationError

from pdm_common import topics
from pdm_common.events import Envelope, describe_validation
from pdm_common.telemetry import TRACE_HEADERS, metrics

log = structlog.get_logger(__name__)

# Header names (all values are strings).
H_ERROR = "pdm-error"
H_ERROR_TYPE = "pdm-error-type"
H_REASON = "pdm-reason"
H_SERVICE = "pdm-service"
H_ORIGINAL_TOPIC = "pdm-original-topic"
H_ORIGINAL_PARTITION = "pdm-original-partition"
H_ORIGINAL_OFFSET = "pdm-original-offset"
H_FIRST_SEEN = "pdm-first-seen"
H_FAILED_AT = "pdm-failed-at"
H_ATTEMPT = "pdm-attempt"
H_NOT_BEFORE = "pdm-not-before"
H_TRUNCATED = "pdm-truncated-from"
H_REPLAYED_FROM = "pdm-replayed-from"
DELIVERY_HEADERS = frozenset(
    {
        H_ERROR,
        H_ERROR_TYPE,
        H_REASON,
        H_SERVICE,
        H_ORIGINAL_TOPIC,
        H_ORIGINAL_PARTITION,
        H_ORIGINAL_OFFSET,
        H_FIRST_SEEN,
        H_FAILED_AT,
        H_ATTEMPT,
        H_NOT_BEFORE,
        H_TRUNCATED,
        H_REPLAYED_FROM,
    }
)
MAX_ERROR_TEXT = 2000


class DeliveryError(Exception):
    """Base of the errors that decide a message's fate. `reason` is a short stable code."""

    reason = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class PermanentError(DeliveryError):
    """The message itself is bad; retrying cannot help: dead-letter it at once."""

    reason = "permanent"


class TransientError(DeliveryError):
    """May succeed later: retry in process, then through `<topic>.retry`, then DLQ."""

    reason = "transient"


class DependencyUnavailable(TransientError):
    """A dependency every message needs is down: pause and retry in place, never DLQ."""

    reason = "dependency_unavailable"


@dataclass(slots=True)
class Delivery:
    """One consumed record, detached from the client library."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]
    timestamp_ms: int

    @classmethod
    def from_record(cls, record: Any) -> Delivery:
        """Build from an aiokafka `ConsumerRecord` (bad header bytes are kept, escaped)."""
        headers = {k: v.decode("utf-8", "backslashreplace") for k, v in record.headers or ()}
        return cls(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value or b"",
            headers=headers,
            timestamp_ms=record.timestamp,
        )

    @property
    def origin_topic(self) -> str:
        """The topic the message was first published to (not its retry companion)."""
        if H_ORIGINAL_TOPIC in self.headers:
            return self.headers[H_ORIGINAL_TOPIC]
        return self.topic.removesuffix(topics.RETRY_SUFFIX)

    @property
    def attempt(self) -> int:
        """How many times the message has gone through `<topic>.retry` already."""
        try:
            return int(self.headers.get(H_ATTEMPT, "0"))
        except ValueError:
            return 0

    @property
    def not_before(self) -> float:
        try:
            return float(self.headers.get(H_NOT_BEFORE, "0"))
        except ValueError:
            return 0.0

    def origin_headers(self) -> dict[str, str]:
        """Where the message came from, kept across retry hops."""
        return {
            H_ORIGINAL_TOPIC: self.origin_topic,
            H_ORIGINAL_PARTITION: self.headers.get(H_ORIGINAL_PARTITION, str(self.partition)),
            H_ORIGINAL_OFFSET: self.headers.get(H_ORIGINAL_OFFSET, str(self.offset)),
            H_FIRST_SEEN: self.headers.get(
                H_FIRST_SEEN, _iso(self.timestamp_ms / 1000 if self.timestamp_ms else time.time())
            ),
        }

    def user_headers(self) -> dict[str, str]:
        return {k: v for k, v in self.headers.items() if k not in DELIVERY_HEADERS}

    def trace_context(self) -> dict[str, str]:
        """The W3C trace context the message carries: an event derived from it carries it on,
        so the trace continues across the hop (the publisher parents its span there)."""
        return {k: v for k, v in self.headers.items() if k in TRACE_HEADERS}


@dataclass(slots=True)
class Failure:
    delivery: Delivery
    error: DeliveryError


@dataclass(slots=True)
class Outgoing:
    """A message to publish: where, key, value and headers."""

    topic: str
    value: bytes
    key: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


class Publisher(Protocol):
    async def publish_many(self, messages: Sequence[Outgoing]) -> None:
        """Publish and wait until the broker acknowledged every message."""


T = TypeVar("T")


class BatchProcessor(Protocol[T]):
    """The service-specific part: decode one message, process a batch of decoded ones."""

    def decode(self, delivery: Delivery) -> T:
        """Parse and validate; raise `PermanentError` for a message that can never succeed."""

    async def process(self, items: Sequence[tuple[Delivery, T]]) -> Sequence[Failure]:
        """Apply the side effects durably; return per-message failures, raise for the batch."""


# --------------------------------------------------------------------------------------------
# What processors share: decoding, building events, publishing them
# --------------------------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


def decode_json(delivery: Delivery, model: type[M]) -> M:
    """The message's JSON value as a `model`, or `PermanentError` (reason `invalid`) naming
    the first problem as `where: what`: a message that does not parse or validate never will,
    so it is dead-lettered at once, with a reason the operator can act on."""
    try:
        return model.model_validate_json(delivery.value)
    except ValidationError as exc:
        raise PermanentError(describe_validation(exc), reason="invalid") from None


def event_outgoing(
    topic: str,
    event: BaseModel,
    key: str | bytes | None,
    headers: Mapping[str, str] | None = None,
) -> Outgoing:
    """`event` as a JSON message on `topic`, keyed (the key picks the partition, so one key's
    events stay in order).

    Headers: the content type; the `event_type` of a platform event (`Envelope`), so that
    consumers such as the gateway's live stream can tell events apart without decoding them;
    then `headers`, what the event carries on from the message it derives from (trace
    context, correlation id).
    """
    out = {"content-type": "application/json"}
    if isinstance(event, Envelope):
        out["event_type"] = event.event_type
        value = event.to_json()
    else:
        value = event.model_dump_json().encode()
    if headers:
        out.update(headers)
    return Outgoing(topic, value, key.encode() if isinstance(key, str) else key, out)


async def publish_or_pause(publisher: Publisher, messages: Sequence[Outgoing], what: str) -> None:
    """Publish the events a batch produced and wait for every ack, or raise
    `DependencyUnavailable`.

    Offsets are committed only once these events are acknowledged. A broker that cannot take
    them is no message's fault, so the consumer pauses and processes the batch again once the
    broker is back (processors are idempotent), rather than retrying or dead-lettering the
    messages. `what` names the events in the error ("cannot publish <what>: ...").
    """
    if not messages:
        return
    try:
        await publisher.publish_many(messages)
    except Exception as exc:
        raise DependencyUnavailable(f"cannot publish {what}: {exc!r}") from exc


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    in_process_attempts: int = 3
    topic_attempts: int = 5
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 30.0
    pause_max_s: float = 5.0
    max_value_bytes: int = 1_048_576

    @classmethod
    def from_settings(cls, settings: Any) -> RetryPolicy:
        return cls(
            in_process_attempts=settings.retry_in_process_attempts,
            topic_attempts=settings.retry_topic_attempts,
            backoff_initial_s=settings.retry_backoff_initial_s,
            backoff_max_s=settings.retry_backoff_max_s,
            pause_max_s=settings.retry_pause_max_s,
            max_value_bytes=settings.kafka_max_message_bytes,
        )

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Exponential back-off with equal jitter for the `attempt`-th retry (0-based)."""
        ceiling = min(self.backoff_max_s, self.backoff_initial_s * (2**attempt))
        return (rng or random).uniform(ceiling / 2, ceiling)

    def pause_delay(self, pauses: int) -> float:
        """Wait before re-checking a dependency that is down: grows, capped low to resume fast."""
        return min(self.pause_max_s, self.backoff(min(pauses, 30)))

    def topic_delay(self, attempt: int) -> float:
        """Delay before the `attempt`-th delivery through the retry topic (1-based)."""
        return min(
            self.backoff_max_s,
            self.backoff_initial_s * 2 ** (self.in_process_attempts + attempt - 1),
        )


@dataclass(slots=True)
class Prepared(Generic[T]):
    """A batch after decoding: what decoded, and what already failed."""

    deliveries: list[Delivery]
    decoded: list[tuple[Delivery, T]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


@dataclass(slots=True)
class BatchReport:
    """What happened to one batch (for logs, metrics and tests)."""

    processed: int = 0
    dead_lettered: int = 0
    retried: int = 0
    pauses: int = 0
    in_process_retries: int = 0


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat()


def dead_letter(delivery: Delivery, error: DeliveryError, service: str, max_bytes: int) -> Outgoing:
    """The DLQ message for `delivery`: the original bytes and key, plus why and whence."""
    headers = delivery.user_headers() | delivery.origin_headers()
    value = delivery.value
    if len(value) > max_bytes:
        # The producer could not publish it whole; keep a prefix and say how large it was.
        headers[H_TRUNCATED] = str(len(value))
        value = value[:max_bytes]
    headers |= {
        H_ERROR: str(error)[:MAX_ERROR_TEXT],
        H_ERROR_TYPE: type(error).__name__,
        H_REASON: error.reason,
        H_SERVICE: service,
        H_FAILED_AT: _iso(time.time()),
        H_ATTEMPT: str(delivery.attempt),
    }
    return Outgoing(topics.dlq_topic(delivery.origin_topic), value, delivery.key, headers)


def retry_later(
    delivery: Delivery, error: DeliveryError, service: str, policy: RetryPolicy
) -> Outgoing:
    """The `<topic>.retry` message for `delivery`, or its DLQ message once attempts run out."""
    attempt = delivery.attempt + 1
    if attempt > policy.topic_attempts:
        exhausted = TransientError(
            f"gave up after {delivery.attempt} retry-topic attempts: {error}", reason=error.reason
        )
        return dead_letter(delivery, exhausted, service, policy.max_value_bytes)
    headers = delivery.user_headers() | delivery.origin_headers()
    headers |= {
        H_ATTEMPT: str(attempt),
        H_NOT_BEFORE: f"{time.time() + policy.topic_delay(attempt):.3f}",
        H_ERROR: str(error)[:MAX_ERROR_TEXT],
        H_ERROR_TYPE: type(error).__name__,
        H_REASON: error.reason,
        H_SERVICE: service,
    }
    return Outgoing(
        topics.retry_topic(delivery.origin_topic), delivery.value, delivery.key, headers
    )


class ReliableBatchHandler(Generic[T]):
    """Runs a `BatchProcessor` over a batch with the platform's retry/DLQ semantics."""

    def __init__(
        self,
        processor: BatchProcessor[T],
        publisher: Publisher,
        *,
        service: str,
        policy: RetryPolicy,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_pause: Callable[[bool], None] | None = None,
    ) -> None:
        self.processor = processor
        self.publisher = publisher
        self.service = service
        self.policy = policy
        self._sleep = sleep
        self._on_pause = on_pause or (lambda paused: None)

    async def handle(self, deliveries: Sequence[Delivery]) -> BatchReport:
        """Decode, process, route failures; returns once every side effect is durable."""
        return await self.finish(await self.prepare(deliveries))

    async def prepare(self, deliveries: Sequence[Delivery]) -> Prepared[T]:
        """The CPU part: wait for retry-topic not-before times, then decode and validate."""
        prepared: Prepared[T] = Prepared(list(deliveries))
        if not deliveries:
            return prepared
        await self._wait_not_before(deliveries)
        for delivery in deliveries:
            try:
                prepared.decoded.append((delivery, self.processor.decode(delivery)))
            except DeliveryError as exc:
                prepared.failures.append(Failure(delivery, exc))
            except Exception as exc:  # a decoder bug must not lose the message either
                log.exception("decode crashed", topic=delivery.topic, offset=delivery.offset)
                prepared.failures.append(
                    Failure(delivery, PermanentError(f"decoder crashed: {exc!r}"))
                )
        return prepared

    async def finish(self, prepared: Prepared[T]) -> BatchReport:
        """The I/O part: process with retries/pauses, publish retry/DLQ messages, count."""
        report = BatchReport()
        deliveries = prepared.deliveries
        if not deliveries:
            return report
        failures = list(prepared.failures)
        if prepared.decoded:
            failures += await self._process_with_retries(prepared.decoded, report)
        outgoing = [self._route(f, report) for f in failures]
        await self._publish_until_acked(outgoing, report)
        report.processed = len(deliveries) - report.dead_lettered - report.retried
        topic = deliveries[0].origin_topic
        metrics.messages.labels(self.service, topic, "ok").inc(report.processed)
        if report.dead_lettered:
            metrics.messages.labels(self.service, topic, "dlq").inc(report.dead_lettered)
        if report.retried:
            metrics.messages.labels(self.service, topic, "retry").inc(report.retried)
        return report

    async def _wait_not_before(self, deliveries: Sequence[Delivery]) -> None:
        """Retry-topic records carry a not-before time; wait for the latest in the batch."""
        due = max(d.not_before for d in deliveries)
        delay = min(due - time.time(), self.policy.backoff_max_s * 2)
        if delay > 0:
            await self._sleep(delay)

    async def _process_with_retries(
        self, decoded: list[tuple[Delivery, T]], report: BatchReport
    ) -> list[Failure]:
        attempt = 0
        pauses = 0
        while True:
            try:
                result = list(await self.processor.process(decoded))
            except DependencyUnavailable as exc:
                pauses += 1
                report.pauses += 1
                self._on_pause(True)
                delay = self.policy.pause_delay(pauses)
                log.warning(
                    "dependency unavailable: consumer paused, nothing committed",
                    error=str(exc),
                    pause=pauses,
                    retry_in_s=round(delay, 2),
                )
                await self._sleep(delay)
                continue
            except Exception as exc:
                error = exc if isinstance(exc, TransientError) else TransientError(repr(exc))
                if not isinstance(exc, TransientError):
                    log.exception("batch processing crashed; treated as transient")
                attempt += 1
                if attempt >= self.policy.in_process_attempts:
                    log.warning("batch failed after in-process retries", error=str(error))
                    return [Failure(d, error) for d, _ in decoded]
                report.in_process_retries += 1
                await self._sleep(self.policy.backoff(attempt))
                continue
            if pauses:
                self._on_pause(False)
                log.info("dependency back: consumer resumed", pauses=pauses)
            return result

    def _route(self, failure: Failure, report: BatchReport) -> Outgoing:
        d, error = failure.delivery, failure.error
        if isinstance(error, TransientError):
            out = retry_later(d, error, self.service, self.policy)
        else:
            out = dead_letter(d, error, self.service, self.policy.max_value_bytes)
        if out.topic.endswith(topics.DLQ_SUFFIX):
            report.dead_lettered += 1
            log.warning(
                "message dead-lettered",
                topic=d.topic,
                partition=d.partition,
                offset=d.offset,
                reason=error.reason,
                error=str(error)[:300],
                dlq=out.topic,
                correlation_id=d.headers.get("correlation_id"),
            )
        else:
            report.retried += 1
            log.info(
                "message sent to retry topic",
                correlation_id=d.headers.get("correlation_id"),
                topic=d.topic,
                offset=d.offset,
                attempt=out.headers[H_ATTEMPT],
                reason=error.reason,
            )
        return out

    async def _publish_until_acked(self, outgoing: list[Outgoing], report: BatchReport) -> None:
        """DLQ/retry publishes are side effects too: without their ack nothing is committed."""
        pauses = 0
        while outgoing:
            try:
                await self.publisher.publish_many(outgoing)
                return
            except Exception as exc:
                pauses += 1
                report.pauses += 1
                delay = self.policy.pause_delay(pauses)
                log.warning(
                    "cannot publish to retry/DLQ topic; pausing",
                    error=repr(exc),
                    retry_in_s=round(delay, 2),
                )
                await self._sleep(delay)
