"""Builders the unit tests share: messages as processors receive them (`delivery`) and as the
Kafka client yields them (`consumer_record`), an in-memory publisher, a retry/DLQ handler that
records its back-off instead of sleeping, and the events several tests need.

One definition of each, so that a change to `Delivery`, `Publisher` or an event contract is
made once rather than in every test file's private copy.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiokafka.structs import ConsumerRecord
from pydantic import BaseModel

from pdm_common.delivery import (
    BatchProcessor,
    Delivery,
    Outgoing,
    ReliableBatchHandler,
    RetryPolicy,
)
from pdm_common.events import AlarmEvent, Prediction, PredictionRequest

T = TypeVar("T")
Body = bytes | BaseModel | Mapping[str, Any] | Sequence[Any]

TOPIC = "pdm.test.v1"
#: A record timestamp (CreateTime, ms): 2023-11-14T22:13:20Z.
TIMESTAMP_MS = 1_700_000_000_000
#: Retries and pauses in milliseconds, for handlers whose tests do not check the back-off.
QUICK_POLICY = RetryPolicy(backoff_initial_s=0.001, backoff_max_s=0.01, pause_max_s=0.01)


# --------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------


def payload(body: Body) -> bytes:
    """A message value: bytes as they are, a model as its JSON, anything else `json.dumps`."""
    if isinstance(body, bytes):
        return body
    if isinstance(body, BaseModel):
        return body.model_dump_json().encode()
    return json.dumps(body).encode()


def _key(key: str | bytes | None) -> bytes | None:
    return key.encode() if isinstance(key, str) else key


def delivery(
    body: Body = b"",
    *,
    topic: str = TOPIC,
    partition: int = 0,
    offset: int = 0,
    key: str | bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timestamp_ms: int = 0,
) -> Delivery:
    """One consumed message, as `ReliableBatchHandler` hands it to a processor."""
    return Delivery(
        topic, partition, offset, _key(key), payload(body), dict(headers or {}), timestamp_ms
    )


def consumer_record(
    body: Body = b"",
    *,
    topic: str = TOPIC,
    partition: int = 0,
    offset: int = 0,
    key: str | bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timestamp_ms: int = 0,
) -> ConsumerRecord[bytes, bytes]:
    """One record as aiokafka yields it (header values are bytes), for code that reads the
    client's records itself (`Delivery.from_record`, a reply client)."""
    key_bytes, value = _key(key), payload(body)
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=timestamp_ms,
        timestamp_type=0,
        key=key_bytes,
        value=value,
        checksum=None,
        serialized_key_size=len(key_bytes or b""),
        serialized_value_size=len(value),
        headers=[(k, v.encode()) for k, v in (headers or {}).items()],
    )


# --------------------------------------------------------------------------------------------
# Publishing and handling
# --------------------------------------------------------------------------------------------


class FakePublisher:
    """`delivery.Publisher` in memory: keeps what was published, in order. The first
    `failures` calls raise `error` instead (a broker that is down, then back)."""

    def __init__(self, failures: int = 0, error: Exception | None = None) -> None:
        self.sent: list[Outgoing] = []
        self.failures = failures
        self.error = error or ConnectionError("broker down")
        self.calls = 0

    @classmethod
    def down(cls, error: Exception | None = None) -> FakePublisher:
        """A publisher every call of which fails (with `error`, if given)."""
        return cls(sys.maxsize, error)

    async def publish_many(self, messages: Sequence[Outgoing]) -> None:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise self.error
        self.sent += messages

    def on(self, topic: str) -> list[Outgoing]:
        """The messages published to `topic`."""
        return [m for m in self.sent if m.topic == topic]


class Sleeps:
    """Stands in for `asyncio.sleep`: records each delay and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def reliable(
    processor: BatchProcessor[T],
    publisher: FakePublisher,
    *,
    service: str = "test",
    policy: RetryPolicy = QUICK_POLICY,
    sleep: Sleeps | None = None,
    on_pause: Callable[[bool], None] | None = None,
) -> ReliableBatchHandler[T]:
    """The platform's retry/DLQ handler around `processor`, never really sleeping."""
    return ReliableBatchHandler(
        processor,
        publisher,
        service=service,
        policy=policy,
        sleep=sleep or Sleeps(),
        on_pause=on_pause,
    )


# --------------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------------


def alarm_event(
    asset_id: str = "m-1",
    event_type: str = "alarm.opened",
    asset_type: str | None = "milling",
    **fields: Any,
) -> AlarmEvent:
    """An alarm event as the anomaly service publishes it (a fresh alarm id each time)."""
    values: dict[str, Any] = {
        "source": "anomaly",
        "event_type": event_type,
        "alarm_id": uuid.uuid4(),
        "asset_id": asset_id,
        "asset_type": asset_type,
        "condition": "torque:level",
        "severity": "major",
        "detector": "univariate",
        "score": 1.0,
        "threshold": 0.5,
        "opened_at": datetime.now(UTC),
    }
    return AlarmEvent.model_validate(values | fields)


def prediction(request: PredictionRequest, **fields: Any) -> Prediction:
    """A prediction answering `request` (its asset, type, id and trigger)."""
    values: dict[str, Any] = {
        "source": "test",
        "asset_id": request.asset_id,
        "asset_type": request.asset_type,
        "request_id": request.request_id,
        "trigger": request.trigger,
        "health_score": 90.0,
        "health_formula": "f",
        "confidence": 1.0,
    }
    return Prediction.model_validate(values | fields)
