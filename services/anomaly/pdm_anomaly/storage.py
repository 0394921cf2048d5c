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
from pdm_anomaly.shelves import Shelf
from pdm_common.db.pool import tables_exist
from pdm_common.events import AlarmEvent, ShelfCommand


class UnknownAlarm(LookupError):
    pass


def event_for(change: AlarmChange) -> AlarmEvent:
    """The published event of a change: a join is an escalation naming the joined condition."""
    if change.kind == "alarm.joined":
        return change.alarm.to_event(
            SERVICE, "alarm.escalated", change.reading_ts, joined_condition=change.joined
        )
    return change.alarm.to_event(SERVICE, change.kind, change.reading_ts)


#: The columns of a shelf as `pdm_anomaly.shelves.Shelf` needs them (its end included).
SHELF_COLUMNS = (
    "shelf_id, asset_id, sensor, shelved_at, "
    "LEAST(expires_at, COALESCE(unshelved_at, 'infinity')) AS ends_at"
)


class AlarmStore:
    def __init__(self, pool: AsyncConnectionPool | None = None) -> None:
        self.pool = pool  # opened by the service's start-up hook

    @property
    def _pool(self) -> AsyncConnectionPool:
        if self.pool is None:
            raise RuntimeError("AlarmStore used before its pool was opened")
        return self.pool

    async def schema_ready(self) -> bool:
        return await tables_exist(
            self.pool, ("alarms", "alarm_events", "alarm_shelves", "readings")
        )

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
        view was stale) is dropped, with its event: there is still exactly one open alarm. A
        join sets the group's conditions as the book has them (the same input gives the same
        row); a suppression only counts on its shelf (no event).
        """
        events: list[AlarmEvent] = []
        async with self._pool.connection() as conn, conn.transaction():
            for change in changes:
                a = change.alarm
                if change.kind == "alarm.suppressed":
                    await conn.execute(
                        "UPDATE alarm_shelves SET suppressed = suppressed + 1, "
                        "last_suppressed_at = GREATEST(last_suppressed_at, %s), "
                        "last_suppressed_condition = %s, updated_at = now() WHERE shelf_id = %s",
                        (change.reading_ts, a.condition, change.shelf_id),
                    )
                    continue
                if change.kind == "alarm.joined":
                    cur = await conn.execute(
                        "UPDATE alarms SET conditions = %s, sensors = %s, severity = %s, "
                        "contributors = %s, last_anomalous_at = GREATEST(last_anomalous_at, %s), "
                        "updated_at = now() WHERE alarm_id = %s AND status = 'open'",
                        (
                            list(a.conditions),
                            list(a.sensors),
                            a.severity,
                            Jsonb(a.contributors),
                            a.last_anomalous_at,
                            a.alarm_id,
                        ),
                    )
                    if cur.rowcount == 0:
                        continue
                elif change.kind == "alarm.opened":
                    cur = await conn.execute(
                        "INSERT INTO alarms (alarm_id, asset_id, asset_type, condition, status, "
                        "severity, detector, score, threshold, contributors, model_name, "
                        "model_version, opened_at, last_anomalous_at, conditions, sensors) VALUES "
                        "(%s, %s, %s, %s, 'open', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
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
                            list(a.conditions),
                            list(a.sensors),
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

    async def shelves(self, horizon: timedelta = timedelta(days=1)) -> list[Shelf]:
        """Shelves that end after now - `horizon` (reading time may lag the wall clock: a
        shelf just ended still covers readings from before its end that arrive late)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {SHELF_COLUMNS} FROM alarm_shelves "
                "WHERE LEAST(expires_at, COALESCE(unshelved_at, 'infinity')) > now() - %s",
                (horizon,),
            )
            return [Shelf(*row) for row in await cur.fetchall()]

    async def apply_shelf(self, c: ShelfCommand, at: datetime) -> Shelf | None:
        """Shelve or unshelve once per command id: the shelf as it now stands, or None when
        the command was applied before (a duplicate) or there was nothing to unshelve.

        Shelving a target that is shelved already replaces its reason, actor and expiry (it
        keeps its id, start and count); one that expired is closed first, at its expiry."""
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "INSERT INTO alarm_commands_applied (command_id, alarm_id) VALUES (%s, NULL) "
                "ON CONFLICT DO NOTHING",
                (c.command_id,),
            )
            if cur.rowcount == 0:
                return None
            target = (c.asset_id, c.sensor or "")
            await conn.execute(
                "UPDATE alarm_shelves SET unshelved_at = expires_at, unshelved_by = 'expiry', "
                "updated_at = now() WHERE asset_id = %s AND coalesce(sensor, '') = %s "
                "AND unshelved_at IS NULL AND expires_at <= %s",
                (*target, at),
            )
            if c.action == "shelve":
                cur = await conn.execute(
                    "INSERT INTO alarm_shelves (shelf_id, asset_id, sensor, reason, shelved_by, "
                    "shelved_at, expires_at, command_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (asset_id, (coalesce(sensor, ''))) WHERE unshelved_at IS NULL "
                    "DO UPDATE SET reason = EXCLUDED.reason, shelved_by = EXCLUDED.shelved_by, "
                    "expires_at = EXCLUDED.expires_at, command_id = EXCLUDED.command_id, "
                    f"updated_at = now() RETURNING {SHELF_COLUMNS}",
                    (
                        c.command_id,
                        c.asset_id,
                        c.sensor,
                        c.reason,
                        c.actor,
                        at,
                        c.expires_at,
                        c.command_id,
                    ),
                )
            else:
                cur = await conn.execute(
                    "UPDATE alarm_shelves SET unshelved_at = %s, unshelved_by = %s, "
                    "updated_at = now() WHERE asset_id = %s AND coalesce(sensor, '') = %s "
                    f"AND unshelved_at IS NULL RETURNING {SHELF_COLUMNS}",
                    (at, c.actor, *target),
                )
            row = await cur.fetchone()
            return None if row is None else Shelf(*row)
