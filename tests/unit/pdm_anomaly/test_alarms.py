"""The alarm lifecycle state machine: open, escalate, clear with hysteresis, no storms."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pdm_anomaly.alarms import AlarmBook, AlarmPolicy
from pdm_ml.detectors.base import Score
from pdm_ml.detectors.limits import ISO_10816_ZONES, Limit, load_limits, vibration_limit

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = AlarmPolicy(clear_after=timedelta(minutes=10))


def s(severity: str | None, value: float = 1.0) -> Score:
    return Score("robust_z", value, 0.5, severity, {"vibration": 1.0})  # type: ignore[arg-type]


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_opens_escalates_and_clears_after_quiet_period():
    book = AlarmBook(POLICY)
    opened = book.observe("p1", "vibration:robust_z", s("warning"), at(0))
    assert opened is not None and opened.kind == "alarm.opened"
    assert opened.alarm.severity == "warning" and opened.alarm.contributors == {"vibration": 1.0}
    assert book.observe("p1", "vibration:robust_z", s("warning"), at(1)) is None
    esc = book.observe("p1", "vibration:robust_z", s("major", 3.0), at(2))
    assert esc is not None and esc.kind == "alarm.escalated" and esc.alarm.severity == "major"
    assert esc.alarm.alarm_id == opened.alarm.alarm_id
    # lower severity never de-escalates an open alarm
    assert book.observe("p1", "vibration:robust_z", s("warning"), at(3)) is None
    assert book.open_alarm("p1", "vibration:robust_z").severity == "major"  # type: ignore[union-attr]
    # quiet, but not long enough
    assert book.observe("p1", "vibration:robust_z", s(None), at(12)) is None
    cleared = book.observe("p1", "vibration:robust_z", s(None), at(13))
    assert cleared is not None and cleared.kind == "alarm.cleared"
    assert cleared.alarm.cleared_at == at(13)
    assert book.open_alarm("p1", "vibration:robust_z") is None


def test_flapping_input_gives_one_alarm_not_a_storm():
    book = AlarmBook(POLICY)
    changes = [
        book.observe("p1", "t:robust_z", s("warning" if i % 2 else None), at(i * 0.5))
        for i in range(200)  # 100 minutes of on/off every 30 s
    ]
    kinds = [c.kind for c in changes if c is not None]
    assert kinds == ["alarm.opened"]
    # once it stops flapping, one clear after the quiet period
    tail = [book.observe("p1", "t:robust_z", s(None), at(100 + i)) for i in range(15)]
    assert [c.kind for c in tail if c is not None] == ["alarm.cleared"]


def test_one_alarm_per_asset_and_condition():
    book = AlarmBook(AlarmPolicy(clear_after=timedelta(minutes=10), group_window=timedelta(0)))
    a = book.observe("p1", "t:robust_z", s("warning"), at(0))
    b = book.observe("p2", "t:robust_z", s("warning"), at(0))
    c = book.observe("p1", "v:robust_z", s("warning"), at(0))
    assert a and b and c
    assert len({a.alarm.alarm_id, b.alarm.alarm_id, c.alarm.alarm_id}) == 3
    assert len(book.open_alarms()) == 3
    # with grouping (the default), p1's second condition joins p1's alarm instead
    grouped = AlarmBook(POLICY)
    first = grouped.observe("p1", "t:robust_z", s("warning"), at(0))
    joined = grouped.observe("p1", "v:robust_z", s("warning"), at(0))
    assert first and joined and joined.kind == "alarm.joined"
    assert joined.alarm.alarm_id == first.alarm.alarm_id and len(grouped.open_alarms()) == 1


def test_open_after_requires_consecutive_anomalies():
    book = AlarmBook(AlarmPolicy(clear_after=timedelta(minutes=10), open_after=3))
    assert book.observe("p1", "t", s("warning"), at(0)) is None
    assert book.observe("p1", "t", s("warning"), at(1)) is None
    assert book.observe("p1", "t", s(None), at(2)) is None  # streak broken
    assert book.observe("p1", "t", s("warning"), at(3)) is None
    assert book.observe("p1", "t", s("warning"), at(4)) is None
    change = book.observe("p1", "t", s("warning"), at(5))
    assert change is not None and change.kind == "alarm.opened"


def test_restored_alarm_is_not_reopened_and_touched_alarms_are_reported():
    first = AlarmBook(POLICY)
    opened = first.observe("p1", "t", s("minor"), at(0))
    assert opened is not None
    second = AlarmBook(POLICY, [opened.alarm])  # a restart rebuilt from the database
    assert second.observe("p1", "t", s("minor"), at(5)) is None
    [touched] = second.take_touched()
    assert touched.last_anomalous_at == at(5)
    assert second.take_touched() == []
    # the quiet period counts from the last anomalous reading, also across the restart
    assert second.observe("p1", "t", s(None), at(14)) is None
    assert second.observe("p1", "t", s(None), at(15)).kind == "alarm.cleared"  # type: ignore[union-attr]


def test_iso_10816_vibration_zones():
    lim = vibration_limit("vibration", "II")
    bc, cd = ISO_10816_ZONES["II"]
    assert lim.check(bc - 0.01).severity is None
    assert lim.check(bc).severity == "major"
    assert lim.check(cd + 1).severity == "critical"
    assert lim.check(cd + 1).threshold == cd


def test_low_and_high_bands_and_json_overrides(tmp_path):
    lim = Limit("pressure", (("major", 2e5, 9e5), ("critical", 1e5, 1e6)))
    assert lim.check(5e5).severity is None
    assert lim.check(1.5e5).severity == "major"
    assert lim.check(0.5e5).severity == "critical"
    assert lim.check(9.5e5).severity == "major"
    spec = tmp_path / "limits.json"
    spec.write_text(
        '{"pump": {"vibration": {"iso10816_class": "IV"}, '
        '"flow": {"bands": [["minor", 1.0, null]]}}}'
    )
    limits = load_limits(spec)
    assert limits["pump"]["vibration"].check(ISO_10816_ZONES["IV"][0]).severity == "major"
    assert limits["pump"]["flow"].check(0.5).severity == "minor"
    assert "motor" in limits  # defaults kept
