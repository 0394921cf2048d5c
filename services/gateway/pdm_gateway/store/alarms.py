"""`alarms` and `alarm_shelves` (owned by the anomaly service), read only: acknowledging,
assigning, shelving and unshelving are commands to that service."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import sql
from psycopg.rows import dict_row

from pdm_common.events import AlarmShelf, AlarmState
from pdm_gateway.store.database import Store

TABLE = "alarms"
#: The columns the gateway serves: the fields of the alarm contract, read as they are named.
COLUMNS = ", ".join(AlarmState.model_fields)
#: Filters that are a plain equality on their column.
EQUALITY_FILTERS = ("asset_id", "status", "severity", "condition", "assignee")
#: A shelf as served (`AlarmShelf`): its columns, and whether it is in force now.
SHELF_ACTIVE = "(unshelved_at IS NULL AND expires_at > now())"
SHELF_COLUMNS = ", ".join(f for f in AlarmShelf.model_fields if f != "active") + (
    f", {SHELF_ACTIVE} AS active"
)


class AlarmReader(Store):
    async def page(
        self, filters: dict[str, Any], after: tuple[datetime, str] | None, limit: int
    ) -> list[dict[str, Any]]:
        """Alarms newest opened first, after the keyset `(opened_at, alarm_id)`; `filters`
        may also hold `since` (opened at or after) and `acknowledged` (a bool)."""
        where: list[sql.Composable] = [sql.SQL("TRUE")]
        params: dict[str, Any] = {"limit": limit}
        for column in EQUALITY_FILTERS:
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
            "SELECT " + COLUMNS + " FROM alarms WHERE {} "
            "ORDER BY opened_at DESC, alarm_id DESC LIMIT %(limit)s"
        ).format(sql.SQL(" AND ").join(where))
        async with self.db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, params)
            return await cur.fetchall()

    async def get(self, alarm_id: str) -> dict[str, Any] | None:
        async with self.db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "SELECT " + COLUMNS + " FROM alarms WHERE alarm_id = %s",
                [alarm_id],
            )
            return await cur.fetchone()

    async def shelves(self, asset_id: str | None, limit: int) -> list[dict[str, Any]]:
        """Shelves in force, soonest to expire first (of one asset when given)."""
        async with self.db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "SELECT " + SHELF_COLUMNS + " FROM alarm_shelves WHERE " + SHELF_ACTIVE + " "
                "AND (%(asset_id)s::text IS NULL OR asset_id = %(asset_id)s) "
                "ORDER BY expires_at, shelf_id LIMIT %(limit)s",
                {"asset_id": asset_id, "limit": limit},
            )
            return await cur.fetchall()

    async def shelf(self, shelf_id: str) -> dict[str, Any] | None:
        async with self.db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "SELECT " + SHELF_COLUMNS + " FROM alarm_shelves WHERE shelf_id = %s", [shelf_id]
            )
            return await cur.fetchone()
