"""The alarm lifecycle, as a pure state machine over detector scores.

One alarm per (asset, condition). It opens when a detector crosses its threshold, escalates
when severity rises (info < warning < minor < major < critical) and clears only after the
condition has been quiet for `clear_after_s` of *reading* time (hysteresis). A flapping
detector therefore produces one alarm that stays open, not an open/clear storm; severity
never de-escalates while open (the operator sees the worst it got). An asset that stops
sending data keeps its alarm open: silence is not health.

Time is the readings' time, never the wall clock, so replaying a stream (or restarting
mid-stream) makes the same decisions.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from pdm_common.events import AlarmEvent, AlarmFields, Severity
from pdm_ml.detectors.base import Score, severity_rank

ChangeKind = Literal["alarm.opened", "alarm.escalated", "alarm.cleared"]


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
        )

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Alarm:
        """An alarm from a row of `alarms` (the columns are the contract's field names)."""
        values = {name: row[name] for name in CONTRACT_FIELDS}
        values["contributors"] = dict(values["contributors"] or {})
        return cls(
            **values,
            last_anomalous_at=row["last_anomalous_at"],
            cleared_at=row.get("cleared_at"),
        )


_missing = set(CONTRACT_FIELDS) - {f.name for f in fields(Alarm)}
if _missing:  # fail at import, not on the first alarm, when the contract gains a field
    raise TypeError(f"pdm_anomaly.alarms.Alarm lacks the contract's fields {sorted(_missing)}")


@dataclass(frozen=True, slots=True)
class AlarmChange:
    kind: ChangeKind
    alarm: Alarm
    reading_ts: datetime


@dataclass(frozen=True, slots=True)
class AlarmPolicy:
    clear_after: timedelta = timedelta(minutes=10)
    #: anomalous evaluations in a row needed to open (1 = open on the first)
    open_after: int = 1


@dataclass(slots=True)
class _Pending:
    streak: int = 0


class AlarmBook:
    """Open alarms of the assets this consumer owns, and the decisions about them."""

    def __init__(self, policy: AlarmPolicy, open_alarms: list[Alarm] | None = None) -> None:
        self.policy = policy
        self._open: dict[tuple[str, str], Alarm] = {}
        self._pending: dict[tuple[str, str], _Pending] = {}
        #: open alarms whose `last_anomalous_at` moved without an event (persisted per batch,
        #: so a restart clears them at the right time)
        self.touched: set[tuple[str, str]] = set()
        self.restore(open_alarms or [])

    def restore(self, open_alarms: list[Alarm]) -> None:
        """Adopt open alarms from the database (start-up, rebalance); memory wins if newer."""
        for alarm in open_alarms:
            self._open.setdefault((alarm.asset_id, alarm.condition), alarm)

    def open_alarm(self, asset_id: str, condition: str) -> Alarm | None:
        return self._open.get((asset_id, condition))

    def open_alarms(self) -> list[Alarm]:
        return list(self._open.values())

    def take_touched(self) -> list[Alarm]:
        """Open alarms to persist `last_anomalous_at` for; resets the set."""
        alarms = [self._open[k] for k in self.touched if k in self._open]
        self.touched.clear()
        return alarms

    def forget_asset(self, asset_id: str) -> None:
        """Drop an asset's state (its partition moved to another consumer)."""
        for key in [k for k in self._open if k[0] == asset_id]:
            del self._open[key]
        for key in [k for k in self._pending if k[0] == asset_id]:
            del self._pending[key]

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
        alarm = self._open.get(key)
        if score.severity is not None:
            if alarm is None:
                pending = self._pending.setdefault(key, _Pending())
                pending.streak += 1
                if pending.streak < self.policy.open_after:
                    return None
                del self._pending[key]
                alarm = Alarm(
                    alarm_id=uuid.uuid4(),
                    asset_id=asset_id,
                    condition=condition,
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
                )
                self._open[key] = alarm
                return AlarmChange("alarm.opened", alarm, ts)
            escalates = severity_rank(score.severity) > severity_rank(alarm.severity)
            alarm = replace(alarm, last_anomalous_at=max(ts, alarm.last_anomalous_at))
            if escalates:
                alarm = replace(
                    alarm,
                    severity=score.severity,
                    score=score.value,
                    threshold=score.threshold,
                    contributors=dict(score.contributors),
                    model_name=score.model_name,
                    model_version=score.model_version,
                )
            self._open[key] = alarm
            if escalates:
                return AlarmChange("alarm.escalated", alarm, ts)
            self.touched.add(key)
            return None
        self._pending.pop(key, None)
        if alarm is not None and ts - alarm.last_anomalous_at >= self.policy.clear_after:
            cleared = replace(alarm, cleared_at=ts)
            del self._open[key]
            return AlarmChange("alarm.cleared", cleared, ts)
        return None
