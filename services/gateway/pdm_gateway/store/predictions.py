"""`predictions` (owned by the prediction service), read only: on-demand predictions are
Kafka requests to that service, which stores them itself."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pdm_gateway.store.database import Store

TABLE = "predictions"


class PredictionReader(Store):
    async def history(
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
        async with self.db.connection() as conn:
            cur = await conn.execute(query, params)
            return [(t, i, p) for t, i, p in await cur.fetchall()]
