"""The gateway's one connection pool, shared by every store.

The stores are built and wired (routes, authentication, the audit middleware) when the app is
created; the pool is opened later, in the app's lifespan. So each store holds this handle
rather than the pool, and the pool set here once is the one all of them use.

While a `DatabaseWatch` knows PostgreSQL is down, a connection is refused at once
(`DatabaseDown`, answered 503 with Retry-After) instead of each request waiting the pool's
checkout timeout; a request whose connection fails wakes the watch to look now.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from pdm_common.db.watch import DatabaseWatch


class DatabaseDown(psycopg.OperationalError):
    """The database is known to be down: refused without asking the pool."""


class Database:
    def __init__(
        self, pool: AsyncConnectionPool | None = None, watch: DatabaseWatch | None = None
    ) -> None:
        self.pool = pool
        self.watch = watch

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        """A pooled connection; RuntimeError before the pool is opened, `DatabaseDown`
        while the watch knows the database is down."""
        if self.pool is None:
            raise RuntimeError("gateway database used before its pool was opened")
        watch = self.watch
        if watch is not None and watch.down is not None:
            raise DatabaseDown(f"the database is down ({watch.down})")
        try:
            async with self.pool.connection() as conn:
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as exc:
            if watch is not None and not isinstance(exc, DatabaseDown):
                watch.wake()
            raise


class Store:
    """Base of the per-table stores: they share the gateway's `Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db
