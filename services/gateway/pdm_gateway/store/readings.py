"""`readings` (owned by ingest), read only: the newest value per sensor, raw pages, buckets
(through the shared query layer, which answers the same with and without TimescaleDB) and
the CSV export."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime

from pdm_common.db import queries
from pdm_gateway.store.database import Database, Store

TABLE = "readings"
CSV_HEADER = ("time", "asset_id", "sensor", "value")


class ReadingReader(Store):
    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.timescale: bool | None = None  # asked once, on the first bucketed read

    async def _timescale(self) -> bool:
        if self.timescale is None:
            async with self.db.connection() as conn:
                self.timescale = await queries.timescale_enabled(conn)
        return self.timescale

    async def latest(self, asset_id: str) -> dict[str, tuple[datetime, float]]:
        async with self.db.connection() as conn:
            return await queries.latest_readings(conn, asset_id)

    async def raw(
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
        async with self.db.connection() as conn:
            cur = await conn.execute(query, params)
            return [(t, s, v) for t, s, v in await cur.fetchall()]

    async def bucketed(
        self,
        asset_id: str,
        sensor: str | None,
        start: datetime,
        end: datetime,
        bucket: queries.Bucket,
        agg: queries.Agg,
    ) -> queries.BucketedReadings:
        """The buckets and which table answered (`queries.Source`)."""
        timescale = await self._timescale()
        async with self.db.connection() as conn:
            return await queries.readings_bucketed_from(
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
            self.db.connection() as conn,
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
