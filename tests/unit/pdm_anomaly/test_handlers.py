"""The anomaly service's processors at their edges: what they refuse to decode, and how alarm
events leave the outbox (with an in-memory store and publisher; the database and broker path
is tests/integration/test_anomaly.py)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import pytest

from pdm_anomaly.alarms import AlarmBook, AlarmPolicy
from pdm_anomaly.handlers import CommandsProcessor, EventPublisher, ReadingsProcessor
from pdm_anomaly.models import detector_factory
from pdm_anomaly.storage import AlarmStore
from pdm_common.delivery import DependencyUnavailable, PermanentError
from pdm_common.events import AlarmCommand, AlarmEvent
from tests.factories import FakePublisher, alarm_event, delivery


class Outbox:
    """Stands in for `AlarmStore`'s outbox: which events were marked published."""

    def __init__(self, pending: Sequence[AlarmEvent] = ()) -> None:
        self.pending = list(pending)
        self.published: list[uuid.UUID] = []

    async def unpublished(self) -> list[AlarmEvent]:
        return list(self.pending)

    async def mark_published(self, event_ids: Sequence[uuid.UUID]) -> None:
        self.published += event_ids


def publisher_over(outbox: Outbox, publisher: FakePublisher) -> EventPublisher:
    store: AlarmStore = outbox  # type: ignore[assignment]
    return EventPublisher(store, publisher)


def test_commands_that_cannot_apply_are_refused_at_decode() -> None:
    processor = CommandsProcessor(None, None)  # type: ignore[arg-type]
    alarm_id = uuid.uuid4()
    ack = processor.decode(
        delivery({"alarm_id": str(alarm_id), "action": "acknowledge", "actor": "op"})
    )
    assert isinstance(ack, AlarmCommand) and ack.alarm_id == alarm_id
    for body, error in (
        (b"{", "message: Invalid JSON"),
        ({"alarm_id": str(alarm_id), "action": "close", "actor": "op"}, "action: "),
        ({"alarm_id": str(alarm_id), "action": "assign", "actor": "op"}, "assign needs"),
    ):
        with pytest.raises(PermanentError) as info:
            processor.decode(delivery(body))
        assert info.value.reason == "invalid" and str(info.value).startswith(error)


def test_readings_that_do_not_validate_are_refused_at_decode() -> None:
    processor = ReadingsProcessor(
        None,  # type: ignore[arg-type]  # decoding touches neither store nor events
        None,  # type: ignore[arg-type]
        AlarmBook(AlarmPolicy()),
        detectors=detector_factory(),
        limits={},
    )
    with pytest.raises(PermanentError) as info:
        processor.decode(delivery({"asset_id": "pump-1", "snapshots": []}))
    assert info.value.reason == "invalid" and str(info.value) == "source: Field required"


async def test_alarm_events_are_published_keyed_with_their_trace_then_marked() -> None:
    outbox, publisher = Outbox(), FakePublisher()
    events = [alarm_event("pump-1"), alarm_event("pump-2", "alarm.cleared")]
    trace = {"pump-1": {"traceparent": "00-a-b-01"}}
    await publisher_over(outbox, publisher).publish(events, trace)
    first, second = publisher.on("pdm.anomalies.v1")
    assert (first.key, first.value) == (b"pump-1", events[0].to_json())
    assert first.headers == {
        "content-type": "application/json",
        "event_type": "alarm.opened",
        "traceparent": "00-a-b-01",
    }
    assert second.headers == {"content-type": "application/json", "event_type": "alarm.cleared"}
    assert outbox.published == [e.event_id for e in events]


async def test_alarm_events_the_broker_cannot_take_stay_in_the_outbox_and_pause() -> None:
    outbox = Outbox([alarm_event("pump-1")])
    events = publisher_over(outbox, FakePublisher.down())
    with pytest.raises(DependencyUnavailable, match="cannot publish alarm events"):
        await events.flush_outbox()
    assert outbox.published == []
    back = FakePublisher()
    assert await publisher_over(outbox, back).flush_outbox() == 1
    assert len(back.sent) == 1 and outbox.published == [outbox.pending[0].event_id]
