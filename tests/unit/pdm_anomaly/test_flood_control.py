"""Flood control in the alarm book: correlated conditions of one asset grouped into one alarm,
and shelving (pure: the book, the shelf index, command parsing; the database and broker
path is tests/integration/test_alarm_flood_control.py)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from pdm_anomaly.alarms import Alarm, AlarmBook, AlarmChange, AlarmPolicy
from pdm_anomaly.handlers import CommandsProcessor
from pdm_anomaly.shelves import Shelf, ShelfIndex, check_expiry, sensor_of
from pdm_anomaly.storage import event_for
from pdm_common.delivery import PermanentError
from pdm_common.events import AlarmCommand, ShelfCommand, parse_anomaly_command
from pdm_ml.detectors.base import Score
from tests.factories import delivery

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = AlarmPolicy(clear_after=timedelta(minutes=10), group_window=timedelta(seconds=120))


def s(severity: str | None, sensor: str = "vibration", value: float = 1.0) -> Score:
    return Score("robust_z", value, 0.5, severity, {sensor: value})  # type: ignore[arg-type,unused-ignore]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def feed(book: AlarmBook, steps: Sequence[tuple[float, str, str | None]]) -> list[AlarmChange]:
    """(seconds, sensor, severity) per step, on asset p1, condition `<sensor>:robust_z`."""
    out = []
    for t, sensor, severity in steps:
        change = book.observe("p1", f"{sensor}:robust_z", s(severity, sensor), at(t), "pump")
        if change is not None:
            out.append(change)
    return out


def state(book: AlarmBook) -> list[tuple[str, tuple[str, ...], tuple[str, ...], str]]:
    return sorted((a.condition, a.conditions, a.sensors, a.severity) for a in book.open_alarms())


STORM = [
    (0, "vibration", "warning"),
    (5, "temperature", "minor"),
    (60, "pressure", "major"),
    (61, "vibration", "warning"),
    (300, "flow", "warning"),  # 5 min after the opening: a new alarm
]


def test_sensors_alarming_together_give_one_alarm_naming_them_all() -> None:
    book = AlarmBook(POLICY)
    changes = feed(book, STORM)
    assert [c.kind for c in changes] == [
        "alarm.opened",
        "alarm.joined",
        "alarm.joined",
        "alarm.opened",
    ]
    first, joined_t, joined_p, later = changes
    assert joined_t.alarm.alarm_id == joined_p.alarm.alarm_id == first.alarm.alarm_id
    group = joined_p.alarm
    assert group.conditions == ("vibration:robust_z", "temperature:robust_z", "pressure:robust_z")
    assert group.sensors == ("pressure", "temperature", "vibration")
    assert group.severity == "major"  # the worst of its conditions
    assert group.condition == "vibration:robust_z" and group.score == 1.0  # the opener's
    assert set(group.contributors) == {"vibration", "temperature", "pressure"}
    assert later.alarm.alarm_id != group.alarm_id and later.alarm.sensors == ("flow",)
    # a join is published as an escalation that names the condition that joined
    event = event_for(joined_p)
    assert event.event_type == "alarm.escalated"
    assert event.joined_condition == "pressure:robust_z"
    assert event.sensors == ["pressure", "temperature", "vibration"]
    assert event_for(first).conditions == ["vibration:robust_z"]


def test_the_same_input_gives_the_same_groups_and_duplicates_change_nothing() -> None:
    one, two = AlarmBook(POLICY), AlarmBook(POLICY)
    feed(one, STORM)
    feed(two, STORM)
    assert state(one) == state(two)
    before = state(one)
    assert [c.kind for c in feed(one, STORM[:4])] == []  # the storm again: all open already
    assert state(one) == before


def test_a_restart_rebuilds_groups_from_the_stored_alarms() -> None:
    book = AlarmBook(POLICY)
    feed(book, STORM[:3])
    [stored] = book.open_alarms()
    row = {name: getattr(stored, name) for name in stored.__slots__}
    row["conditions"], row["sensors"] = list(stored.conditions), list(stored.sensors)
    restarted = AlarmBook(POLICY, [Alarm.from_row(row)])
    # a member that alarms again stays in the group; one escalation is the group's
    again = restarted.observe("p1", "temperature:robust_z", s("critical", "temperature"), at(90))
    assert again is not None and again.kind == "alarm.escalated"
    assert again.alarm.alarm_id == stored.alarm_id and again.alarm.severity == "critical"
    assert restarted.open_alarm("p1", "pressure:robust_z") == again.alarm


def test_a_group_clears_only_when_all_its_conditions_are_quiet() -> None:
    book = AlarmBook(POLICY)
    feed(book, [(0, "vibration", "warning"), (10, "temperature", "warning")])
    # vibration quiet for over 10 min but temperature still anomalous at 400 s: open
    quiet = feed(book, [(t, "vibration", None) for t in range(20, 400, 30)])
    quiet += feed(book, [(400, "temperature", "warning")])
    quiet += feed(book, [(t, "vibration", None) for t in range(410, 900, 30)])
    assert [c.kind for c in quiet] == []
    assert feed(book, [(900, "vibration", None)]) == []  # 500 s after temperature's last
    [cleared] = feed(book, [(1000, "temperature", None)])
    assert cleared.kind == "alarm.cleared" and cleared.alarm.sensors == ("temperature", "vibration")
    assert book.open_alarms() == []
    # after clearing, a condition of the old group opens a new alarm of its own
    [new] = feed(book, [(1010, "temperature", "warning")])
    assert new.kind == "alarm.opened" and new.alarm.conditions == ("temperature:robust_z",)


def test_no_grouping_with_a_zero_window() -> None:
    book = AlarmBook(AlarmPolicy(group_window=timedelta(0)))
    kinds = [c.kind for c in feed(book, STORM[:3])]
    assert kinds == ["alarm.opened"] * 3


def shelf(sensor: str | None, start: float, end: float, asset: str = "p1") -> Shelf:
    return Shelf(uuid.uuid4(), asset, sensor, at(start), at(end))


def test_a_shelf_holds_back_new_alarms_once_per_episode_until_it_expires() -> None:
    vib = shelf("vibration", 0, 600)
    book = AlarmBook(POLICY, shelves=ShelfIndex([vib]))
    changes = feed(book, [(t, "vibration", "critical") for t in range(10, 600, 10)])
    assert [(c.kind, c.shelf_id) for c in changes] == [("alarm.suppressed", vib.shelf_id)]
    assert changes[0].alarm.condition == "vibration:robust_z"
    assert book.open_alarms() == []
    # another sensor of the same asset is not shelved
    [other] = feed(book, [(100, "temperature", "minor")])
    assert other.kind == "alarm.opened"
    # at expiry (reading time) the still-anomalous sensor alarms again, by itself (the
    # temperature alarm opened 500 s before: outside the window)
    [back] = feed(book, [(600, "vibration", "critical")])
    assert back.kind == "alarm.opened" and back.alarm.condition == "vibration:robust_z"


def test_a_new_episode_under_the_same_shelf_is_counted_again() -> None:
    book = AlarmBook(POLICY, shelves=ShelfIndex([shelf(None, 0, 7200)]))
    first = feed(book, [(10, "vibration", "major")])
    quiet = feed(book, [(t, "vibration", None) for t in range(20, 700, 60)])
    second = feed(book, [(700, "vibration", "major"), (710, "vibration", "major")])
    assert [c.kind for c in first + quiet + second] == ["alarm.suppressed", "alarm.suppressed"]


def test_an_asset_shelf_covers_every_condition_and_only_its_asset() -> None:
    index = ShelfIndex([shelf(None, 0, 60)])
    assert index.covering("p1", None, at(30)) is not None  # multivariate
    assert index.covering("p1", "flow", at(30)) is not None
    assert index.covering("p2", "flow", at(30)) is None
    assert index.covering("p1", "flow", at(-1)) is None  # before it was shelved
    assert index.covering("p1", "flow", at(60)) is None  # expired
    sensor_only = ShelfIndex([shelf("flow", 0, 60)])
    assert sensor_only.covering("p1", None, at(30)) is None
    assert sensor_of("flow:limit") == "flow" and sensor_of("multivariate") is None


def test_expiry_must_be_ahead_and_within_the_longest_shelf() -> None:
    week = timedelta(days=7)
    assert check_expiry(at(3600), at(0), week) is None
    assert check_expiry(at(0), at(0), week) == "expires_at is in the past"
    assert "longest" in str(check_expiry(at(0) + week + timedelta(seconds=1), at(0), week))


def test_commands_are_dispatched_on_their_action() -> None:
    shelve = {
        "action": "shelve",
        "asset_id": "pump-1",
        "sensor": "vibration",
        "actor": "op",
        "reason": "bearing change",
        "expires_at": "2026-01-01T12:00:00Z",
    }
    assert isinstance(parse_anomaly_command(repr_json(shelve)), ShelfCommand)
    ack = {"alarm_id": str(uuid.uuid4()), "action": "acknowledge", "actor": "op"}
    assert isinstance(parse_anomaly_command(repr_json(ack)), AlarmCommand)
    for bad, error in (
        ({k: v for k, v in shelve.items() if k != "reason"}, "shelve needs a reason"),
        ({**shelve, "reason": "  "}, "shelve needs a reason"),
        ({k: v for k, v in shelve.items() if k != "expires_at"}, "shelve needs expires_at"),
        ({**shelve, "expires_at": "2026-01-01T12:00:00"}, "timezone"),
        ({**shelve, "asset_id": "no spaces"}, "pattern"),
    ):
        with pytest.raises(ValidationError, match=error):
            parse_anomaly_command(repr_json(bad))


def test_shelve_commands_the_service_cannot_apply_are_dead_lettered_at_decode() -> None:
    processor = CommandsProcessor(None, None, shelf_max=timedelta(hours=1))  # type: ignore[arg-type,unused-ignore]
    now = datetime.now(UTC)
    good = {
        "action": "shelve",
        "asset_id": "pump-1",
        "actor": "op",
        "reason": "maintenance",
        "expires_at": (now + timedelta(minutes=30)).isoformat(),
    }
    assert isinstance(processor.decode(delivery(good)), ShelfCommand)
    unshelve = {"action": "unshelve", "asset_id": "pump-1", "actor": "op"}
    assert isinstance(processor.decode(delivery(unshelve)), ShelfCommand)
    for body, error in (
        ({**good, "expires_at": (now - timedelta(minutes=1)).isoformat()}, "expires_at is in"),
        ({**good, "expires_at": (now + timedelta(hours=2)).isoformat()}, "expires_at is more"),
        ({k: v for k, v in good.items() if k != "reason"}, "message: Value error, shelve"),
        ({**good, "action": "shelf"}, "action: "),
    ):
        with pytest.raises(PermanentError) as info:
            processor.decode(delivery(body))
        assert info.value.reason == "invalid" and str(info.value).startswith(error), info.value


def repr_json(body: Mapping[str, object]) -> bytes:
    return json.dumps(body).encode()
