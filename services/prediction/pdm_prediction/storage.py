"""Database access of the prediction service: its own `predictions` and
`shadow_predictions` tables, and reads of an
asset's latest `readings` for features (read only: ingest owns `readings` and `assets`, and
they are where each asset's recent values are kept)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from pdm_common.db.bulk import copy_insert_ignore
from pdm_common.db.pool import tables_exist
from pdm_common.db.queries import latest_readings_many, recent_rows_many
from pdm_common.events import Prediction

COLUMNS = (
    "prediction_id", "time", "asset_id", "asset_type", "request_id", "as_of", "failure_model",
    "failure_model_version", "failure_probability", "rul_model", "rul_model_version", "rul_p10",
    "rul_p50", "rul_p90", "health_score", "confidence", "payload",
)  # fmt: skip
PG_TYPES = (
    "uuid", "timestamptz", "text", "text", "uuid", "timestamptz", "text", "text", "float8",
    "text", "text", "float8", "float8", "float8", "float8", "float8", "jsonb",
)  # fmt: skip


class PredictionStore:
    def __init__(self, pool: AsyncConnectionPool | None = None) -> None:
        self.pool = pool  # opened by the service's start-up hook

    @property
    def _pool(self) -> AsyncConnectionPool:
        if self.pool is None:
            raise RuntimeError("PredictionStore used before its pool was opened")
        return self.pool

    async def schema_ready(self) -> bool:
        return await tables_exist(
            self.pool, ("predictions", "prediction_timer", "readings", "assets")
        )

    async def latest(
        self, asset_ids: Sequence[str], sensors: Sequence[str], since: datetime
    ) -> dict[str, dict[str, tuple[datetime, float]]]:
        """Newest `(time, value)` per named sensor of each asset, no older than `since`."""
        async with self._pool.connection() as conn:
            return await latest_readings_many(conn, asset_ids, sensors, since)

    async def history(
        self,
        asset_ids: Sequence[str],
        anchor: str,
        sensors: Sequence[str],
        rows: int,
        since: datetime,
    ) -> dict[str, tuple[list[dict[str, float]], list[datetime]]]:
        """The last `rows` timestamps of each asset, sensor values pivoted, oldest first."""
        async with self._pool.connection() as conn:
            return await recent_rows_many(conn, asset_ids, anchor, sensors, rows, since)

    async def claim_tick(self, interval_s: float) -> bool:
        """Whether this replica runs the periodic round now: true for exactly one caller per
        interval across replicas (a conditional UPDATE of one row)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE prediction_timer SET last_tick = now() WHERE name = 'periodic' "
                "AND last_tick <= now() - make_interval(secs => %s) RETURNING 1",
                (interval_s,),
            )
            return await cur.fetchone() is not None

    async def periodic_assets(
        self, asset_types: Sequence[str], since: datetime
    ) -> list[tuple[str, str]]:
        """`(asset_id, asset_type)` of registered assets of the served types that sent a
        reading since `since` (silent assets are not re-scored). Reads `assets`, the asset
        registry ingest owns, as the feature windows read `readings`."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT a.asset_id, a.asset_type FROM assets a WHERE a.asset_type = ANY(%s) "
                "AND EXISTS (SELECT 1 FROM readings r WHERE r.asset_id = a.asset_id "
                "AND r.time >= %s) ORDER BY a.asset_id",
                (list(asset_types), since),
            )
            return [(str(a), str(t)) for a, t in await cur.fetchall()]

    async def record_shadow(self, shadows: Sequence[tuple[Prediction, uuid.UUID]]) -> None:
        """Store challenger predictions with the id of the champion's prediction they shadow
        (a redelivered request is a no-op: the id derives from the request and versions)."""
        if not shadows:
            return
        rows = [(*_row(p), champion) for p, champion in shadows]
        async with self._pool.connection() as conn, conn.transaction():
            await copy_insert_ignore(
                conn,
                "shadow_predictions",
                (*COLUMNS, "champion_prediction_id"),
                (*PG_TYPES, "uuid"),
                rows,
            )

    async def record(self, predictions: Sequence[Prediction]) -> None:
        """Store predictions in one transaction, by binary COPY (a redelivered request is a
        no-op: its request id is unique)."""
        if not predictions:
            return
        rows = [_row(p) for p in predictions]
        async with self._pool.connection() as conn, conn.transaction():
            await copy_insert_ignore(conn, "predictions", COLUMNS, PG_TYPES, rows)


def _row(p: Prediction) -> tuple[Any, ...]:
    """A prediction as a row of `COLUMNS`."""
    failure, rul = p.models.get("failure"), p.models.get("rul")
    return (
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
