"""Writes of the tables the ingest service owns: `assets` (registration) and `readings`.

One database transaction per batch: unknown assets are registered and readings are bulk
copied with `ON CONFLICT DO NOTHING` on the natural key `(asset_id, sensor, time)`, so a
redelivered or duplicated message changes nothing.

Asset commands (`AssetStore`) run one transaction per command. The known-asset cache that
spares the hot path a registration statement per batch forgets an asset this process deletes
at once; a delete applied by another ingest process is noticed when the cache restarts (at
most `ASSET_CACHE_MAX_AGE_S` later), after which the asset's next reading registers it again.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from pdm_common.db.bulk import copy_insert_ignore
from pdm_common.db.pool import tables_exist
from pdm_common.delivery import TransientError
from pdm_common.events import AssetCommand, AssetRecord, ReadingSnapshot
from pdm_ingest.commands import Outcome, done, plan, statement

READING_COLUMNS = ("time", "asset_id", "sensor", "value")
READING_TYPES = ("timestamptz", "text", "text", "float8")
#: Known-asset cache bound; past it the cache restarts (a cheap query refills it).
ASSET_CACHE_LIMIT = 200_000
#: The cache also restarts this often, so that assets deleted by another ingest process are
#: registered again on their next reading (one extra `INSERT ... ON CONFLICT DO NOTHING` of a
#: batch's assets per period).
ASSET_CACHE_MAX_AGE_S = 60.0


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
        self._cache_started = time.monotonic()
        #: Bumped by `forget`: a write that began before must not re-remember what it forgot.
        self._generation = 0

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
        generation = self._generation
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT asset_id FROM assets WHERE asset_id = ANY(%s)", (list(wanted),)
            )
            found = {row[0] for row in await cur.fetchall()}
        self._remember(found, generation)
        return wanted - found

    async def write(self, snapshots: Sequence[ReadingSnapshot], register: bool) -> WriteResult:
        """Store `snapshots` in one transaction; register unseen assets when `register`."""
        rows = reading_rows(snapshots)
        generation = self._generation
        async with self._pool.connection() as conn, conn.transaction():
            new_assets = await self._register(conn, snapshots) if register else set()
            inserted = await copy_insert_ignore(
                conn, "readings", READING_COLUMNS, READING_TYPES, rows
            )
        self._remember(new_assets, generation)
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

    def _remember(self, asset_ids: set[str], generation: int) -> None:
        now = time.monotonic()
        if (
            len(self._known_assets) + len(asset_ids) > ASSET_CACHE_LIMIT
            or now - self._cache_started > ASSET_CACHE_MAX_AGE_S
        ):
            self._known_assets.clear()
            self._cache_started = now
        if generation == self._generation:  # else a delete raced this write: learn it again
            self._known_assets |= asset_ids

    def forget(self, asset_ids: Iterable[str]) -> None:
        """Deleted assets: their next reading registers them again (or, with
        `PDM_INGEST_UNKNOWN_ASSETS=reject`, is refused)."""
        self._known_assets.difference_update(asset_ids)
        self._generation += 1


class AssetStore:
    """Applies asset commands to `assets` (decisions in `commands.py`), on the pool of the
    `ReadingStore` whose known-asset cache it keeps honest."""

    #: Plans per command: an insert that loses a race with auto-registration plans again.
    MAX_PLANS = 3

    def __init__(self, readings: ReadingStore) -> None:
        self.readings = readings

    async def apply(self, command: AssetCommand) -> Outcome:
        """Apply `command` in one transaction, the asset's row locked meanwhile."""
        async with self.readings._pool.connection() as conn, conn.transaction():
            outcome = await self._apply(conn, command)
        if outcome.status == "deleted":
            self.readings.forget([command.asset_id])
        return outcome

    async def _apply(self, conn: AsyncConnection, command: AssetCommand) -> Outcome:
        cur = conn.cursor(row_factory=dict_row)
        for _ in range(self.MAX_PLANS):
            await cur.execute(
                "SELECT * FROM assets WHERE asset_id = %s FOR UPDATE", (command.asset_id,)
            )
            row = await cur.fetchone()
            step = plan(command, AssetRecord.model_validate(row) if row else None)
            if isinstance(step, Outcome):
                return step
            await cur.execute(*statement(step, command))
            written = await cur.fetchone()
            if written is not None:
                return done(step, AssetRecord.model_validate(written))
        raise TransientError(
            f"asset {command.asset_id!r} kept changing under command {command.command_id}",
            reason="database_transient",
        )
