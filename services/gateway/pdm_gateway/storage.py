"""Database access of the gateway: its own tables (`api_keys`, `audit_log`,
`idempotency_keys`) and the read side (CQRS) over the tables other services own: `assets`,
`readings`, `alarms`, `predictions`. The gateway never writes another service's table; asset
and alarm changes are Kafka commands to their owners."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from pdm_common.db import queries
from pdm_common.db.pool import tables_exist
from pdm_gateway.keys import NewKey, Principal, new_key, secret_matches

OWN_TABLES = ("api_keys", "audit_log", "idempotency_keys")
READ_TABLES = ("assets", "readings", "alarms", "predictions")
ASSET_COLUMNS = (
    "asset_id, asset_type, site, line, display_name, criticality, machine_class, metadata, "
    "registered_by, created_at, updated_at"
)
ALARM_COLUMNS = (
    "alarm_id, asset_id, asset_type, condition, status, severity, detector, score, threshold, "
    "contributors, model_name, model_version, opened_at, last_anomalous_at, cleared_at, "
    "acknowledged_by, acknowledged_at, assignee, assigned_by, assigned_at, updated_at"
)
CSV_HEADER = ("time", "asset_id", "sensor", "value")


@dataclass(frozen=True, slots=True)
class KeyRow:
    key_id: str
    name: str
    secret_sha256: str
    scopes: list[str]
    rate_limit_per_s: float | None
    revoked: bool


IdempotencyState = Literal["new", "replay", "mismatch", "in_flight"]


class GatewayStore:
    def __init__(self, pool: AsyncConnectionPool | None = None) -> None:
        self.pool = pool
        self.timescale: bool | None = None

    @property
    def _pool(self) -> AsyncConnectionPool:
        if self.pool is None:
            raise RuntimeError("GatewayStore used before its pool was opened")
        return self.pool

    async def schema_ready(self) -> bool:
        return await tables_exist(self.pool, OWN_TABLES + READ_TABLES)

    async def _timescale(self) -> bool:
        if self.timescale is None:
            async with self._pool.connection() as conn:
                self.timescale = await queries.timescale_enabled(conn)
        return self.timescale

    # --- API keys -------------------------------------------------------------------------

    async def key(self, key_id: str) -> KeyRow | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT key_id, name, secret_sha256, scopes, rate_limit_per_s, "
                "revoked_at IS NOT NULL FROM api_keys WHERE key_id = %s",
                [key_id],
            )
            row = await cur.fetchone()
        return KeyRow(*row) if row else None

    async def authenticate(self, key_id: str, secret: str) -> Principal | None:
        row = await self.key(key_id)
        if row is None or row.revoked or not secret_matches(secret, row.secret_sha256):
            return None
        return Principal(row.key_id, row.name, frozenset(row.scopes), row.rate_limit_per_s)

    async def create_key(
        self, name: str, scopes: Sequence[str], created_by: str, rate_limit_per_s: float | None
    ) -> NewKey:
        key = new_key()
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO api_keys (key_id, name, secret_sha256, scopes, rate_limit_per_s, "
                "created_by) VALUES (%s, %s, %s, %s, %s, %s)",
                [key.key_id, name, key.secret_sha256, list(scopes), rate_limit_per_s, created_by],
            )
        return key

    async def revoke_key(self, key_id: str) -> bool:
        """True when the key existed and was live."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE api_keys SET revoked_at = now() WHERE key_id = %s AND revoked_at IS NULL",
                [key_id],
            )
            return cur.rowcount == 1

    async def list_keys(self) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "SELECT key_id, name, scopes, rate_limit_per_s, created_by, created_at, "
                "revoked_at FROM api_keys ORDER BY created_at, key_id"
            )
            return await cur.fetchall()

    # --- audit and idempotency ------------------------------------------------------------

    async def audit(
        self, key_id: str | None, method: str, path: str, status: int, detail: dict[str, Any]
    ) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO audit_log (key_id, method, path, status, detail) "
                "VALUES (%s, %s, %s, %s, %s)",
                [key_id, method, path, status, Jsonb(detail)],
            )

    async def begin_idempotent(
        self, key_id: str, idem_key: str, request_sha256: str
    ) -> tuple[IdempotencyState, int | None, Any]:
        """Claim `idem_key` for this request; or say why not (and the stored answer)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO idempotency_keys (key_id, idempotency_key, request_sha256) "
                "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                [key_id, idem_key, request_sha256],
            )
            if cur.rowcount == 1:
                return "new", None, None
            cur = await conn.execute(
                "SELECT request_sha256, status, response FROM idempotency_keys "
                "WHERE key_id = %s AND idempotency_key = %s",
                [key_id, idem_key],
            )
            row = await cur.fetchone()
        if row is None:  # purged between the two statements: treat as new next time
            return "in_flight", None, None
        stored_sha, status, response = row
        if stored_sha != request_sha256:
            return "mismatch", None, None
        if status is None:
            return "in_flight", None, None
        return "replay", status, response

    async def finish_idempotent(
        self, key_id: str, idem_key: str, status: int, response: Any
    ) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE idempotency_keys SET status = %s, response = %s "
                "WHERE key_id = %s AND idempotency_key = %s",
                [status, Jsonb(response), key_id, idem_key],
            )

    async def abandon_idempotent(self, key_id: str, idem_key: str) -> None:
        """The first request failed before publishing: let a retry with the key go through."""
        async with self._pool.connection() as conn:
            await conn.execute(
                "DELETE FROM idempotency_keys WHERE key_id = %s AND idempotency_key = %s "
                "AND status IS NULL",
                [key_id, idem_key],
            )

    async def purge_idempotency(self, older_than: datetime) -> int:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "DELETE FROM idempotency_keys WHERE created_at < %s", [older_than]
            )
            return cur.rowcount

    # --- assets ---------------------------------------------------------------------------

    async def assets(
        self, filters: dict[str, str | None], after: str | None, limit: int
    ) -> list[dict[str, Any]]:
        where: list[sql.Composable] = [sql.SQL("TRUE")]
        params: dict[str, Any] = {"limit": limit, "after": after}
        for column, value in filters.items():
            if value is not None:
                where.append(
                    sql.SQL("{} = {}").format(sql.Identifier(column), sql.Placeholder(column))
                )
                params[column] = value
        if after is not None:
            where.append(sql.SQL("asset_id > %(after)s"))
        query = sql.SQL(
            "SELECT " + ASSET_COLUMNS + " FROM assets WHERE {} ORDER BY asset_id LIMIT %(limit)s"
        ).format(sql.SQL(" AND ").join(where))
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, params)
            return await cur.fetchall()

    async def asset(self, asset_id: str) -> dict[str, Any] | None:
        rows = await self.assets({"asset_id": asset_id}, None, 1)
        return rows[0] if rows else None

    async def hierarchy(self) -> list[dict[str, Any]]:
        """Sites > lines > asset counts per type (assets without a site are under `null`)."""
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "SELECT site, line, asset_type, count(*) AS assets FROM assets "
                "GROUP BY site, line, asset_type ORDER BY site NULLS LAST, line NULLS LAST, "
                "asset_type NULLS LAST"
            )
            return await cur.fetchall()

    # --- readings -------------------------------------------------------------------------

    async def latest_readings(self, asset_id: str) -> dict[str, tuple[datetime, float]]:
        async with self._pool.connection() as conn:
            return await queries.latest_readings(conn, asset_id)

    async def readings_raw(
        self,
        asset_id: str,
        sensor: str | None,
        start: datetime,
        end: datetime,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[tuple[datetime, str, float]]:
        """One asset's rows in `[start, end)` ordered by (time, sensor), after a keyset."""
        conditions = ["asset_id = %(asset_id)s", "time >= %(start)s", "time < %(end)s"]
        if sensor is not None:
            conditions.append("sensor = %(sensor)s")
        if after is not None:
            conditions.append("(time, sensor) > (%(after_t)s, %(after_s)s)")
        query = (
            "SELECT time, sensor, value FROM readings WHERE "
            + " AND ".join(conditions)
            + " ORDER BY time, sensor LIMIT %(limit)s"
        )
        params = {
            "asset_id": asset_id,
            "sensor": sensor,
            "start": start,
            "end": end,
            "after_t": after[0] if after else None,
            "after_s": after[1] if after else None,
            "limit": limit,
        }
        async with self._pool.connection() as conn:
            cur = await conn.execute(query, params)
            return [(t, s, v) for t, s, v in await cur.fetchall()]

    async def readings_bucketed(
        self,
        asset_id: str,
        sensor: str | None,
        start: datetime,
        end: datetime,
        bucket: queries.Bucket,
        agg: queries.Agg,
    ) -> list[queries.BucketRow]:
        timescale = await self._timescale()
        async with self._pool.connection() as conn:
            return await queries.readings_bucketed(
                conn, asset_id, sensor, start, end, bucket, agg, timescale
            )

    async def export_csv(
        self,
        asset_id: str | None,
        sensor: str | None,
        start: datetime | None,
        end: datetime,
        chunk_rows: int,
    ) -> AsyncIterator[bytes]:
        """CSV of the readings in `[start, end)`, ordered by time, streamed from a
        server-side cursor `chunk_rows` at a time: memory stays flat whatever the size."""
        conditions = ["time < %(end)s"]
        if start is not None:
            conditions.append("time >= %(start)s")
        if asset_id is not None:
            conditions.append("asset_id = %(asset_id)s")
        if sensor is not None:
            conditions.append("sensor = %(sensor)s")
        query = (
            "SELECT time, asset_id, sensor, value FROM readings WHERE "
            + " AND ".join(conditions)
            + " ORDER BY time, asset_id, sensor"
        )
        params = {"asset_id": asset_id, "sensor": sensor, "start": start, "end": end}
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        yield buffer.getvalue().encode()
        async with (
            self._pool.connection() as conn,
            conn.transaction(),
            conn.cursor(name="pdm_export") as cur,
        ):
            cur.itersize = chunk_rows
            await cur.execute(query, params)
            while rows := await cur.fetchmany(chunk_rows):
                buffer.seek(0)
                buffer.truncate()
                writer.writerows((t.isoformat(), a, s, repr(v)) for t, a, s, v in rows)
                yield buffer.getvalue().encode()

    # --- alarms and predictions -----------------------------------------------------------

    async def alarms(
        self, filters: dict[str, Any], after: tuple[datetime, str] | None, limit: int
    ) -> list[dict[str, Any]]:
        where: list[sql.Composable] = [sql.SQL("TRUE")]
        params: dict[str, Any] = {"limit": limit}
        for column in ("asset_id", "status", "severity", "condition", "assignee"):
            if filters.get(column) is not None:
                where.append(
                    sql.SQL("{} = {}").format(sql.Identifier(column), sql.Placeholder(column))
                )
                params[column] = filters[column]
        if filters.get("since") is not None:
            where.append(sql.SQL("opened_at >= %(since)s"))
            params["since"] = filters["since"]
        if filters.get("acknowledged") is not None:
            where.append(
                sql.SQL("acknowledged_at IS NOT NULL")
                if filters["acknowledged"]
                else sql.SQL("acknowledged_at IS NULL")
            )
        if after is not None:
            where.append(sql.SQL("(opened_at, alarm_id) < (%(after_t)s, %(after_id)s::uuid)"))
            params["after_t"], params["after_id"] = after
        query = sql.SQL(
            "SELECT " + ALARM_COLUMNS + " FROM alarms WHERE {} "
            "ORDER BY opened_at DESC, alarm_id DESC LIMIT %(limit)s"
        ).format(sql.SQL(" AND ").join(where))
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, params)
            return await cur.fetchall()

    async def alarm(self, alarm_id: str) -> dict[str, Any] | None:
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "SELECT " + ALARM_COLUMNS + " FROM alarms WHERE alarm_id = %s",
                [alarm_id],
            )
            return await cur.fetchone()

    async def predictions(
        self,
        asset_id: str,
        start: datetime | None,
        end: datetime | None,
        before: tuple[datetime, str] | None,
        limit: int,
    ) -> list[tuple[datetime, str, Any]]:
        """Newest first: `(time, prediction_id, payload)`."""
        conditions = ["asset_id = %(asset_id)s"]
        if start is not None:
            conditions.append("time >= %(start)s")
        if end is not None:
            conditions.append("time < %(end)s")
        if before is not None:
            conditions.append("(time, prediction_id) < (%(before_t)s, %(before_id)s::uuid)")
        query = (
            "SELECT time, prediction_id::text, payload FROM predictions WHERE "
            + " AND ".join(conditions)
            + " ORDER BY time DESC, prediction_id DESC LIMIT %(limit)s"
        )
        params = {
            "asset_id": asset_id,
            "start": start,
            "end": end,
            "before_t": before[0] if before else None,
            "before_id": before[1] if before else None,
            "limit": limit,
        }
        async with self._pool.connection() as conn:
            cur = await conn.execute(query, params)
            return [(t, i, p) for t, i, p in await cur.fetchall()]
