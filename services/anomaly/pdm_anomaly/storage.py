"""Database access of the anomaly service: its own `alarms` tables, and reads of recent
`readings` to warm detectors up (read only: ingest owns that table, and it is where each
sensor's recent history is kept)."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from pdm_anomaly import SERVICE
from pdm_anomaly.alarms import Alarm, AlarmChange
from pdm_common.db.pool import tables_exist
from pdm_common.events import AlarmEvent


class UnknownAlarm(LookupError):
    pass


def event_for(change: AlarmChange) -> AlarmEvent:
    return change.alarm.to_event(SERVICE, change.kind, change.reading_ts)


class AlarmStore:
    def __init__(self, pool: AsyncConnectionPool | None = None) -> None:
        self.pool = pool  # opened by the service's start-up hook

    @property
    def _pool(self) -> AsyncConnectionPool:
        if self.pool is None:
            raise RuntimeError("AlarmStore used before its pool was opened")
        return self.pool

    async def schema_ready(self) -> bool:
        return await tables_exist(self.pool, ("alarms", "alarm_events", "readings"))

    async def warm_up_data(
        self, first_ts: dict[tuple[str, str], datetime], readings: int, max_age: timedelta
    ) -> tuple[dict[str, list[tuple[str, float, float]]], list[Alarm]]:
        """The last `readings` stored values of each (asset, sensor) before its first new
        reading (no older than `max_age`), time-ordered per asset; and the assets' open alarms.

        A count, not a time window, because detectors need a number of readings whatever the
        sampling rate; each (asset, sensor) is one backward scan of the primary key.
        """
        keys = list(first_ts)
        history: dict[str, list[tuple[str, float, float]]] = defaultdict(list)
        assets = sorted({a for a, _ in keys})
        async with self._pool.connection() as conn:
            if readings > 0:
                cur = await conn.execute(
                    "SELECT f.a, f.s, x.ts, x.value "
                    "FROM unnest(%s::text[], %s::text[], %s::timestamptz[]) AS f(a, s, t) "
                    "CROSS JOIN LATERAL ("
                    "  SELECT extract(epoch FROM r.time)::float8 AS ts, r.value FROM readings r"
                    "  WHERE r.asset_id = f.a AND r.sensor = f.s AND r.time < f.t"
                    "    AND r.time >= f.t - %s::interval"
                    "  ORDER BY r.time DESC LIMIT %s) AS x",
                    (
                        [a for a, _ in keys],
                        [s for _, s in keys],
                        [first_ts[k] for k in keys],
                        max_age,
                        readings,
                    ),
                )
                for asset_id, sensor, ts, value in await cur.fetchall():
                    history[asset_id].append((sensor, ts, value))
                for rows in history.values():
                    rows.sort(key=lambda row: row[1])
            cur2 = conn.cursor(row_factory=dict_row)
            await cur2.execute(
                "SELECT * FROM alarms WHERE status = 'open' AND asset_id = ANY(%s)", (assets,)
            )
            open_alarms = [Alarm.from_row(r) for r in await cur2.fetchall()]
        return history, open_alarms

    async def record(
        self, changes: Sequence[AlarmChange], touched: Sequence[Alarm]
    ) -> list[AlarmEvent]:
        """Apply alarm changes and queue their events (outbox), in one transaction.

        An "opened" that collides with an alarm already open in the database (this consumer's
        view was stale) is dropped, with its event: there is still exactly one open alarm.
        """
        events: list[AlarmEvent] = []
        async with self._pool.connection() as conn, conn.transaction():
            for change in changes:
                a = change.alarm
                if change.kind == "alarm.opened":
                    cur = await conn.execute(
                        "INSERT INTO alarms (alarm_id, asset_id, asset_type, condition, status, "
                        "severity, detector, score, threshold, contributors, model_name, "
                        "model_version, opened_at, last_anomalous_at) VALUES "
                        "(%s, %s, %s, %s, 'open', %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                        "ON CONFLICT (asset_id, condition) WHERE status = 'open' DO NOTHING",
                        (
                            a.alarm_id,
                            a.asset_id,
                            a.asset_type,
                            a.condition,
                            a.severity,
                            a.detector,
                            a.score,
                            a.threshold,
                            Jsonb(a.contributors),
                            a.model_name,
                            a.model_version,
                            a.opened_at,
                            a.last_anomalous_at,
                        ),
                    )
                    if cur.rowcount == 0:
                        continue
                elif change.kind == "alarm.escalated":
                    await conn.execute(
                        "UPDATE alarms SET severity = %s, score = %s, threshold = %s, "
                        "contributors = %s, model_name = %s, model_version = %s, "
                        "last_anomalous_at = %s, updated_at = now() WHERE alarm_id = %s",
                        (
                            a.severity,
                            a.score,
                            a.threshold,
                            Jsonb(a.contributors),
                            a.model_name,
                            a.model_version,
                            a.last_anomalous_at,
                            a.alarm_id,
                        ),
                    )
                else:
                    await conn.execute(
                        "UPDATE alarms SET status = 'cleared', cleared_at = %s, updated_at = now() "
                        "WHERE alarm_id = %s AND status = 'open'",
                        (a.cleared_at, a.alarm_id),
                    )
                events.append(event_for(change))
            if touched:
                await conn.execute(
                    "UPDATE alarms SET last_anomalous_at = GREATEST(last_anomalous_at, t.ts) "
                    "FROM unnest(%s::uuid[], %s::timestamptz[]) AS t(id, ts) "
                    "WHERE alarms.alarm_id = t.id",
                    ([a.alarm_id for a in touched], [a.last_anomalous_at for a in touched]),
                )
            await self._queue(conn, events)
        return events

    async def _queue(self, conn: psycopg.AsyncConnection, events: Sequence[AlarmEvent]) -> None:
        if events:
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO alarm_events (event_id, alarm_id, event_type, payload) "
                    "VALUES (%s, %s, %s, %s)",
                    [
                        (e.event_id, e.alarm_id, e.event_type, Jsonb(json.loads(e.to_json())))
                        for e in events
                    ],
                )

    async def unpublished(self, limit: int = 10_000) -> list[AlarmEvent]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT payload FROM alarm_events WHERE published_at IS NULL "
                "ORDER BY created_at LIMIT %s",
                (limit,),
            )
            return [AlarmEvent.model_validate(row[0]) for row in await cur.fetchall()]

    async def mark_published(self, event_ids: Sequence[uuid.UUID]) -> None:
        if not event_ids:
            return
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE alarm_events SET published_at = now() WHERE event_id = ANY(%s)",
                (list(event_ids),),
            )

    async def apply_command(
        self,
        command_id: uuid.UUID,
        alarm_id: uuid.UUID,
        action: str,
        actor: str,
        assignee: str | None,
        note: str | None,
        at: datetime,
    ) -> AlarmEvent | None:
        """Acknowledge/assign once: the event, or None when already applied (a duplicate).
        Raises `UnknownAlarm` (and records nothing) when there is no such alarm."""
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "INSERT INTO alarm_commands_applied (command_id, alarm_id) VALUES (%s, %s) "
                "ON CONFLICT DO NOTHING",
                (command_id, alarm_id),
            )
            if cur.rowcount == 0:
                return None
            if action == "acknowledge":
                sql = (
                    "UPDATE alarms SET acknowledged_by = %s, acknowledged_at = %s, "
                    "updated_at = now() WHERE alarm_id = %s RETURNING *"
                )
                params: tuple[object, ...] = (actor, at, alarm_id)
            else:
                sql = (
                    "UPDATE alarms SET assignee = %s, assigned_by = %s, assigned_at = %s, "
                    "updated_at = now() WHERE alarm_id = %s RETURNING *"
                )
                params = (assignee, actor, at, alarm_id)
            cur2 = conn.cursor(row_factory=dict_row)
            await cur2.execute(sql, params)
            row = await cur2.fetchone()
            if row is None:
                raise UnknownAlarm(f"no alarm {alarm_id}")  # rolls back the dedupe row too
            kind = "alarm.acknowledged" if action == "acknowledge" else "alarm.assigned"
            event = Alarm.from_row(row).to_event(
                SERVICE, kind, actor=actor, assignee=assignee, note=note
            )
            await self._queue(conn, [event])
            return event
