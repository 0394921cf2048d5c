"""The alarm lifecycle, as a pure state machine over detector scores.

One alarm per (asset, condition). It opens when a detector crosses its threshold, escalates
when severity rises (info < warning < minor < major < critical) and clears only after the
condition has been quiet for `clear_after_s` of *reading* time (hysteresis). A flapping
detector therefore produces one alarm that stays open, not an open/clear storm; severity
never de-escalates while open (the operator sees the worst it got). An asset that stops
sending data keeps its alarm open: silence is not health.

Flood control (ISA-18.2 / EEMUA 191): a condition of an asset that goes into alarm within
`group_window` (reading time) of the opening of an alarm already open on that asset joins it
instead of opening its own; the group clears once all its conditions have been quiet for
`clear_after`. A shelf (`pdm_anomaly.shelves`) covering a condition keeps it from opening or
joining an alarm; each held-back episode is reported once ("alarm.suppressed").

Time is the readings' time, never the wall clock, so replaying a stream (or restarting
mid-stream) makes the same decisions.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from pdm_anomaly.shelves import Shelf, ShelfIndex, sensor_of
from pdm_common.events import AlarmEvent, AlarmFields, Severity
from pdm_ml.detectors.base import Score, severity_rank

#: "alarm.joined" is published as `alarm.escalated` with `joined_condition`; "alarm.suppressed"
#: is not published (it is counted on the shelf).
ChangeKind = Literal[
    "alarm.opened", "alarm.escalated", "alarm.cleared", "alarm.joined", "alarm.suppressed"
]


#: The alarm's fields as the contract (`pdm_common.events.AlarmFields`) defines them: the
#: conversions below copy exactly these, so a field added there is carried everywhere.
CONTRACT_FIELDS: tuple[str, ...] = tuple(AlarmFields.model_fields)


@dataclass(frozen=True, slots=True)
class Alarm:
    """The anomaly service's working copy of an alarm. A slotted dataclass, not the pydantic
    contract: the book creates or replaces one on every anomalous reading, where validation
    would cost the hot path. It holds the contract's fields (checked at import) plus the
    lifecycle times the service decides on; `to_event` and `from_row` follow the contract's
    field list rather than restating it."""

    alarm_id: uuid.UUID
    asset_id: str
    condition: str
    severity: Severity
    detector: str
    score: float
    threshold: float
    opened_at: datetime
    last_anomalous_at: datetime
    asset_type: str | None = None
    contributors: dict[str, float] = field(default_factory=dict)
    model_name: str | None = None
    model_version: str | None = None
    cleared_at: datetime | None = None
    #: flood control: the conditions this alarm stands for (the opening one first) and their
    #: sensors, sorted; the book always fills them
    conditions: tuple[str, ...] = ()
    sensors: tuple[str, ...] = ()

    @property
    def is_open(self) -> bool:
        return self.cleared_at is None

    def to_event(
        self,
        source: str,
        kind: str,
        reading_ts: datetime | None = None,
        *,
        actor: str | None = None,
        assignee: str | None = None,
        note: str | None = None,
        joined_condition: str | None = None,
    ) -> AlarmEvent:
        """The `AlarmEvent` of a change of this alarm (`kind`: its `event_type`)."""
        return AlarmEvent(
            **{name: getattr(self, name) for name in CONTRACT_FIELDS},
            source=source,
            event_type=kind,
            reading_ts=reading_ts,
            actor=actor,
            assignee=assignee,
            note=note,
            joined_condition=joined_condition,
        )

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Alarm:
        """An alarm from a row of `alarms` (the columns are the contract's field names)."""
        values = {name: row[name] for name in CONTRACT_FIELDS}
        values["contributors"] = dict(values["contributors"] or {})
        values["conditions"] = tuple(values["conditions"] or (values["condition"],))
        values["sensors"] = tuple(values["sensors"] or sensors_of(values["conditions"]))
        return cls(
            **values,
            last_anomalous_at=row["last_anomalous_at"],
            cleared_at=row.get("cleared_at"),
        )


_missing = set(CONTRACT_FIELDS) - {f.name for f in fields(Alarm)}
if _missing:  # fail at import, not on the first alarm, when the contract gains a field
    raise TypeError(f"pdm_anomaly.alarms.Alarm lacks the contract's fields {sorted(_missing)}")


def sensors_of(conditions: tuple[str, ...]) -> tuple[str, ...]:
    """The distinct sensors a group of conditions names, sorted."""
    return tuple(sorted({s for c in conditions if (s := sensor_of(c)) is not None}))


def _merged(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """Contributors of a group: every sensor that contributed, at its largest weight."""
    out = dict(a)
    for k, v in b.items():
        out[k] = max(v, out.get(k, v))
    return out


@dataclass(frozen=True, slots=True)
class AlarmChange:
    kind: ChangeKind
    alarm: Alarm
    reading_ts: datetime
    #: "alarm.joined": the condition that joined `alarm`; "alarm.suppressed": the condition
    joined: str | None = None
    #: "alarm.suppressed": the shelf that held the would-be `alarm` back
    shelf_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class AlarmPolicy:
    clear_after: timedelta = timedelta(minutes=10)
    #: anomalous evaluations in a row needed to open (1 = open on the first)
    open_after: int = 1
    #: a new condition of an asset joins the asset's alarm opened this close to it (reading
    #: time) instead of opening its own; zero: no grouping
    group_window: timedelta = timedelta(seconds=120)


@dataclass(slots=True)
class _Pending:
    streak: int = 0


class AlarmBook:
    """Open alarms of the assets this consumer owns, and the decisions about them."""

    def __init__(
        self,
        policy: AlarmPolicy,
        open_alarms: list[Alarm] | None = None,
        shelves: ShelfIndex | None = None,
    ) -> None:
        self.policy = policy
        self.shelves = shelves if shelves is not None else ShelfIndex()
        #: open alarms by (asset, the condition that opened them)
        self._open: dict[tuple[str, str], Alarm] = {}
        #: (asset, condition that joined a group) -> the key of the group's alarm
        self._member_of: dict[tuple[str, str], tuple[str, str]] = {}
        #: asset -> conditions that opened its open alarms (candidates to join)
        self._heads: dict[str, set[str]] = {}
        self._pending: dict[tuple[str, str], _Pending] = {}
        #: conditions held back by a shelf -> their last anomalous time (one report per
        #: episode; an episode ends after `clear_after` of quiet, as an alarm would)
        self._held: dict[tuple[str, str], datetime] = {}
        #: open alarms whose `last_anomalous_at` moved without an event (persisted per batch,
        #: so a restart clears them at the right time)
        self.touched: set[tuple[str, str]] = set()
        self.restore(open_alarms or [])

    def restore(self, open_alarms: list[Alarm]) -> None:
        """Adopt open alarms from the database (start-up, rebalance); memory wins if newer.
        Groups come back with them: the conditions that joined map to their alarm again."""
        for alarm in open_alarms:
            key = (alarm.asset_id, alarm.condition)
            if self._open.setdefault(key, alarm) is not alarm:
                continue
            self._heads.setdefault(alarm.asset_id, set()).add(alarm.condition)
            for condition in alarm.conditions:
                if condition != alarm.condition:
                    self._member_of[(alarm.asset_id, condition)] = key

    def open_alarm(self, asset_id: str, condition: str) -> Alarm | None:
        """The open alarm a condition is part of (its own, or the group it joined)."""
        key = (asset_id, condition)
        return self._open.get(self._member_of.get(key, key))

    def open_alarms(self) -> list[Alarm]:
        return list(self._open.values())

    def take_touched(self) -> list[Alarm]:
        """Open alarms to persist `last_anomalous_at` for; resets the set."""
        alarms = [self._open[k] for k in self.touched if k in self._open]
        self.touched.clear()
        return alarms

    def forget_asset(self, asset_id: str) -> None:
        """Drop an asset's state (its partition moved to another consumer)."""
        for table in (self._open, self._pending, self._member_of, self._held):
            for key in [k for k in table if k[0] == asset_id]:
                del table[key]
        self._heads.pop(asset_id, None)

    def _group_for(self, asset_id: str, ts: datetime) -> tuple[str, str] | None:
        """The open alarm of the asset a new condition at `ts` joins: opened within the
        window of `ts`, the earliest such (deterministic whatever the dict order)."""
        window = self.policy.group_window
        if window <= timedelta(0):
            return None
        near = [
            (alarm.opened_at, condition)
            for condition in self._heads.get(asset_id, ())
            if abs(ts - (alarm := self._open[(asset_id, condition)]).opened_at) <= window
        ]
        return (asset_id, min(near)[1]) if near else None

    def _join(
        self, head: tuple[str, str], condition: str, score: Score, ts: datetime
    ) -> AlarmChange:
        group = self._open[head]
        conditions = (*group.conditions, condition)
        severity = group.severity
        if score.severity is not None and severity_rank(score.severity) > severity_rank(severity):
            severity = score.severity
        group = replace(
            group,
            conditions=conditions,
            sensors=sensors_of(conditions),
            severity=severity,
            contributors=_merged(group.contributors, dict(score.contributors)),
            last_anomalous_at=max(ts, group.last_anomalous_at),
        )
        self._open[head] = group
        self._member_of[(head[0], condition)] = head
        return AlarmChange("alarm.joined", group, ts, joined=condition)

    def _hold(
        self,
        key: tuple[str, str],
        shelf: Shelf,
        score: Score,
        ts: datetime,
        asset_type: str | None,
    ) -> AlarmChange | None:
        """A shelf covers this would-be alarm: report the first of an episode, then hold."""
        first = key not in self._held
        self._held[key] = ts
        if not first:
            return None
        would_be = self._new_alarm(key, score, ts, asset_type)
        return AlarmChange("alarm.suppressed", would_be, ts, joined=key[1], shelf_id=shelf.shelf_id)

    @staticmethod
    def _new_alarm(
        key: tuple[str, str], score: Score, ts: datetime, asset_type: str | None
    ) -> Alarm:
        assert score.severity is not None
        return Alarm(
            alarm_id=uuid.uuid4(),
            asset_id=key[0],
            condition=key[1],
            severity=score.severity,
            detector=score.detector,
            score=score.value,
            threshold=score.threshold,
            opened_at=ts,
            last_anomalous_at=ts,
            asset_type=asset_type,
            contributors=dict(score.contributors),
            model_name=score.model_name,
            model_version=score.model_version,
            conditions=(key[1],),
            sensors=sensors_of((key[1],)),
        )

    def observe(
        self,
        asset_id: str,
        condition: str,
        score: Score,
        ts: datetime,
        asset_type: str | None = None,
    ) -> AlarmChange | None:
        """Feed one score; returns the alarm change it causes, if any."""
        key = (asset_id, condition)
        home = self._member_of.get(key, key)  # the alarm this condition is part of
        alarm = self._open.get(home)
        if score.severity is not None:
            if alarm is None:
                pending = self._pending.setdefault(key, _Pending())
                pending.streak += 1
                if pending.streak < self.policy.open_after:
                    return None
                del self._pending[key]
                shelf = self.shelves.covering(asset_id, sensor_of(condition), ts)
                if shelf is not None:
                    return self._hold(key, shelf, score, ts, asset_type)
                self._held.pop(key, None)
                head = self._group_for(asset_id, ts)
                if head is not None:
                    return self._join(head, condition, score, ts)
                alarm = self._new_alarm(key, score, ts, asset_type)
                self._open[key] = alarm
                self._heads.setdefault(asset_id, set()).add(condition)
                return AlarmChange("alarm.opened", alarm, ts)
            escalates = severity_rank(score.severity) > severity_rank(alarm.severity)
            alarm = replace(alarm, last_anomalous_at=max(ts, alarm.last_anomalous_at))
            if escalates and home == key:
                grouped = len(alarm.conditions) > 1
                alarm = replace(
                    alarm,
                    severity=score.severity,
                    score=score.value,
                    threshold=score.threshold,
                    contributors=_merged(alarm.contributors, dict(score.contributors))
                    if grouped
                    else dict(score.contributors),
                    model_name=score.model_name,
                    model_version=score.model_version,
                )
            elif escalates:  # a joined condition got worse: the group's severity follows it
                alarm = replace(
                    alarm,
                    severity=score.severity,
                    contributors=_merged(alarm.contributors, dict(score.contributors)),
                )
            self._open[home] = alarm
            if escalates:
                return AlarmChange("alarm.escalated", alarm, ts)
            self.touched.add(home)
            return None
        self._pending.pop(key, None)
        held = self._held.get(key)
        if held is not None and ts - held >= self.policy.clear_after:
            del self._held[key]
        if alarm is not None and ts - alarm.last_anomalous_at >= self.policy.clear_after:
            cleared = replace(alarm, cleared_at=ts)
            del self._open[home]
            self._heads.get(asset_id, set()).discard(home[1])
            for member in alarm.conditions:
                self._member_of.pop((asset_id, member), None)
            return AlarmChange("alarm.cleared", cleared, ts)
        return None
