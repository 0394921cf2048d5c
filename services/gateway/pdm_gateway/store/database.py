"""The gateway's one connection pool, shared by every store.

The stores are built and wired (routes, authentication, the audit middleware) when the app is
created; the pool is opened later, in the app's lifespan. So each store holds this handle
rather than the pool, and the pool set here once is the one all of them use.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool


class Database:
    def __init__(self, pool: AsyncConnectionPool | None = None) -> None:
        self.pool = pool

    def connection(self) -> AbstractAsyncContextManager[AsyncConnection[Any]]:
        """A pooled connection; RuntimeError before the pool is opened."""
        if self.pool is None:
            raise RuntimeError("gateway database used before its pool was opened")
        return self.pool.connection()


class Store:
    """Base of the per-table stores: they share the gateway's `Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db
