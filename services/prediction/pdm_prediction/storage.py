"""Database access of the prediction service: its own `predictions` table, and reads of an
asset's latest `readings` for features (the cross-service read DESIGN.md allows)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from pdm_common.db.pool import tables_exist
from pdm_common.db.queries import latest_readings
from pdm_common.events import Prediction

SERVICE = "prediction"


class PredictionStore:
    def __init__(self, pool: AsyncConnectionPool | None = None) -> None:
        self.pool = pool  # opened by the service's start-up hook

    @property
    def _pool(self) -> AsyncConnectionPool:
        if self.pool is None:
            raise RuntimeError("PredictionStore used before its pool was opened")
        return self.pool

    async def schema_ready(self) -> bool:
        return await tables_exist(self.pool, ("predictions", "readings"))

    async def latest(self, asset_id: str, since: datetime) -> dict[str, tuple[datetime, float]]:
        """Newest `(time, value)` per sensor of the asset, no older than `since`."""
        async with self._pool.connection() as conn:
            return await latest_readings(conn, asset_id, since)

    async def history(
        self, asset_id: str, anchor_sensor: str, rows: int, since: datetime
    ) -> tuple[list[dict[str, float]], list[datetime]]:
        """The last `rows` timestamps of the asset (found on `anchor_sensor`, a backward scan
        of the primary key), every sensor's values pivoted per timestamp, oldest first."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT min(t.time) FROM (SELECT time FROM readings WHERE asset_id = %s "
                "AND sensor = %s AND time >= %s ORDER BY time DESC LIMIT %s) AS t",
                (asset_id, anchor_sensor, since, rows),
            )
            first = await cur.fetchone()
            if first is None or first[0] is None:
                return [], []
            cur = await conn.execute(
                "SELECT time, sensor, value FROM readings WHERE asset_id = %s AND time >= %s "
                "ORDER BY time",
                (asset_id, first[0]),
            )
            pivot: dict[datetime, dict[str, float]] = defaultdict(dict)
            for time, sensor, value in await cur.fetchall():
                pivot[time][sensor] = value
        times = sorted(pivot)
        return [pivot[t] for t in times], times

    async def record(self, predictions: Sequence[Prediction]) -> None:
        """Store predictions in one transaction (a redelivered request is a no-op)."""
        if not predictions:
            return
        rows: list[tuple[Any, ...]] = []
        for p in predictions:
            failure, rul = p.models.get("failure"), p.models.get("rul")
            rows.append(
                (
                    p.event_id,
                    p.occurred_at,
                    p.asset_id,
                    p.asset_type,
                    p.request_id,
                    p.as_of,
                    failure.name if failure else None,
                    failure.version if failure else None,
                    p.failure_probability,
                    rul.name if rul else None,
                    rul.version if rul else None,
                    p.rul_p10,
                    p.rul_p50,
                    p.rul_p90,
                    p.health_score,
                    p.confidence,
                    Jsonb(p.model_dump(mode="json")),
                )
            )
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO predictions (prediction_id, time, asset_id, asset_type, request_id, "
                "as_of, failure_model, failure_model_version, failure_probability, rul_model, "
                "rul_model_version, rul_p10, rul_p50, rul_p90, health_score, confidence, "
                "payload) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
                "%s, %s) ON CONFLICT DO NOTHING",
                rows,
            )
