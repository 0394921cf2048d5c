"""Gateway message validation: each malformed, oversized or out-of-range input has a reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from pdm_common.events import ReadingsValidated
from pdm_ingest.handlers import validated_events
from pdm_ingest.validation import InvalidReading, Limits, validate_message
from tests.factories import delivery as make_delivery

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
LIMITS = Limits(
    max_message_bytes=4096,
    max_snapshots=5,
    max_sensors=4,
    max_future=timedelta(minutes=5),
    max_age=timedelta(days=30),
    value_abs_limit=1e12,
)


def snap(**over: object) -> dict:
    base = {
        "asset_id": "pump-001",
        "ts": "2026-11-24T11:59:00Z",
        "readings": {"temperature": 65.2, "vibration": 2},
    }
    return base | over


def raw(obj: object) -> bytes:
    return json.dumps(obj).encode()


def test_single_snapshot_and_list_are_accepted():
    [one] = validate_message(raw(snap()), NOW, LIMITS)
    assert one.asset_id == "pump-001" and one.readings == {"temperature": 65.2, "vibration": 2.0}
    assert one.ts == datetime(2026, 11, 24, 11, 59, tzinfo=UTC)
    many = validate_message(
        raw([snap(), snap(asset_id="motor-7", ts="2026-11-24T12:01:00+01:00")]), NOW, LIMITS
    )
    assert [s.asset_id for s in many] == ["pump-001", "motor-7"]
    assert many[1].ts == datetime(2026, 11, 24, 11, 1, tzinfo=UTC)


def test_epoch_milliseconds_are_utc():
    [one] = validate_message(raw(snap(ts=int(NOW.timestamp() * 1000) - 1000)), NOW, LIMITS)
    assert one.ts == NOW - timedelta(seconds=1)


@pytest.mark.parametrize(
    ("payload", "reason", "fragment"),
    [
        (b"{not json", "undecodable", "Invalid JSON"),
        (b"\xff\xfe\x00", "undecodable", "Invalid JSON"),
        (b"   ", "undecodable", "empty"),
        (b"[]", "invalid", "empty list"),
        (b'"hello"', "invalid", "object"),
        (raw(snap(readings={"temperature": "65"})), "invalid", "readings.temperature"),
        (raw(snap(readings={"temperature": True})), "invalid", "readings.temperature"),
        (b'{"asset_id":"p","ts":"2026-11-24T11:59:00Z","readings":{"t":NaN}}', "invalid", "finite"),
        (
            b'{"asset_id":"p","ts":"2026-11-24T11:59:00Z","readings":{"t":Infinity}}',
            "invalid",
            "finite",
        ),
        (
            b'{"asset_id":"p","ts":"2026-11-24T11:59:00Z","readings":{"t":1e400}}',
            "invalid",
            "finite",
        ),
        (raw(snap(readings={"t": 5e12})), "value_out_of_range", "t=5000000000000.0"),
        (raw({"asset_id": "p", "readings": {"t": 1}}), "invalid", "ts: Field required"),
        (
            raw({"ts": "2026-11-24T11:59:00Z", "readings": {"t": 1}}),
            "invalid",
            "asset_id: Field required",
        ),
        (raw(snap(readings={})), "invalid", "readings"),
        (raw(snap(colour="red")), "invalid", "colour: Extra inputs are not permitted"),
        (raw(snap(asset_id="pump 001")), "invalid", "asset_id: String should match pattern"),
        (raw(snap(readings={"bad sensor!": 1})), "invalid", "readings.bad sensor!"),
        (raw(snap(ts="2026-11-24T11:59:00")), "invalid", "timezone"),
        (raw(snap(ts="2026-11-24T12:06:00Z")), "ts_out_of_range", "outside the accepted window"),
        (raw(snap(ts="2026-10-01T00:00:00Z")), "ts_out_of_range", "outside the accepted window"),
        (raw([snap()] * 6), "too_large", "6 snapshots"),
        (raw(snap(readings={f"s{i}": i for i in range(5)})), "too_large", "5 sensors"),
        (raw(snap(message_id="x" * 5000)), "too_large", "bytes; the limit is 4096"),
        (raw([snap(), snap(ts="2026-11-24T11:59:00")]), "invalid", "1.ts"),
    ],
)
def test_bad_input_is_rejected_with_reason(payload: bytes, reason: str, fragment: str):
    with pytest.raises(InvalidReading) as caught:
        validate_message(payload, NOW, LIMITS)
    assert caught.value.reason == reason
    assert fragment in str(caught.value)


def test_validated_events_group_by_asset_in_time_order_and_chunk():
    snaps = validate_message(
        raw(
            [
                snap(ts="2026-11-24T11:59:03Z"),
                snap(asset_id="m", asset_type="motor"),
                snap(ts="2026-11-24T11:59:01Z"),
                snap(ts="2026-11-24T11:59:02Z"),
            ]
        ),
        NOW,
        LIMITS,
    )
    delivery = make_delivery(
        topic="pdm.readings.v1", offset=5, headers={"traceparent": "00-ab-cd-01", "x": "y"}
    )
    events = validated_events([(delivery, snaps)], chunk=2)
    keys = [e.key for e in events]
    assert keys == [b"pump-001", b"pump-001", b"m"]
    first = json.loads(events[0].value)
    assert first["event_type"] == "readings.validated" and first["source"] == "ingest"
    assert [s["ts"] for s in first["snapshots"]] == ["2026-11-24T11:59:01Z", "2026-11-24T11:59:02Z"]
    assert json.loads(events[2].value)["asset_type"] == "motor"
    assert {"event_id", "occurred_at", "schema_version"} <= first.keys()
    assert events[0].headers["traceparent"] == "00-ab-cd-01" and "x" not in events[0].headers
    # what ingest publishes is valid against its own contract
    ReadingsValidated.model_validate_json(events[0].value)
