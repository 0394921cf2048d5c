"""`assets` (owned by ingest), read only: the gateway serves the registry from it and sends
every change to ingest as a command."""

from __future__ import annotations

from typing import Any

from psycopg import sql
from psycopg.rows import dict_row

from pdm_common.events import AssetRecord
from pdm_gateway.store.database import Store

TABLE = "assets"
#: The columns the gateway serves: the fields of the asset contract, read as they are named.
COLUMNS = ", ".join(AssetRecord.model_fields)


class AssetReader(Store):
    async def page(
        self, filters: dict[str, str | None], after: str | None, limit: int
    ) -> list[dict[str, Any]]:
        """Assets ordered by id after `after`, where each non-None filter column matches."""
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
            "SELECT " + COLUMNS + " FROM assets WHERE {} ORDER BY asset_id LIMIT %(limit)s"
        ).format(sql.SQL(" AND ").join(where))
        async with self.db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, params)
            return await cur.fetchall()

    async def get(self, asset_id: str) -> dict[str, Any] | None:
        rows = await self.page({"asset_id": asset_id}, None, 1)
        return rows[0] if rows else None

    async def hierarchy(self) -> list[dict[str, Any]]:
        """Sites > lines > asset counts per type (assets without a site are under `null`)."""
        async with self.db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "SELECT site, line, asset_type, count(*) AS assets FROM assets "
                "GROUP BY site, line, asset_type ORDER BY site NULLS LAST, line NULLS LAST, "
                "asset_type NULLS LAST"
            )
            return await cur.fetchall()
