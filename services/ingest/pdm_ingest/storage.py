"""Writes of the tables the ingest service owns: `assets` (registration) and `readings`.

One database transaction per batch: unknown assets are registered and readings are bulk
copied with `ON CONFLICT DO NOTHING` on the natural key `(asset_id, sensor, time)`, so a
redelivered or duplicated message changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from pdm_common.db.bulk import copy_insert_ignore
from pdm_common.db.pool import tables_exist
from pdm_common.events import ReadingSnapshot

READING_COLUMNS = ("time", "asset_id", "sensor", "value")
READING_TYPES = ("timestamptz", "text", "text", "float8")
#: Known-asset cache bound; past it the cache restarts (a cheap query refills it).
ASSET_CACHE_LIMIT = 200_000


@dataclass(slots=True)
class WriteResult:
    inserted: int
    duplicates: int


def reading_rows(snapshots: Iterable[ReadingSnapshot]) -> list[tuple[object, str, str, float]]:
    return [
        (snap.ts, snap.asset_id, sensor, value)
        for snap in snapshots
        for sensor, value in snap.readings.items()
    ]


class ReadingStore:
    def __init__(self, pool: AsyncConnectionPool | None = None) -> None:
        self.pool = pool  # opened by the service's start-up hook
        self._known_assets: set[str] = set()

    @property
    def _pool(self) -> AsyncConnectionPool:
        if self.pool is None:
            raise RuntimeError("ReadingStore used before its pool was opened")
        return self.pool

    async def schema_ready(self) -> bool:
        return await tables_exist(self.pool, ("readings", "assets"))

    async def unknown_assets(self, asset_ids: Iterable[str]) -> set[str]:
        """Asset ids not registered yet (only positive answers are cached)."""
        wanted = set(asset_ids) - self._known_assets
        if not wanted:
            return set()
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT asset_id FROM assets WHERE asset_id = ANY(%s)", (list(wanted),)
            )
            found = {row[0] for row in await cur.fetchall()}
        self._remember(found)
        return wanted - found

    async def write(self, snapshots: Sequence[ReadingSnapshot], register: bool) -> WriteResult:
        """Store `snapshots` in one transaction; register unseen assets when `register`."""
        rows = reading_rows(snapshots)
        async with self._pool.connection() as conn, conn.transaction():
            new_assets = await self._register(conn, snapshots) if register else set()
            inserted = await copy_insert_ignore(
                conn, "readings", READING_COLUMNS, READING_TYPES, rows
            )
        self._remember(new_assets)
        return WriteResult(inserted=inserted, duplicates=len(rows) - inserted)

    async def _register(
        self, conn: AsyncConnection, snapshots: Sequence[ReadingSnapshot]
    ) -> set[str]:
        types: dict[str, str | None] = {}
        for snap in snapshots:
            if snap.asset_id not in self._known_assets:
                types[snap.asset_id] = types.get(snap.asset_id) or snap.asset_type
        if not types:
            return set()
        await conn.execute(
            "INSERT INTO assets (asset_id, asset_type, registered_by) "
            "SELECT a, t, 'auto' FROM unnest(%s::text[], %s::text[]) AS u(a, t) "
            "ON CONFLICT (asset_id) DO NOTHING",
            (list(types), list(types.values())),
        )
        return set(types)

    def _remember(self, asset_ids: set[str]) -> None:
        if len(self._known_assets) + len(asset_ids) > ASSET_CACHE_LIMIT:
            self._known_assets.clear()
        self._known_assets |= asset_ids
